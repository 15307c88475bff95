//! The L1DFL histogram of `g = |p − y|`: bin edges, bin assignment and the weights β.
//!
//! Bins have width ε and are centred at `c_k = k·ε`, `k = 0..=1/ε`; bin `k` covers
//! `[c_k − ε/2, c_k + ε/2)` clipped to `[0, 1]`, so the two end bins are half as wide
//! (`[0, ε/2)` and `[1 − ε/2, 1]`). Bins are left-closed: a value exactly on an edge belongs to
//! the bin that starts there. Edges are the float32 values `((2k − 1)·ε/2) as f32`, `k = 1..K−1`,
//! computed in f64 and rounded once, the same numbers the PyTorch port in
//! `scripts/make_fixtures.py` feeds to `torch.bucketize(..., right=True)`.
//!
//! With `N` entries and `n_k` of them in bin `k`, the density is `d_k = n_k / width_k` and every
//! entry of bin `k` gets the weight `β_k = N / d_k = N·width_k / n_k` (`docs/method/losses.md` §5).
//! β is a constant for autograd.

use crate::error::{check_range, LossError};
use crate::lanes::{Lanes, LANES};

/// Bin edges and widths of the L1DFL histogram for one bin width ε.
#[derive(Debug, Clone, PartialEq)]
pub struct BinEdges {
    epsilon: f64,
    /// Left edges of bins `1..K` (bin 0 starts at 0).
    edges: Vec<f32>,
    /// `[−∞, edges…, NaN]`: bin `k` is `[bounds[k], bounds[k + 1])`, for lookups without
    /// special cases at the ends (NaN compares false: nothing moves past the last bin).
    bounds: Vec<f32>,
    /// Width of each bin, in units of g (ε, or ε/2 for the end bins).
    widths: Vec<f64>,
}

impl BinEdges {
    /// Bins of width `epsilon`; `1/epsilon` must be an integer (0.1 → 11 bins, 0.05 → 21).
    pub fn new(epsilon: f64) -> Result<Self, LossError> {
        check_range(
            "epsilon",
            epsilon,
            1e-4,
            0.5,
            "a bin width in [1e-4, 0.5] with 1/epsilon an integer",
        )?;
        let steps = (1.0 / epsilon).round();
        if ((1.0 / epsilon) - steps).abs() > 1e-6 * steps {
            return Err(LossError::InvalidParameter {
                field: "epsilon",
                value: epsilon.to_string(),
                expected: "a bin width with 1/epsilon an integer (0.1, 0.05, ...)",
            });
        }
        let bins = steps as usize + 1;
        let edges: Vec<f32> = (1..bins)
            .map(|k| ((2 * k - 1) as f64 * epsilon / 2.0) as f32)
            .collect();
        let mut widths = vec![epsilon; bins];
        widths[0] = epsilon / 2.0;
        widths[bins - 1] = epsilon / 2.0;
        let bounds = std::iter::once(f32::NEG_INFINITY)
            .chain(edges.iter().copied())
            .chain([f32::NAN])
            .collect();
        Ok(Self {
            epsilon,
            edges,
            bounds,
            widths,
        })
    }

    /// The bin width ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Number of bins, `1/ε + 1`.
    pub fn len(&self) -> usize {
        self.widths.len()
    }

    /// Always false: there is at least one bin.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Width of bin `k` (ε, or ε/2 for the two end bins).
    pub fn width(&self, k: usize) -> f64 {
        self.widths[k]
    }

    /// Left edges of bins `1..K` as float32.
    pub fn edges(&self) -> &[f32] {
        &self.edges
    }

    /// Bin of `g` (left-closed; values below 0 go to bin 0, above 1 to the last bin).
    ///
    /// One division gives the bin up to rounding; the comparisons against the stored f32
    /// edges then make the result exact.
    #[inline]
    pub fn bin_of(&self, g: f32) -> usize {
        let last = self.edges.len();
        let guess = (g as f64 + self.epsilon / 2.0) / self.epsilon;
        // truncation is floor for positive values; NaN and negatives give 0
        let mut k = if guess > 0.0 {
            (guess as usize).min(last)
        } else {
            0
        };
        while k < last && g >= self.edges[k] {
            k += 1;
        }
        while k > 0 && g < self.edges[k - 1] {
            k -= 1;
        }
        k
    }

    /// [`BinEdges::bin_of`] for a block of values, without branches, so that it vectorises:
    /// the nearest bin centre `k₀ = round(g/ε)` is right except within rounding of an edge,
    /// so one comparison with each of the bin's two stored edges settles it. NaN lands in
    /// bin 0.
    #[inline(always)]
    pub(crate) fn bin_lanes(&self, g: &Lanes) -> [u32; LANES] {
        const MAGIC: f32 = 8_388_608.0; // 2^23: adding it rounds to an integer in the low bits
        let last = self.edges.len();
        assert!(self.bounds.len() == last + 2);
        let inv_eps = (1.0 / self.epsilon) as f32;
        let mut k = [0u32; LANES];
        for i in 0..LANES {
            // max/min map NaN to 0 and keep k₀ in 0..=last
            let t = (g[i] * inv_eps).max(0.0).min(last as f32) + MAGIC;
            let k0 = (t.to_bits() - MAGIC.to_bits()) as usize;
            // SAFETY: k0 ≤ last, and bounds has last + 2 entries (asserted above).
            let (left, right) = unsafe {
                (
                    *self.bounds.get_unchecked(k0),
                    *self.bounds.get_unchecked(k0 + 1),
                )
            };
            let down = u32::from(g[i] < left);
            let up = u32::from(g[i] >= right);
            k[i] = k0 as u32 + up - down;
        }
        k
    }

    /// β per bin from the bin counts: `N·width_k / n_k`, and 0 for empty bins (never used).
    pub fn beta_per_bin(&self, counts: &[u64]) -> Vec<f64> {
        let total: u64 = counts.iter().sum();
        counts
            .iter()
            .zip(&self.widths)
            .map(|(&n, &w)| {
                if n == 0 {
                    0.0
                } else {
                    total as f64 * w / n as f64
                }
            })
            .collect()
    }

    /// β for every entry of `g` (the whole histogram: pass all B×C×voxels at once).
    pub fn beta(&self, g: &[f32]) -> Vec<f32> {
        let bins: Vec<usize> = g.iter().map(|&v| self.bin_of(v)).collect();
        let mut counts = vec![0u64; self.len()];
        for &k in &bins {
            counts[k] += 1;
        }
        let beta_k = self.beta_per_bin(&counts);
        bins.iter().map(|&k| beta_k[k] as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_lanes_agrees_with_bin_of() {
        for eps in [0.1, 0.05, 0.25, 0.2, 0.125, 0.02, 0.01, 1e-3] {
            let e = BinEdges::new(eps).unwrap();
            let mut values: Vec<f32> = e
                .edges()
                .iter()
                .flat_map(|&v| [v.next_down(), v, v.next_up()])
                .collect();
            values.extend((0..=100_000).map(|i| i as f32 / 100_000.0));
            values.extend([0.0, 1.0, 1.0f32.next_down(), 1.5, f32::NAN, f32::INFINITY]);
            for block in values.chunks(LANES) {
                let lanes = crate::block::load(block);
                let k = e.bin_lanes(&lanes);
                for (i, &v) in block.iter().enumerate() {
                    assert_eq!(k[i] as usize, e.bin_of(v), "eps {eps}, g {v}");
                }
            }
        }
    }
}
