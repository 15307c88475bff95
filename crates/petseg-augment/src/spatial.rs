//! The random spatial transform of a patch: affine (rotation, scale,
//! translation) and flips, expressed as one map from patch voxels to source
//! voxels so the patch is sampled from the whole volume in a single pass.
//!
//! Conventions follow MONAI's `RandAffine`: with probability `prob`, angles
//! are drawn uniformly in `[−r, r]` about each voxel axis, scales as
//! `1 + U(−s, s)` per axis (or one value for all with `isotropic_scale`),
//! translations uniformly in `[−t, t]` voxels. The matrix is
//! `R = R_i(θ_i)·R_j(θ_j)·R_k(θ_k)` (MONAI's `create_rotate` order) and the
//! sampling map, about the patch centre, is
//! `src = centre + D⁻¹·R·D·S·F·(q − (P−1)/2) + t`, where `D` is the voxel
//! spacing (rotations happen in millimetres, so they stay rigid on
//! anisotropic grids), `S` the scales and `F` the flips.

use nalgebra::{Matrix3, Matrix4, Vector3};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{AugmentError, Result};

/// Random affine settings (defaults: `docs/method/preprocessing.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AffineConfig {
    /// Probability of applying the affine to a patch (study: 0.5).
    pub prob: f64,
    /// Largest rotation (radians) about the i, j and k axes. The reference
    /// rotates about the axial axis only (k in RAS): `[0, 0, π/15]`.
    pub rotate_range_rad: [f64; 3],
    /// Largest relative scale change per axis (0.1 → scale in [0.9, 1.1]).
    pub scale_range: [f64; 3],
    /// Use one scale factor (drawn with `scale_range[0]`) for all axes.
    pub isotropic_scale: bool,
    /// Largest translation in voxels per axis (study: 10).
    pub translate_range_vox: [f64; 3],
}

impl Default for AffineConfig {
    fn default() -> Self {
        AffineConfig {
            prob: 0.5,
            rotate_range_rad: [0.0, 0.0, std::f64::consts::PI / 15.0],
            scale_range: [0.1; 3],
            isotropic_scale: false,
            translate_range_vox: [10.0; 3],
        }
    }
}

impl AffineConfig {
    /// No random affine at all.
    pub fn disabled() -> Self {
        AffineConfig {
            prob: 0.0,
            ..Default::default()
        }
    }

    /// Checks ranges: probability in [0, 1], finite non-negative ranges,
    /// scale range below 1 (a scale must stay positive).
    pub fn validate(&self) -> Result<()> {
        check_prob("affine.prob", self.prob)?;
        let all = self
            .rotate_range_rad
            .iter()
            .chain(&self.scale_range)
            .chain(&self.translate_range_vox);
        if all.clone().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(AugmentError::Config(format!(
                "affine ranges must be finite and >= 0: rotate_range_rad {:?}, scale_range {:?}, \
                 translate_range_vox {:?}",
                self.rotate_range_rad, self.scale_range, self.translate_range_vox
            )));
        }
        if self.scale_range.iter().any(|&s| s >= 1.0) {
            return Err(AugmentError::Config(format!(
                "affine.scale_range {:?}: each must be < 1 so scales stay positive",
                self.scale_range
            )));
        }
        Ok(())
    }
}

/// Random flip settings: the probability of flipping each voxel axis.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FlipConfig {
    /// Probability of flipping along i, j and k (default 0: no flips).
    pub prob: [f64; 3],
}

impl FlipConfig {
    /// Checks that each probability is in [0, 1].
    pub fn validate(&self) -> Result<()> {
        for (a, &p) in self.prob.iter().enumerate() {
            check_prob(&format!("flip.prob[{a}]"), p)?;
        }
        Ok(())
    }
}

pub(crate) fn check_prob(name: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(AugmentError::Config(format!(
            "{name} = {p}: a probability must be in [0, 1]"
        )));
    }
    Ok(())
}

/// A map from patch voxel `q` to continuous source voxel `linear·q + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchTransform {
    /// The 3×3 linear part.
    pub linear: Matrix3<f64>,
    /// The source position of patch voxel (0, 0, 0).
    pub offset: Vector3<f64>,
}

impl PatchTransform {
    /// A pure integer shift: patch voxel `q` is source voxel `start + q`.
    pub fn shift(start: [i64; 3]) -> Self {
        PatchTransform {
            linear: Matrix3::identity(),
            offset: Vector3::new(start[0] as f64, start[1] as f64, start[2] as f64),
        }
    }

    /// Whether this is the identity plus an integer offset (then sampling is
    /// an exact copy, no interpolation).
    pub fn integer_shift(&self) -> Option<[i64; 3]> {
        let id = self.linear == Matrix3::identity();
        let int = self.offset.iter().all(|v| v.fract() == 0.0);
        id.then_some(()).filter(|_| int).map(|_| {
            [
                self.offset[0] as i64,
                self.offset[1] as i64,
                self.offset[2] as i64,
            ]
        })
    }

    /// The homogeneous 4×4 matrix (patch voxel → source voxel).
    pub fn matrix(&self) -> Matrix4<f64> {
        let mut m = Matrix4::identity();
        m.fixed_view_mut::<3, 3>(0, 0).copy_from(&self.linear);
        m.fixed_view_mut::<3, 1>(0, 3).copy_from(&self.offset);
        m
    }

    /// Source position of patch voxel `q`.
    pub fn apply(&self, q: [f64; 3]) -> [f64; 3] {
        let v = self.linear * Vector3::new(q[0], q[1], q[2]) + self.offset;
        [v[0], v[1], v[2]]
    }
}

/// Rotation about voxel axis `axis` by `theta` radians (right-handed).
fn rotation(axis: usize, theta: f64) -> Matrix3<f64> {
    let (s, c) = theta.sin_cos();
    match axis {
        0 => Matrix3::new(1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c),
        1 => Matrix3::new(c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c),
        _ => Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0),
    }
}

/// Draws the spatial transform of one patch.
///
/// `start` is the patch start of the plain crop ([`crate::crop::patch_start`]),
/// `size` the patch size, `spacing_mm` the source grid's voxel size. Draw
/// order (fixed, part of the reproducibility contract): apply-affine coin,
/// then (if applied) three angles, scales, three translations; then one coin
/// per flip axis. Returns the transform and whether anything was applied.
pub fn draw_transform(
    affine: &AffineConfig,
    flip: &FlipConfig,
    start: [i64; 3],
    size: [usize; 3],
    spacing_mm: [f64; 3],
    rng: &mut ChaCha8Rng,
) -> (PatchTransform, bool) {
    let apply_affine = affine.prob > 0.0 && rng.random::<f64>() < affine.prob;
    let mut lin = Matrix3::identity();
    let mut t = Vector3::zeros();
    if apply_affine {
        let th: Vec<f64> = affine
            .rotate_range_rad
            .iter()
            .map(|&r| sym(rng, r))
            .collect();
        let rot = rotation(0, th[0]) * rotation(1, th[1]) * rotation(2, th[2]);
        let s: [f64; 3] = if affine.isotropic_scale {
            let v = 1.0 + sym(rng, affine.scale_range[0]);
            [v; 3]
        } else {
            let v: Vec<f64> = affine
                .scale_range
                .iter()
                .map(|&r| 1.0 + sym(rng, r))
                .collect();
            [v[0], v[1], v[2]]
        };
        let d = Matrix3::from_diagonal(&Vector3::from(spacing_mm));
        let d_inv = Matrix3::from_diagonal(&Vector3::new(
            1.0 / spacing_mm[0],
            1.0 / spacing_mm[1],
            1.0 / spacing_mm[2],
        ));
        lin = d_inv * rot * d * Matrix3::from_diagonal(&Vector3::from(s));
        for a in 0..3 {
            t[a] = sym(rng, affine.translate_range_vox[a]);
        }
    }
    let mut flipped = false;
    let mut f = Vector3::repeat(1.0);
    for a in 0..3 {
        if flip.prob[a] > 0.0 && rng.random::<f64>() < flip.prob[a] {
            f[a] = -1.0;
            flipped = true;
        }
    }
    lin *= Matrix3::from_diagonal(&f);
    // Centre of the plain crop in source voxels, and of the patch grid.
    let half = Vector3::new(
        (size[0] as f64 - 1.0) / 2.0,
        (size[1] as f64 - 1.0) / 2.0,
        (size[2] as f64 - 1.0) / 2.0,
    );
    let centre = Vector3::new(start[0] as f64, start[1] as f64, start[2] as f64) + half;
    let offset = centre + t - lin * half;
    (
        PatchTransform {
            linear: lin,
            offset,
        },
        apply_affine || flipped,
    )
}

/// A uniform number in `[−r, r]` (0 without a draw when `r` is 0).
fn sym(rng: &mut ChaCha8Rng, r: f64) -> f64 {
    if r > 0.0 {
        rng.random_range(-r..=r)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn disabled_config_gives_integer_shift() {
        let mut rng = sample_rng(3, 0, 0);
        let (t, applied) = draw_transform(
            &AffineConfig::disabled(),
            &FlipConfig::default(),
            [3, -2, 5],
            [8, 8, 8],
            [2.0; 3],
            &mut rng,
        );
        assert!(!applied);
        assert_eq!(t.integer_shift(), Some([3, -2, 5]));
    }

    #[test]
    fn axial_rotation_keeps_k_axis_and_lengths() {
        let cfg = AffineConfig {
            prob: 1.0,
            scale_range: [0.0; 3],
            translate_range_vox: [0.0; 3],
            ..Default::default()
        };
        let mut rng = sample_rng(5, 1, 2);
        let (t, applied) = draw_transform(
            &cfg,
            &FlipConfig::default(),
            [0; 3],
            [9, 9, 9],
            [2.0; 3],
            &mut rng,
        );
        assert!(applied);
        // Rotation about k: third column is e_k, and the matrix is orthogonal.
        assert!((t.linear.column(2) - Vector3::z()).norm() < 1e-12);
        assert!((t.linear.transpose() * t.linear - Matrix3::identity()).norm() < 1e-12);
        // The patch centre maps to the crop centre.
        let c = t.apply([4.0; 3]);
        assert!(c.iter().all(|v| (v - 4.0).abs() < 1e-12));
        let angle = t.linear[(1, 0)].atan2(t.linear[(0, 0)]);
        assert!(angle.abs() <= std::f64::consts::PI / 15.0 + 1e-12);
    }

    #[test]
    fn validation_refuses_bad_ranges() {
        let c = AffineConfig {
            scale_range: [1.0, 0.1, 0.1],
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = AffineConfig {
            prob: 1.5,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        assert!(FlipConfig {
            prob: [0.0, -0.1, 0.0]
        }
        .validate()
        .is_err());
    }
}
