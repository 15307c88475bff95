//! Behavioural tests of patch sampling (issue #8 "Augmentation" must-shows).

use petseg_augment::{
    sample_patch_seeded, AffineConfig, AugmentConfig, FlipConfig, PosNeg, PreparedCase,
};
use petseg_io::{Affine, Volume};

/// A 20×24×28 case on an oblique, anisotropic grid: channel 0 is a linear
/// ramp (trilinear interpolation reproduces it exactly), channel 1 a PET
/// with background 1 and a blob of lesion voxels.
fn ramp_case() -> PreparedCase {
    let th = 0.2f64;
    let aff = Affine::from_rows([
        [2.0 * th.cos(), -2.5 * th.sin(), 0.0, -30.0],
        [2.0 * th.sin(), 2.5 * th.cos(), 0.0, 12.0],
        [0.0, 0.0, 3.0, 100.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    .unwrap();
    let shape = [20, 24, 28];
    let ramp = ndarray::Array3::from_shape_fn(shape, |(i, j, k)| {
        ramp_value([i as f64, j as f64, k as f64])
    });
    let mut pet = ndarray::Array3::from_elem(shape, 1.0f32);
    let mut label = ndarray::Array3::from_elem(shape, 0u8);
    for i in 8..11 {
        for j in 10..13 {
            for k in 3..6 {
                pet[[i, j, k]] = 10.0;
                label[[i, j, k]] = 1;
            }
        }
    }
    // Some PET-zero voxels that must never be background centres.
    pet.slice_mut(ndarray::s![0..4, .., ..]).fill(0.0);
    let ch = [Volume::new(ramp, aff), Volume::new(pet, aff)];
    PreparedCase::from_volumes("ramp", &ch, Some(&Volume::new(label, aff)), &[0.0, 0.0], 1).unwrap()
}

fn ramp_value(ijk: [f64; 3]) -> f32 {
    (0.5 * ijk[0] - 0.25 * ijk[1] + 0.125 * ijk[2] + 3.0) as f32
}

fn cfg(p: usize, affine: AffineConfig) -> AugmentConfig {
    AugmentConfig {
        patch_size: [p; 3],
        affine,
        ..Default::default()
    }
}

#[test]
fn crop_centre_frequency_matches_pos_ratio() {
    let case = ramp_case();
    for (pos, neg) in [(4.0, 1.0), (1.0, 1.0), (1.0, 3.0)] {
        let c = AugmentConfig {
            pos_neg: PosNeg { pos, neg },
            ..cfg(8, AffineConfig::disabled())
        };
        let n = 4000;
        let mut fg = 0;
        for s in 0..n {
            let p = sample_patch_seeded(&case, &c, 11, 0, s).unwrap();
            let [i, j, k] = p.centre_voxel;
            let is_lesion = (8..11).contains(&i) && (10..13).contains(&j) && (3..6).contains(&k);
            assert_eq!(is_lesion, p.centre_is_foreground);
            if !is_lesion {
                assert!(i >= 4, "background centre {:?} has PET 0", p.centre_voxel);
            }
            fg += usize::from(is_lesion);
        }
        let expect = pos / (pos + neg);
        let sd = (expect * (1.0 - expect) / n as f64).sqrt();
        let got = fg as f64 / n as f64;
        assert!(
            (got - expect).abs() < 4.0 * sd,
            "pos {pos} neg {neg}: {got} vs {expect}"
        );
    }
}

#[test]
fn lesion_free_case_samples_background() {
    let aff = Affine::from_spacing_origin([2.0; 3], [0.0; 3]).unwrap();
    let ch = [
        Volume::filled([10, 10, 10], 0.3f32, aff).unwrap(),
        Volume::filled([10, 10, 10], 1.0f32, aff).unwrap(),
    ];
    let label = Volume::filled([10, 10, 10], 0u8, aff).unwrap();
    let case = PreparedCase::from_volumes("neg", &ch, Some(&label), &[0.0, 0.0], 1).unwrap();
    for s in 0..50 {
        let p = sample_patch_seeded(&case, &cfg(6, AffineConfig::default()), 3, 1, s).unwrap();
        assert!(!p.centre_is_foreground);
        assert!(p.label.iter().all(|&v| v == 0));
    }
}

/// Every patch voxel's value equals the ramp at the source position its
/// world coordinate (through the patch affine) lands on; the label is the
/// nearest source label of that position. Checks both the affine and the
/// one-pass sampling, with rotation about all axes, scale, translation and flips.
#[test]
fn patch_affine_maps_world_points_correctly() {
    let case = ramp_case();
    let aug = AffineConfig {
        prob: 1.0,
        rotate_range_rad: [0.3, 0.2, 0.4],
        ..Default::default()
    };
    let c = AugmentConfig {
        flip: FlipConfig { prob: [0.5; 3] },
        ..cfg(10, aug)
    };
    let shape = case.shape();
    let mut checked_inside = 0;
    for s in 0..20 {
        let p = sample_patch_seeded(&case, &c, 5, 2, s).unwrap();
        assert!(p.augmented);
        let n = 1000;
        for qi in 0..10 {
            for qj in 0..10 {
                for qk in 0..10 {
                    let world = p.affine.voxel_to_world([qi as f64, qj as f64, qk as f64]);
                    let src = case.affine().world_to_voxel(world);
                    let o = (qi * 10 + qj) * 10 + qk;
                    let inside = (0..3).all(|a| src[a] >= 0.0 && src[a] <= (shape[a] - 1) as f64);
                    if inside {
                        checked_inside += 1;
                        let v = p.image[o];
                        assert!(
                            (v - ramp_value(src)).abs() < 1e-4,
                            "{v} vs {}",
                            ramp_value(src)
                        );
                        let r = src.map(|x| (x + 0.5).floor() as usize);
                        let lab = u8::from(
                            (8..11).contains(&r[0])
                                && (10..13).contains(&r[1])
                                && (3..6).contains(&r[2]),
                        );
                        assert_eq!(p.label[o], lab);
                    }
                    let far = (0..3).all(|a| src[a] < -1.0 || src[a] > shape[a] as f64);
                    if far {
                        assert_eq!(p.image[o], 0.0);
                        assert_eq!(p.image[n + o], 0.0);
                    }
                }
            }
        }
    }
    assert!(checked_inside > 10_000);
}

#[test]
fn plain_crop_is_an_exact_copy_with_shifted_affine() {
    let case = ramp_case();
    let p = sample_patch_seeded(&case, &cfg(8, AffineConfig::disabled()), 1, 0, 0).unwrap();
    assert!(!p.augmented);
    let start = p
        .affine
        .world_to_voxel(case.affine().voxel_to_world([0.0; 3]));
    let start = start.map(|v| -v.round() as i64);
    for qi in 0..8 {
        for qj in 0..8 {
            for qk in 0..8 {
                let s = [qi + start[0], qj + start[1], qk + start[2]].map(|v| v as f64);
                assert_eq!(
                    p.image[(qi as usize * 8 + qj as usize) * 8 + qk as usize],
                    ramp_value(s)
                );
            }
        }
    }
}

#[test]
fn labels_stay_binary_under_augmentation() {
    let case = ramp_case();
    let c = AugmentConfig {
        flip: FlipConfig { prob: [0.5; 3] },
        ..cfg(
            12,
            AffineConfig {
                prob: 1.0,
                ..Default::default()
            },
        )
    };
    let mut fg = 0;
    for s in 0..30 {
        let p = sample_patch_seeded(&case, &c, 9, 0, s).unwrap();
        assert!(p.label.iter().all(|&v| v <= 1));
        fg += p.label.iter().filter(|&&v| v == 1).count();
    }
    assert!(fg > 0);
}

#[test]
fn volume_smaller_than_patch_is_padded() {
    let case = ramp_case();
    let p = sample_patch_seeded(&case, &cfg(32, AffineConfig::disabled()), 2, 0, 0).unwrap();
    assert_eq!(p.image.len(), 2 * 32 * 32 * 32);
    // Shape 20 along i: centred with (32 − 20) / 2 = 6 voxels of padding before.
    assert_eq!(p.image[0], 0.0);
    let o = (6 * 32 + 4) * 32 + 2;
    assert_eq!(p.image[o], ramp_value([0.0, 0.0, 0.0]));
}

#[test]
fn same_seed_same_patches_with_one_or_two_threads() {
    let case = ramp_case();
    let c = AugmentConfig {
        flip: FlipConfig { prob: [0.5; 3] },
        ..cfg(12, AffineConfig::default())
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            use rayon::prelude::*;
            (0..16u64)
                .into_par_iter()
                .map(|s| sample_patch_seeded(&case, &c, 77, 3, s).unwrap())
                .collect::<Vec<_>>()
        })
    };
    let a = run(1);
    let b = run(2);
    assert_eq!(a, b);
    assert_ne!(a[0], a[1]);
    let other_seed = sample_patch_seeded(&case, &c, 78, 3, 0).unwrap();
    assert_ne!(a[0].image, other_seed.image);
}
