//! Background batch production: a producer thread prepares the batches of
//! an epoch (patches of one batch in parallel on rayon) and hands them to
//! the training loop through a bounded channel, so augmentation overlaps
//! the model's work and memory stays bounded.
//!
//! Which case and which patch a sample gets is a pure function of
//! (seed, epoch, sample index): the case order of an epoch comes from
//! [`purpose_rng`]`(seed, epoch, ORDER_TAG)`, sample `s` uses case
//! `order[s % n]` and patch stream `sample_rng(seed, epoch, s)`. A resumed
//! run therefore regenerates exactly the batches it would have seen.

use std::sync::mpsc::{sync_channel, Receiver};

use petseg_augment::rng::purpose_rng;
use petseg_augment::{sample_patch_seeded, AugmentConfig, PreparedCase};
use rand::RngExt;
use rayon::prelude::*;

use crate::error::Result;

/// Tag of the per-epoch case-order generator.
pub const ORDER_TAG: u64 = 1;

/// One training batch in tensor layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Images `[B, C, P, P, P]`.
    pub image: Vec<f32>,
    /// Labels `[B, 1, P, P, P]` (class indices).
    pub label: Vec<u8>,
    /// `B`.
    pub batch_size: usize,
}

/// The case order of `epoch`: a seeded Fisher–Yates shuffle of `0..n`.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut rng = purpose_rng(seed, epoch as u64, ORDER_TAG);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// Builds batch `step` of `epoch` (samples `step·B .. (step+1)·B`).
pub fn make_batch(
    cases: &[PreparedCase],
    order: &[usize],
    cfg: &AugmentConfig,
    seed: u64,
    epoch: usize,
    step: usize,
    batch_size: usize,
) -> Result<Batch> {
    let patches = (0..batch_size)
        .into_par_iter()
        .map(|b| {
            let s = step * batch_size + b;
            let case = &cases[order[s % order.len()]];
            sample_patch_seeded(case, cfg, seed, epoch as u64, s as u64)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut image = Vec::with_capacity(patches.iter().map(|p| p.image.len()).sum());
    let mut label = Vec::with_capacity(patches.iter().map(|p| p.label.len()).sum());
    for p in patches {
        image.extend_from_slice(&p.image);
        label.extend_from_slice(&p.label);
    }
    Ok(Batch {
        image,
        label,
        batch_size,
    })
}

/// Runs `consume` on the batches `first_step..steps` of `epoch`, produced
/// on a background thread at most `queue_depth` batches ahead. Stops early
/// (and stops the producer) when `consume` returns an error.
pub fn for_each_batch<F>(
    cases: &[PreparedCase],
    cfg: &AugmentConfig,
    seed: u64,
    epoch: usize,
    (first_step, steps): (usize, usize),
    batch_size: usize,
    queue_depth: usize,
    mut consume: F,
) -> Result<()>
where
    F: FnMut(usize, Batch) -> Result<()>,
{
    let order = epoch_order(seed, epoch, cases.len());
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<Batch>>(queue_depth);
        let order = &order;
        scope.spawn(move || {
            for step in first_step..steps {
                let b = make_batch(cases, order, cfg, seed, epoch, step, batch_size);
                let failed = b.is_err();
                if tx.send(b).is_err() || failed {
                    return; // consumer gone or error delivered
                }
            }
        });
        drain(rx, first_step, steps, &mut consume)
    })
}

fn drain<F>(rx: Receiver<Result<Batch>>, first: usize, steps: usize, consume: &mut F) -> Result<()>
where
    F: FnMut(usize, Batch) -> Result<()>,
{
    for step in first..steps {
        let batch = rx.recv().map_err(|_| {
            crate::error::TrainError::Config("batch producer stopped unexpectedly".into())
        })??;
        consume(step, batch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(3, 1, 10);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(3, 1, 10));
        assert_ne!(a, epoch_order(3, 2, 10));
    }
}
