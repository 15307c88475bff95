//! Patch sampling: crop centre + spatial transform + one interpolation pass.

use nalgebra::Vector3;
use petseg_io::Affine;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::case::PreparedCase;
use crate::crop::{patch_start, PosNeg};
use crate::error::{AugmentError, Result};
use crate::rng::sample_rng;
use crate::spatial::{check_prob, draw_transform, AffineConfig, FlipConfig, PatchTransform};

/// Random intensity jitter per image channel: with probability `prob`,
/// `x ← x·(1 + U(−scale, scale)) + U(−shift, shift)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntensityJitter {
    /// Probability of jittering a channel of a patch.
    pub prob: f64,
    /// Largest relative scale change.
    pub scale: f64,
    /// Largest additive shift (in the channel's units: [0, 1] CT, SUV PET).
    pub shift: f64,
}

/// Everything that defines how training patches are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Patch size in voxels along i, j, k (study: 128³ at 2 mm).
    pub patch_size: [usize; 3],
    /// Foreground/background centre balance (study: 4:1).
    pub pos_neg: PosNeg,
    /// Random affine (study: p = 0.5, ±π/15 axial, ±10 %, ±10 voxels).
    pub affine: AffineConfig,
    /// Random flips (off by default, as in the study).
    pub flip: FlipConfig,
    /// Optional intensity jitter (off by default, as in the study).
    pub intensity: Option<IntensityJitter>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            patch_size: [128; 3],
            pos_neg: PosNeg::default(),
            affine: AffineConfig::default(),
            flip: FlipConfig::default(),
            intensity: None,
        }
    }
}

impl AugmentConfig {
    /// Checks every field; the error names the field and the value.
    pub fn validate(&self) -> Result<()> {
        if self.patch_size.contains(&0) {
            return Err(AugmentError::Config(format!(
                "patch_size {:?}: every axis must be > 0",
                self.patch_size
            )));
        }
        self.pos_neg.ratio()?;
        self.affine.validate()?;
        self.flip.validate()?;
        if let Some(j) = &self.intensity {
            check_prob("intensity.prob", j.prob)?;
            if !(j.scale.is_finite()
                && (0.0..1.0).contains(&j.scale)
                && j.shift.is_finite()
                && j.shift >= 0.0)
            {
                return Err(AugmentError::Config(format!(
                    "intensity.scale {} and intensity.shift {}: need 0 <= scale < 1 and finite shift >= 0",
                    j.scale, j.shift
                )));
            }
        }
        Ok(())
    }
}

/// One training patch in the network's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// Patch size `[Pi, Pj, Pk]`.
    pub size: [usize; 3],
    /// Image channels, `[C, Pi, Pj, Pk]` C order (k fastest).
    pub image: Vec<f32>,
    /// Number of image channels `C`.
    pub n_channels: usize,
    /// Binary label, `[1, Pi, Pj, Pk]` C order (all 0 for an unlabelled case).
    pub label: Vec<u8>,
    /// World mapping of the patch grid: patch voxel `(i, j, k)` → RAS+ mm.
    pub affine: Affine,
    /// The drawn crop centre (source voxel), before the border correction.
    pub centre_voxel: [usize; 3],
    /// Whether the centre was drawn from the lesion voxels.
    pub centre_is_foreground: bool,
    /// Whether a random affine or flip was applied.
    pub augmented: bool,
}

/// Draws patch `index` of `epoch` for a run seeded with `seed` (see
/// [`crate::rng::sample_rng`]): the result depends on nothing else.
pub fn sample_patch_seeded(
    case: &PreparedCase,
    cfg: &AugmentConfig,
    seed: u64,
    epoch: u64,
    index: u64,
) -> Result<Patch> {
    sample_patch(case, cfg, &mut sample_rng(seed, epoch, index))
}

/// Draws one patch from `case` with `rng`.
///
/// Draw order: crop centre (list coin, then voxel), then the spatial
/// transform ([`draw_transform`]), then intensity jitter per channel.
pub fn sample_patch(
    case: &PreparedCase,
    cfg: &AugmentConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Patch> {
    cfg.validate()?;
    let ratio = cfg.pos_neg.ratio()?;
    let (idx, is_fg) = case.candidates().draw(ratio, rng);
    let centre = case.coords(idx);
    let shape = case.shape();
    let size = cfg.patch_size;
    let start = [
        patch_start(centre[0], shape[0], size[0]),
        patch_start(centre[1], shape[1], size[1]),
        patch_start(centre[2], shape[2], size[2]),
    ];
    let (transform, augmented) = draw_transform(
        &cfg.affine,
        &cfg.flip,
        start,
        size,
        case.affine().spacing_mm(),
        rng,
    );
    let (mut image, label) = resample_patch(case, &transform, size);
    if let Some(j) = &cfg.intensity {
        let n = size.iter().product::<usize>();
        for ch in image.chunks_mut(n) {
            if rng.random::<f64>() < j.prob {
                let a = 1.0
                    + if j.scale > 0.0 {
                        rng.random_range(-j.scale..=j.scale)
                    } else {
                        0.0
                    };
                let b = if j.shift > 0.0 {
                    rng.random_range(-j.shift..=j.shift)
                } else {
                    0.0
                };
                let (a, b) = (a as f32, b as f32);
                ch.iter_mut().for_each(|v| *v = *v * a + b);
            }
        }
    }
    let affine = case.affine().compose(&transform.matrix())?;
    Ok(Patch {
        size,
        image,
        n_channels: case.n_channels(),
        label,
        affine,
        centre_voxel: centre,
        centre_is_foreground: is_fg,
        augmented,
    })
}

/// Samples all channels (trilinear; exact copy for an integer shift) and the
/// label (nearest) of `case` on the patch grid defined by `t`. Voxels
/// outside the volume take the channel's pad value and label 0; a trilinear
/// sample near the border mixes in the pad value for its outside corners
/// (PyTorch `grid_sample` "zeros" padding, with the pad value for zero).
pub fn resample_patch(
    case: &PreparedCase,
    t: &PatchTransform,
    size: [usize; 3],
) -> (Vec<f32>, Vec<u8>) {
    let n_ch = case.n_channels();
    let slab = size[1] * size[2];
    let slabs: Vec<(Vec<f32>, Vec<u8>)> = (0..size[0])
        .into_par_iter()
        .map(|i| match t.integer_shift() {
            Some(start) => copy_slab(case, start, size, i),
            None => interpolate_slab(case, t, size, i),
        })
        .collect();
    let n = size[0] * slab;
    let mut image = vec![0f32; n_ch * n];
    let mut label = vec![0u8; n];
    for (i, (img, lab)) in slabs.into_iter().enumerate() {
        for c in 0..n_ch {
            image[c * n + i * slab..c * n + (i + 1) * slab]
                .copy_from_slice(&img[c * slab..(c + 1) * slab]);
        }
        label[i * slab..(i + 1) * slab].copy_from_slice(&lab);
    }
    (image, label)
}

/// One i-slab of an integer-shift crop: `[C, Pj, Pk]` image and `[Pj, Pk]` label.
fn copy_slab(
    case: &PreparedCase,
    start: [i64; 3],
    size: [usize; 3],
    i: usize,
) -> (Vec<f32>, Vec<u8>) {
    let shape = case.shape();
    let slab = size[1] * size[2];
    let mut img: Vec<f32> = case
        .pad_values()
        .iter()
        .flat_map(|&p| std::iter::repeat_n(p, slab))
        .collect();
    let mut lab = vec![0u8; slab];
    let si = start[0] + i as i64;
    if si < 0 || si >= shape[0] as i64 {
        return (img, lab);
    }
    // k range inside the volume.
    let k0 = (-start[2]).max(0) as usize;
    let k1 = ((shape[2] as i64 - start[2]).min(size[2] as i64)).max(0) as usize;
    if k1 <= k0 {
        return (img, lab);
    }
    for j in 0..size[1] {
        let sj = start[1] + j as i64;
        if sj < 0 || sj >= shape[1] as i64 {
            continue;
        }
        let src0 = case.index([si as usize, sj as usize, (start[2] + k0 as i64) as usize]);
        let dst0 = j * size[2] + k0;
        let len = k1 - k0;
        for c in 0..case.n_channels() {
            img[c * slab + dst0..c * slab + dst0 + len]
                .copy_from_slice(&case.channel(c)[src0..src0 + len]);
        }
        if let Some(l) = case.label() {
            lab[dst0..dst0 + len].copy_from_slice(&l[src0..src0 + len]);
        }
    }
    (img, lab)
}

/// One i-slab sampled through a general transform.
fn interpolate_slab(
    case: &PreparedCase,
    t: &PatchTransform,
    size: [usize; 3],
    i: usize,
) -> (Vec<f32>, Vec<u8>) {
    let shape = case.shape();
    let slab = size[1] * size[2];
    let n_ch = case.n_channels();
    let pads = case.pad_values();
    let mut img = vec![0f32; n_ch * slab];
    let mut lab = vec![0u8; slab];
    let col_j = t.linear.column(1).into_owned();
    let col_k = t.linear.column(2).into_owned();
    let row0: Vector3<f64> = t.linear.column(0) * i as f64 + t.offset;
    let inside = |x: i64, a: usize| x >= 0 && x < shape[a] as i64;
    for j in 0..size[1] {
        let base = row0 + col_j * j as f64;
        for k in 0..size[2] {
            let p = base + col_k * k as f64;
            let o = j * size[2] + k;
            // Nearest label (round half up, like floor(x + 0.5)).
            if let Some(l) = case.label() {
                let r = [
                    (p[0] + 0.5).floor() as i64,
                    (p[1] + 0.5).floor() as i64,
                    (p[2] + 0.5).floor() as i64,
                ];
                if (0..3).all(|a| inside(r[a], a)) {
                    lab[o] = l[case.index([r[0] as usize, r[1] as usize, r[2] as usize])];
                }
            }
            // Trilinear image.
            let f = [p[0].floor(), p[1].floor(), p[2].floor()];
            let b = [f[0] as i64, f[1] as i64, f[2] as i64];
            let w = [p[0] - f[0], p[1] - f[1], p[2] - f[2]];
            let mut wsum_in = 0f64;
            let mut weights = [0f64; 8];
            let mut idx = [usize::MAX; 8];
            for corner in 0..8 {
                let d = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1];
                let wc: f64 = (0..3)
                    .map(|a| if d[a] == 1 { w[a] } else { 1.0 - w[a] })
                    .product();
                weights[corner] = wc;
                let q = [b[0] + d[0] as i64, b[1] + d[1] as i64, b[2] + d[2] as i64];
                if (0..3).all(|a| inside(q[a], a)) {
                    idx[corner] = case.index([q[0] as usize, q[1] as usize, q[2] as usize]);
                    wsum_in += wc;
                }
            }
            for c in 0..n_ch {
                let ch = case.channel(c);
                let mut v = 0f64;
                for corner in 0..8 {
                    if idx[corner] != usize::MAX {
                        v += weights[corner] * ch[idx[corner]] as f64;
                    }
                }
                img[c * slab + o] = (v + (1.0 - wsum_in) * pads[c] as f64) as f32;
            }
        }
    }
    (img, lab)
}
