//! Foreground-biased crop centres (MONAI `RandCropByPosNegLabel` semantics).
//!
//! The candidate voxels are computed once per case ([`Candidates::compute`]):
//! foreground = label > 0, background = label 0 with PET > 0 (MONAI's
//! `map_binary_to_indices` with the PET as the image and threshold 0). Each
//! draw then picks the foreground list with probability `pos / (pos + neg)`
//! and a uniform voxel of the chosen list. A case without lesion voxels
//! samples background only, and one without background candidates samples
//! foreground only (MONAI warns and does the same).
//!
//! Like MONAI's `correct_crop_centers`, a centre is moved inward so that the
//! patch lies inside the volume along every axis where the volume is at
//! least as large as the patch. Along an axis where the volume is smaller,
//! the volume is centred in the patch and the rest is padded.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{AugmentError, Result};

/// The crop centre candidates of one case, as linear C-order indices.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    foreground: Vec<u32>,
    background: Vec<u32>,
}

impl Candidates {
    /// Scans the PET channel and the binary label (C order, same length).
    /// If the PET has no positive voxel outside the label (a blank image),
    /// every non-lesion voxel is a background candidate so sampling still
    /// works. Errors (as a message) if the volume has more than `u32::MAX`
    /// voxels or the lengths differ.
    pub fn compute(pet: &[f32], label: Option<&[u8]>) -> std::result::Result<Self, String> {
        if pet.len() > u32::MAX as usize {
            return Err(format!(
                "{} voxels: more than the 2^32 this sampler indexes",
                pet.len()
            ));
        }
        if let Some(l) = label {
            if l.len() != pet.len() {
                return Err(format!("label has {} voxels, PET {}", l.len(), pet.len()));
            }
        }
        let is_fg = |i: usize| label.is_some_and(|l| l[i] > 0);
        let mut foreground = Vec::new();
        let mut background = Vec::new();
        for (i, &v) in pet.iter().enumerate() {
            if is_fg(i) {
                foreground.push(i as u32);
            } else if v > 0.0 {
                background.push(i as u32);
            }
        }
        if background.is_empty() {
            background = (0..pet.len())
                .filter(|&i| !is_fg(i))
                .map(|i| i as u32)
                .collect();
        }
        Ok(Candidates {
            foreground,
            background,
        })
    }

    /// Lesion voxels (label > 0).
    pub fn foreground(&self) -> &[u32] {
        &self.foreground
    }

    /// Background voxels with PET > 0.
    pub fn background(&self) -> &[u32] {
        &self.background
    }

    /// Draws a centre: `(linear index, is_foreground)`. The foreground is
    /// chosen with probability `pos_ratio` when both lists are non-empty.
    pub fn draw(&self, pos_ratio: f64, rng: &mut ChaCha8Rng) -> (usize, bool) {
        let ratio = if self.foreground.is_empty() {
            0.0
        } else if self.background.is_empty() {
            1.0
        } else {
            pos_ratio
        };
        let use_fg = rng.random::<f64>() < ratio;
        let list = if use_fg {
            &self.foreground
        } else {
            &self.background
        };
        // `compute` guarantees at least one non-empty list for a non-empty volume.
        let pick = rng.random_range(0..list.len());
        (list[pick] as usize, use_fg)
    }
}

/// The foreground/background balance of the crop centres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PosNeg {
    /// Relative weight of lesion-centred patches (study: 4).
    pub pos: f64,
    /// Relative weight of background-centred patches (study: 1).
    pub neg: f64,
}

impl Default for PosNeg {
    fn default() -> Self {
        PosNeg { pos: 4.0, neg: 1.0 }
    }
}

impl PosNeg {
    /// `pos / (pos + neg)`, after checking both are finite, ≥ 0 and not both 0.
    pub fn ratio(&self) -> Result<f64> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.pos) || !ok(self.neg) || self.pos + self.neg <= 0.0 {
            return Err(AugmentError::Config(format!(
                "pos/neg = {}/{}: need finite non-negative weights, not both 0",
                self.pos, self.neg
            )));
        }
        Ok(self.pos / (self.pos + self.neg))
    }
}

/// The patch start (voxel index of patch voxel 0, may be negative) for a
/// crop `centre` along one axis of length `n` with patch size `p`,
/// following MONAI's `correct_crop_centers` + `SpatialCrop`.
pub fn patch_start(centre: usize, n: usize, p: usize) -> i64 {
    if n < p {
        // Volume smaller than the patch: centre the volume, pad around it.
        return -(((p - n) / 2) as i64);
    }
    let valid_start = p / 2;
    // MONAI: valid_end = floor(n + 1 - p/2); centre <= valid_end - 1.
    let mut valid_end = ((n + 1) as f64 - p as f64 / 2.0).floor() as usize;
    if valid_end == valid_start {
        valid_end += 1;
    }
    let c = centre.max(valid_start).min(valid_end - 1);
    c as i64 - (p / 2) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn patch_start_keeps_patch_inside() {
        for n in 4..20usize {
            for p in 1..=n {
                for c in 0..n {
                    let s = patch_start(c, n, p);
                    assert!(s >= 0 && s as usize + p <= n, "n {n} p {p} c {c} s {s}");
                    // An interior centre is not moved.
                    if c >= p / 2 && c + p - p / 2 <= n {
                        assert_eq!(s, c as i64 - (p / 2) as i64);
                    }
                }
            }
        }
        assert_eq!(patch_start(0, 4, 8), -2);
    }

    #[test]
    fn lesion_free_case_draws_background_only() {
        let pet = vec![0.0, 1.0, 2.0, 0.0];
        let c = Candidates::compute(&pet, Some(&[0, 0, 0, 0])).unwrap();
        let mut rng = sample_rng(1, 0, 0);
        for _ in 0..100 {
            let (i, fg) = c.draw(0.8, &mut rng);
            assert!(!fg);
            assert!(i == 1 || i == 2);
        }
    }

    #[test]
    fn blank_pet_falls_back_to_all_background() {
        let c = Candidates::compute(&[0.0; 5], Some(&[0, 1, 0, 0, 0])).unwrap();
        assert_eq!(c.foreground(), &[1]);
        assert_eq!(c.background(), &[0, 2, 3, 4]);
    }

    #[test]
    fn bad_pos_neg_is_refused() {
        assert!(PosNeg { pos: 0.0, neg: 0.0 }.ratio().is_err());
        assert!(PosNeg {
            pos: -1.0,
            neg: 1.0
        }
        .ratio()
        .is_err());
        assert_eq!(PosNeg::default().ratio().unwrap(), 0.8);
    }
}
