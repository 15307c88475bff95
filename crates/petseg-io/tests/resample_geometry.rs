//! Resampling and reorientation against analytic fields: world coordinates
//! are kept, label sets are kept, round trips stay within interpolation error.

mod common;

use std::collections::BTreeSet;

use common::*;
use petseg_io::orient::reorient_to_ras;
use petseg_io::resample::{grid_for_spacing, resample_onto, resample_to_spacing, Interpolation};
use petseg_io::{Affine, Volume};

/// A field linear in world coordinates (mm).
fn ramp(w: [f64; 3]) -> f64 {
    1.5 * w[0] - 0.7 * w[1] + 0.3 * w[2] + 10.0
}

fn ramp_volume(shape: [usize; 3], affine: Affine) -> Volume<f64> {
    volume_from_fn(shape, affine, |i, j, k| {
        ramp(affine.voxel_to_world([i as f64, j as f64, k as f64]))
    })
}

/// Whether world point `w` lies between the outermost voxel centres of `v`
/// (where trilinear interpolation is exact on a linear field).
fn strictly_inside<T>(v: &Volume<T>, w: [f64; 3]) -> bool {
    let x = v.affine().world_to_voxel(w);
    (0..3).all(|a| x[a] >= -1e-9 && x[a] <= v.shape()[a] as f64 - 1.0 + 1e-9)
}

/// Checks every voxel of `out` that lies inside `src` against the ramp;
/// returns how many were checked.
fn check_ramp(src: &Volume<f64>, out: &Volume<f64>, tol: f64) -> usize {
    let s = out.shape();
    let mut checked = 0;
    for k in 0..s[2] {
        for j in 0..s[1] {
            for i in 0..s[0] {
                let w = out.affine().voxel_to_world([i as f64, j as f64, k as f64]);
                if strictly_inside(src, w) {
                    let got = out.data()[[i, j, k]];
                    assert!(
                        (got - ramp(w)).abs() <= tol,
                        "voxel {i},{j},{k} world {w:?}: {got} vs {}",
                        ramp(w)
                    );
                    checked += 1;
                }
            }
        }
    }
    checked
}

#[test]
fn linear_ramp_keeps_world_values_after_resample_to_spacing() {
    for affine in [oblique_affine(), lps_affine(), permuted_flipped_affine()] {
        let src = ramp_volume([20, 18, 14], affine);
        let out = resample_to_spacing(&src, [1.7, 2.3, 3.1], Interpolation::Linear, -1e9).unwrap();
        let spacing = out.spacing_mm();
        for (got, want) in spacing.iter().zip([1.7, 2.3, 3.1]) {
            assert!((got - want).abs() < 1e-12);
        }
        // Direction kept.
        assert!((out.affine().direction() - affine.direction()).abs().max() < 1e-12);
        let n = check_ramp(&src, &out, 1e-9);
        assert!(
            n > out.len() / 2,
            "most voxels are interior ({n} of {})",
            out.len()
        );
    }
}

#[test]
fn spacing_grid_keeps_the_centre_and_field_of_view() {
    let affine = oblique_affine();
    let shape = [20, 18, 14];
    let (new_shape, new_aff) = grid_for_spacing(shape, &affine, [1.0, 5.0, 3.0]).unwrap();
    // round(n · old / new): 20·2/1 = 40, 18·2.5/5 = 9, 14·3/3 = 14.
    assert_eq!(new_shape, [40, 9, 14]);
    let centre = |s: [usize; 3], a: &Affine| {
        a.voxel_to_world([
            (s[0] as f64 - 1.0) / 2.0,
            (s[1] as f64 - 1.0) / 2.0,
            (s[2] as f64 - 1.0) / 2.0,
        ])
    };
    let (c0, c1) = (centre(shape, &affine), centre(new_shape, &new_aff));
    for a in 0..3 {
        assert!(
            (c0[a] - c1[a]).abs() < 1e-9,
            "centre moved: {c0:?} vs {c1:?}"
        );
    }
    // Same spacing: the identical grid.
    let (s, a) = grid_for_spacing(shape, &affine, affine.spacing_mm()).unwrap();
    assert_eq!(s, shape);
    assert!(a.approx_eq(&affine, 1e-9));
    assert!(grid_for_spacing(shape, &affine, [0.0, 1.0, 1.0]).is_err());
    assert!(grid_for_spacing(shape, &affine, [f64::NAN, 1.0, 1.0]).is_err());
    assert!(grid_for_spacing(shape, &affine, [1e-12, 1.0, 1.0]).is_err());
}

#[test]
fn reorient_to_ras_keeps_world_values_exactly() {
    for affine in [lps_affine(), permuted_flipped_affine(), oblique_affine()] {
        let src = ramp_volume([7, 6, 5], affine);
        let out = reorient_to_ras(&src);
        assert_eq!(
            out.affine().orientation_code(),
            "RAS",
            "from {}",
            affine.orientation_code()
        );
        let mut sorted_in: Vec<u64> = src.as_raster_slice().iter().map(|v| v.to_bits()).collect();
        let mut sorted_out: Vec<u64> = out.as_raster_slice().iter().map(|v| v.to_bits()).collect();
        sorted_in.sort_unstable();
        sorted_out.sort_unstable();
        assert_eq!(
            sorted_in, sorted_out,
            "a permutation of the voxels, nothing interpolated"
        );
        let s = out.shape();
        for k in 0..s[2] {
            for j in 0..s[1] {
                for i in 0..s[0] {
                    let w = out.affine().voxel_to_world([i as f64, j as f64, k as f64]);
                    assert!((out.data()[[i, j, k]] - ramp(w)).abs() < 1e-9);
                }
            }
        }
        // Already RAS: unchanged.
        assert_eq!(reorient_to_ras(&out), out);
    }
    // LPS → RAS flips i and j; permuted (P, S, L) → RAS permutes the shape.
    assert_eq!(
        reorient_to_ras(&ramp_volume([7, 6, 5], permuted_flipped_affine())).shape(),
        [5, 7, 6]
    );
}

#[test]
fn resample_onto_between_oblique_and_axis_aligned_grids() {
    let oblique = ramp_volume([24, 20, 16], oblique_affine());
    // An axis-aligned 2 mm grid around the oblique volume's centre, larger
    // than it so that some target voxels fall outside (filled).
    let c = oblique.affine().voxel_to_world([11.5, 9.5, 7.5]);
    let target =
        Affine::from_spacing_origin([2.0; 3], [c[0] - 40.0, c[1] - 40.0, c[2] - 30.0]).unwrap();
    let fill = -12345.0;
    let out = resample_onto(&oblique, [40, 40, 30], &target, Interpolation::Linear, fill).unwrap();
    assert_eq!(out.affine(), &target);
    let checked = check_ramp(&oblique, &out, 1e-9);
    let filled = out.as_raster_slice().iter().filter(|&&v| v == fill).count();
    assert!(
        checked > 1000 && filled > 1000,
        "checked {checked}, filled {filled}"
    );
    // Every filled voxel lies outside the source volume (beyond the half-voxel rim).
    for (idx, v) in out.as_raster_slice().iter().enumerate() {
        let [i, j, k] = out.raster_coords(idx);
        let x = oblique
            .affine()
            .world_to_voxel(out.affine().voxel_to_world([i as f64, j as f64, k as f64]));
        let inside =
            (0..3).all(|a| x[a] >= -0.5 + 1e-6 && x[a] <= oblique.shape()[a] as f64 - 0.5 - 1e-6);
        if inside {
            assert_ne!(
                *v, fill,
                "voxel {i},{j},{k} at source index {x:?} was filled"
            );
        }
    }
    // And back: axis-aligned → oblique.
    let aligned = ramp_volume([40, 40, 30], target);
    let back = resample_onto(
        &aligned,
        oblique.shape(),
        oblique.affine(),
        Interpolation::Linear,
        fill,
    )
    .unwrap();
    assert!(check_ramp(&aligned, &back, 1e-9) > 1000);
}

#[test]
fn identical_grid_is_an_exact_copy_and_outside_is_fill() {
    let v = volume_from_fn([9, 8, 7], oblique_affine(), |i, j, k| {
        ((i * 13 + j * 7 + k) % 17) as f32 * 0.37
    });
    for interp in [Interpolation::Linear, Interpolation::Nearest] {
        let same = resample_onto(&v, v.shape(), v.affine(), interp, f32::NAN).unwrap();
        assert_eq!(same.as_raster_slice(), v.as_raster_slice());
    }
    let far = v.affine().shifted([100.0, 0.0, 0.0]);
    let out = resample_onto(&v, [3, 3, 3], &far, Interpolation::Linear, -1.0f32).unwrap();
    assert!(out.as_raster_slice().iter().all(|&x| x == -1.0));
}

#[test]
fn nearest_keeps_label_sets() {
    let labels = volume_from_fn([21, 17, 13], permuted_flipped_affine(), |i, j, k| {
        [0u8, 3, 7, 200][(i / 4 + j / 5 + k / 3) % 4]
    });
    let input: BTreeSet<u8> = labels.as_raster_slice().iter().copied().collect();
    // Up-sampling (finer grid): every label survives, nothing new appears.
    let fine = resample_to_spacing(&labels, [0.6, 0.9, 1.4], Interpolation::Nearest, 0).unwrap();
    let fine_set: BTreeSet<u8> = fine.as_raster_slice().iter().copied().collect();
    assert_eq!(fine_set, input);
    // Down-sampling and an oblique target: a subset.
    let coarse = resample_to_spacing(&labels, [4.0, 4.0, 4.0], Interpolation::Nearest, 0).unwrap();
    assert!(coarse.as_raster_slice().iter().all(|v| input.contains(v)));
    let obl = resample_onto(
        &labels,
        [20, 20, 20],
        &oblique_affine(),
        Interpolation::Nearest,
        0,
    )
    .unwrap();
    assert!(obl.as_raster_slice().iter().all(|v| input.contains(v)));
    // Each fine voxel takes the label of the source voxel nearest to it.
    for idx in (0..fine.len()).step_by(37) {
        let [i, j, k] = fine.raster_coords(idx);
        let x = labels
            .affine()
            .world_to_voxel(fine.affine().voxel_to_world([i as f64, j as f64, k as f64]));
        let r = [0, 1, 2].map(|a| (x[a].round().max(0.0) as usize).min(labels.shape()[a] - 1));
        assert_eq!(
            fine.as_raster_slice()[idx],
            labels.data()[[r[0], r[1], r[2]]]
        );
    }
}

#[test]
fn linear_on_integers_rounds_the_exact_value() {
    let src = ramp_volume([12, 10, 8], lps_affine());
    let ints = src.map(|v| v.round() as i16);
    let out = resample_to_spacing(&ints, [1.3, 1.7, 2.2], Interpolation::Linear, 0).unwrap();
    let exact = resample_to_spacing(
        &ints.map(|&v| v as f64),
        [1.3, 1.7, 2.2],
        Interpolation::Linear,
        0.0,
    )
    .unwrap();
    for (a, b) in out.as_raster_slice().iter().zip(exact.as_raster_slice()) {
        assert_eq!(*a, b.round() as i16);
    }
    // u8 saturates instead of wrapping.
    let bright = Volume::filled([4, 4, 4], 255u8, lps_affine()).unwrap();
    let up = resample_to_spacing(&bright, [0.7; 3], Interpolation::Linear, 0).unwrap();
    assert!(up.as_raster_slice().iter().all(|&v| v == 255));
}

#[test]
fn there_and_back_stays_within_interpolation_error() {
    // A Gaussian blob (sigma 8 mm) on a 2 mm grid, to 3 mm and back.
    let affine = oblique_affine();
    let shape = [32, 28, 24];
    let centre = affine.voxel_to_world([15.5, 13.5, 11.5]);
    let sigma: f64 = 8.0;
    let blob = |w: [f64; 3]| {
        let r2: f64 = (0..3).map(|a| (w[a] - centre[a]).powi(2)).sum();
        (-r2 / (2.0 * sigma * sigma)).exp()
    };
    let src = volume_from_fn(shape, affine, |i, j, k| {
        blob(affine.voxel_to_world([i as f64, j as f64, k as f64])) as f32
    });
    let coarse = resample_to_spacing(&src, [3.0, 3.0, 3.0], Interpolation::Linear, 0.0).unwrap();
    let back = resample_onto(&coarse, shape, &affine, Interpolation::Linear, 0.0).unwrap();
    let (mut max_err, mut sum_err, mut n) = (0.0f64, 0.0f64, 0usize);
    for idx in 0..back.len() {
        let [i, j, k] = back.raster_coords(idx);
        let w = affine.voxel_to_world([i as f64, j as f64, k as f64]);
        if strictly_inside(&coarse, w) {
            let e = (back.as_raster_slice()[idx] as f64 - src.as_raster_slice()[idx] as f64).abs();
            max_err = max_err.max(e);
            sum_err += e;
            n += 1;
        }
    }
    // Trilinear error bound: Σ_axes h²/8 · max|∂²f| with max|∂²f| = 1/σ²,
    // for a pass from the 2 mm grid and one from the 3 mm grid.
    let bound = 3.0 * (2.0f64.powi(2) + 3.0f64.powi(2)) / 8.0 / (sigma * sigma);
    assert!(n > back.len() / 2);
    assert!(
        max_err < bound,
        "max error {max_err} above the bound {bound}"
    );
    assert!(
        sum_err / (n as f64) < 0.005,
        "mean error {}",
        sum_err / n as f64
    );
    // Not trivially zero: the coarse grid does lose detail.
    assert!(max_err > 1e-4);
}
