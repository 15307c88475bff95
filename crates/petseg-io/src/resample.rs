//! Resampling between grids: to a new spacing, or onto any other grid
//! (CT → PET grid, predictions → original grid), in parallel with rayon.
//!
//! # Sampling rule
//! Each target voxel centre is mapped to a continuous source index `x` by
//! `source_affine⁻¹ · target_affine` (any pair of affines: oblique, flipped,
//! permuted). A point is **inside** the source when, on every axis,
//! `-0.5 ≤ x ≤ n - 0.5` (to 1e-6 voxel): the region covered by the source
//! voxels themselves, as ITK's `IsInsideBuffer`. Outside points get `fill`.
//! * [`Interpolation::Nearest`]: the voxel whose centre is closest (ties
//!   round away from zero). Never invents a value, so label sets are kept.
//! * [`Interpolation::Linear`]: trilinear between the 8 surrounding centres;
//!   in the half-voxel rim between the outermost centres and the volume's
//!   edge the edge values are replicated. Trilinear interpolation reproduces
//!   any field linear in world coordinates exactly (away from that rim).
//!   Arithmetic is in `f64`; integer outputs are rounded half away from zero
//!   and saturated to the type's range.

use nalgebra::Matrix4;
use rayon::prelude::*;

use crate::affine::Affine;
use crate::error::{IoError, Result};
use crate::volume::{checked_len, Volume};

/// How values between voxel centres are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Trilinear: images (CT, PET, probabilities).
    Linear,
    /// Nearest neighbour: label masks.
    Nearest,
}

/// A voxel type that can be resampled: converted to `f64` for interpolation
/// and back (integers: rounded half away from zero and saturated, so
/// `Linear` on an integer image gives the nearest representable value).
pub trait Resamplable: Copy + Send + Sync {
    /// The value as `f64`.
    fn to_f64(self) -> f64;
    /// An interpolated value back in this type.
    fn from_f64(v: f64) -> Self;
}

macro_rules! resamplable_int {
    ($($t:ty),*) => {$(
        impl Resamplable for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                // `as` saturates and maps NaN to 0; round() is half away from zero.
                v.round() as $t
            }
        }
    )*};
}
resamplable_int!(u8, i8, i16, u16, i32);

impl Resamplable for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Resamplable for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Tolerance (in voxels) of the inside test, so that target centres that
/// fall on the source's edge up to rounding are not filled.
const EDGE_TOL: f64 = 1e-6;

/// Distance (in voxels) under which a sample point counts as a voxel centre.
const SNAP_TOL: f64 = 1e-9;

/// Resamples `vol` onto the grid `target_shape` × `target_affine`.
///
/// Works for any pair of affines (oblique included). Target voxels whose
/// centre lies outside the source volume get `fill` (e.g. −1024 HU for CT
/// on a PET grid, 0 for labels). Parallel over target rows.
pub fn resample_onto<T: Resamplable>(
    vol: &Volume<T>,
    target_shape: [usize; 3],
    target_affine: &Affine,
    interp: Interpolation,
    fill: T,
) -> Result<Volume<T>> {
    let n = checked_len(target_shape)?;
    if vol.is_empty() {
        return Err(IoError::Invalid("cannot resample an empty volume".into()));
    }
    let m: Matrix4<f64> = vol.affine().inverse() * target_affine.matrix();
    if m.iter().any(|v| !v.is_finite()) {
        return Err(IoError::Geometry(format!(
            "target grid maps to non-finite source indices:\n{target_affine}"
        )));
    }
    let src = vol.as_raster_slice();
    let shape = vol.shape();
    let [ni, nj, _] = target_shape;
    let mut out = vec![fill; n];
    let step = [m[(0, 0)], m[(1, 0)], m[(2, 0)]];
    out.par_chunks_mut(ni)
        .with_min_len(16)
        .enumerate()
        .for_each(|(row, line)| {
            let (j, k) = ((row % nj) as f64, (row / nj) as f64);
            let base = [
                m[(0, 1)] * j + m[(0, 2)] * k + m[(0, 3)],
                m[(1, 1)] * j + m[(1, 2)] * k + m[(1, 3)],
                m[(2, 1)] * j + m[(2, 2)] * k + m[(2, 3)],
            ];
            for (i, o) in line.iter_mut().enumerate() {
                let fi = i as f64;
                let x = [
                    base[0] + step[0] * fi,
                    base[1] + step[1] * fi,
                    base[2] + step[2] * fi,
                ];
                if let Some(v) = sample(src, shape, x, interp) {
                    *o = v;
                }
            }
        });
    Volume::from_raster(target_shape, out, *target_affine)
}

/// Resamples `vol` onto the grid of `reference` (same shape and affine).
pub fn resample_like<T: Resamplable, U>(
    vol: &Volume<T>,
    reference: &Volume<U>,
    interp: Interpolation,
    fill: T,
) -> Result<Volume<T>> {
    resample_onto(vol, reference.shape(), reference.affine(), interp, fill)
}

/// The grid [`resample_to_spacing`] resamples onto: same direction, the
/// given spacing, `round(n · old / new)` voxels per axis (at least 1), and
/// the same centre, so the field of view `n · spacing` is kept up to less
/// than one new voxel. This is nnU-Net's shape rule and the geometry of
/// `skimage.transform.resize` (`align_corners=False`); it differs from MONAI
/// `Spacing`, which keeps voxel (0,0,0) in place instead of the centre.
pub fn grid_for_spacing(
    shape: [usize; 3],
    affine: &Affine,
    spacing_mm: [f64; 3],
) -> Result<([usize; 3], Affine)> {
    if spacing_mm.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(IoError::Invalid(format!(
            "target spacing {spacing_mm:?} mm must be positive and finite"
        )));
    }
    let old = affine.spacing_mm();
    let mut new_shape = [0usize; 3];
    let mut s = Matrix4::<f64>::identity();
    for a in 0..3 {
        let ratio = spacing_mm[a] / old[a];
        let count = (shape[a] as f64 / ratio).round().max(1.0);
        if !count.is_finite() || count > i32::MAX as f64 {
            return Err(IoError::Invalid(format!(
                "spacing {spacing_mm:?} mm on a {shape:?} grid of spacing {old:?} mm needs \
                 {count} voxels along axis {a}"
            )));
        }
        new_shape[a] = count as usize;
        s[(a, a)] = ratio;
        s[(a, 3)] = (shape[a] as f64 - 1.0) / 2.0 - (count - 1.0) / 2.0 * ratio;
    }
    checked_len(new_shape)?;
    Ok((new_shape, affine.compose(&s)?))
}

/// Resamples `vol` to `spacing_mm` keeping its direction and field of view
/// (see [`grid_for_spacing`] for the extent rule).
pub fn resample_to_spacing<T: Resamplable>(
    vol: &Volume<T>,
    spacing_mm: [f64; 3],
    interp: Interpolation,
    fill: T,
) -> Result<Volume<T>> {
    let (shape, affine) = grid_for_spacing(vol.shape(), vol.affine(), spacing_mm)?;
    resample_onto(vol, shape, &affine, interp, fill)
}

/// The value at continuous index `x`, or `None` outside the volume.
#[inline]
fn sample<T: Resamplable>(
    src: &[T],
    shape: [usize; 3],
    x: [f64; 3],
    interp: Interpolation,
) -> Option<T> {
    for a in 0..3 {
        if !(x[a] >= -0.5 - EDGE_TOL && x[a] <= shape[a] as f64 - 0.5 + EDGE_TOL) {
            return None;
        }
    }
    let at = |i: usize, j: usize, k: usize| src[i + shape[0] * (j + shape[1] * k)];
    match interp {
        Interpolation::Nearest => {
            let idx = |a: usize| (x[a].round().max(0.0) as usize).min(shape[a] - 1);
            Some(at(idx(0), idx(1), idx(2)))
        }
        Interpolation::Linear => {
            let mut lo = [0usize; 3];
            let mut hi = [0usize; 3];
            let mut w = [0f64; 3];
            for a in 0..3 {
                // A point within SNAP_TOL of a centre is on it: identical or
                // integer-aligned grids then copy values exactly instead of
                // blending in 1e-16 of a neighbour.
                let r = x[a].round();
                let xa = if (x[a] - r).abs() < SNAP_TOL { r } else { x[a] };
                let f = xa.floor();
                w[a] = xa - f;
                let last = shape[a] as f64 - 1.0;
                lo[a] = f.clamp(0.0, last) as usize;
                hi[a] = (f + 1.0).clamp(0.0, last) as usize;
            }
            let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
            let plane = |k: usize| {
                let r0 = lerp(
                    at(lo[0], lo[1], k).to_f64(),
                    at(hi[0], lo[1], k).to_f64(),
                    w[0],
                );
                let r1 = lerp(
                    at(lo[0], hi[1], k).to_f64(),
                    at(hi[0], hi[1], k).to_f64(),
                    w[0],
                );
                lerp(r0, r1, w[1])
            };
            Some(T::from_f64(lerp(plane(lo[2]), plane(hi[2]), w[2])))
        }
    }
}
