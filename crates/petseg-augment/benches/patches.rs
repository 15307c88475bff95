//! Patch throughput: patches per second at 96³ and 128³ with the study's
//! augmentation (pos:neg 4:1, random affine p = 0.5), drawn from a
//! 192×192×320 two-channel case (a whole-body volume at 2 mm).
//!
//! Run: `cargo bench -p petseg-augment --bench patches`. The MONAI peer is
//! `python3 crates/petseg-augment/scripts/bench_monai_patches.py`.

use std::time::Instant;

use petseg_augment::{sample_patch_seeded, AugmentConfig, PreparedCase};
use petseg_io::{Affine, Volume};

fn main() {
    let shape = [192, 192, 320];
    let aff = Affine::from_spacing_origin([2.0; 3], [0.0; 3]).unwrap();
    let ct =
        ndarray::Array3::from_shape_fn(shape, |(i, j, k)| ((i + 2 * j + 3 * k) % 97) as f32 / 97.0);
    let pet = ndarray::Array3::from_shape_fn(shape, |(i, j, k)| 1.0 + ((i * j + k) % 13) as f32);
    let mut label = ndarray::Array3::from_elem(shape, 0u8);
    label
        .slice_mut(ndarray::s![90..100, 80..95, 150..160])
        .fill(1);
    let case = PreparedCase::from_volumes(
        "bench",
        &[Volume::new(ct, aff), Volume::new(pet, aff)],
        Some(&Volume::new(label, aff)),
        &[0.0, 0.0],
        1,
    )
    .unwrap();
    println!("threads: {}", rayon::current_num_threads());
    for p in [96usize, 128] {
        let cfg = AugmentConfig {
            patch_size: [p; 3],
            ..Default::default()
        };
        let n = 16u64;
        // Warm-up.
        sample_patch_seeded(&case, &cfg, 0, 0, 999).unwrap();
        let t0 = Instant::now();
        let mut augmented = 0;
        for s in 0..n {
            augmented += usize::from(sample_patch_seeded(&case, &cfg, 1, 0, s).unwrap().augmented);
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "patch {p}^3: {:.2} patches/s ({:.1} ms/patch, {augmented}/{n} with random affine)",
            n as f64 / dt,
            1e3 * dt / n as f64
        );
    }
}
