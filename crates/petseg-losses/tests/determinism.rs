//! Every loss gives bit-identical values and gradients with 1 and 2 rayon threads: partial
//! sums are reduced in a fixed order, whatever thread ran which chunk.

mod common;

use candle_core::{Device, Tensor};
use common::value_and_grad;
use petseg_losses::LossConfig;

#[test]
fn every_loss_is_bit_identical_with_one_and_two_threads() {
    // [2, 2, 31, 31, 33]: 31 713 voxels per image, so several work chunks per image and a
    // last chunk ending in a partial block
    let dims = (2, 2, 31, 31, 33);
    let n = 2 * 2 * 31 * 31 * 33;
    let values: Vec<f32> = (0..n)
        .map(|i| 4.0 * (i as f32 * 0.618).sin() + (i as f32 * 0.0013).cos())
        .collect();
    let logits = Tensor::from_vec(values, dims, &Device::Cpu).unwrap();
    let labels = logits.narrow(1, 1, 1).unwrap().gt(2.5).unwrap();
    for name in ["dice", "dice_focal", "l1dfl", "dice_ce", "focal"] {
        let loss = name.parse::<LossConfig>().unwrap().build().unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| value_and_grad(loss.as_ref(), &logits, &labels))
        };
        let (v1, g1) = run(1);
        let (v2, g2) = run(2);
        assert!(v1.is_finite() && v1 > 0.0, "{name}: value {v1}");
        assert_eq!(v1.to_bits(), v2.to_bits(), "{name}: value {v1} vs {v2}");
        let g1_bits: Vec<u32> = g1.iter().map(|g| g.to_bits()).collect();
        let g2_bits: Vec<u32> = g2.iter().map(|g| g.to_bits()).collect();
        assert!(g1_bits == g2_bits, "{name}: gradients differ");
        assert!(g1.iter().any(|&g| g != 0.0), "{name}: zero gradient");
    }
}
