//! A preprocessed case held in memory, ready for patch sampling.

use petseg_io::{Affine, Volume};

use crate::crop::Candidates;
use crate::error::{AugmentError, Result};

/// A case after preprocessing: every channel on one grid, stored in the
/// network's tensor layout, plus the crop candidates computed once.
///
/// Layout: each channel is a C-order array of shape `[ni, nj, nk]` (axes
/// `(i, j, k)`, `k` fastest in memory), exactly the layout of one channel of
/// a `[B, C, i, j, k]` tensor, so that sliding windows and patches are plain
/// copies. The affine maps `(i, j, k)` to RAS+ mm.
#[derive(Debug, Clone)]
pub struct PreparedCase {
    id: String,
    shape: [usize; 3],
    affine: Affine,
    channels: Vec<Vec<f32>>,
    pad_values: Vec<f32>,
    label: Option<Vec<u8>>,
    candidates: Candidates,
}

/// Copies a Fortran-order volume into a C-order `(i, j, k)` vector.
pub fn to_c_order<T: Copy>(vol: &Volume<T>) -> Vec<T> {
    vol.data().iter().copied().collect()
}

impl PreparedCase {
    /// Builds a case from channel volumes on one grid and an optional label
    /// (any value > 0 is foreground). `pad_values[c]` fills channel `c`
    /// outside the volume; `pet_channel` selects the channel whose positive
    /// voxels are the background crop candidates (`docs/method/preprocessing.md` §3: PET > 0).
    pub fn from_volumes(
        id: impl Into<String>,
        channels: &[Volume<f32>],
        label: Option<&Volume<u8>>,
        pad_values: &[f32],
        pet_channel: usize,
    ) -> Result<Self> {
        let id = id.into();
        let err = |reason: String| AugmentError::Case {
            case: id.clone(),
            reason,
        };
        let first = channels
            .first()
            .ok_or_else(|| err("no image channel given".into()))?;
        if pad_values.len() != channels.len() {
            return Err(err(format!(
                "{} pad values for {} channels",
                pad_values.len(),
                channels.len()
            )));
        }
        if pet_channel >= channels.len() {
            return Err(err(format!(
                "PET channel {pet_channel} but only {} channels",
                channels.len()
            )));
        }
        for (c, ch) in channels.iter().enumerate().skip(1) {
            ch.check_same_grid(first, 1e-3, &format!("channel {c} vs channel 0"))
                .map_err(|e| err(e.to_string()))?;
        }
        if let Some(l) = label {
            l.check_same_grid(first, 1e-3, "label vs channel 0")
                .map_err(|e| err(e.to_string()))?;
        }
        let shape = first.shape();
        let data: Vec<Vec<f32>> = channels.iter().map(to_c_order).collect();
        let label: Option<Vec<u8>> =
            label.map(|l| l.data().iter().map(|&v| u8::from(v > 0)).collect());
        let candidates = Candidates::compute(&data[pet_channel], label.as_deref()).map_err(err)?;
        Ok(PreparedCase {
            id,
            shape,
            affine: *first.affine(),
            channels: data,
            pad_values: pad_values.to_vec(),
            label,
            candidates,
        })
    }

    /// The case id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Grid shape `[ni, nj, nk]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Voxel-to-world affine of the grid.
    pub fn affine(&self) -> &Affine {
        &self.affine
    }

    /// Number of image channels.
    pub fn n_channels(&self) -> usize {
        self.channels.len()
    }

    /// Channel `c` in C order `(i, j, k)`.
    pub fn channel(&self, c: usize) -> &[f32] {
        &self.channels[c]
    }

    /// The fill value of each channel outside the volume.
    pub fn pad_values(&self) -> &[f32] {
        &self.pad_values
    }

    /// The binary label in C order, if the case has one.
    pub fn label(&self) -> Option<&[u8]> {
        self.label.as_deref()
    }

    /// The crop-centre candidates.
    pub fn candidates(&self) -> &Candidates {
        &self.candidates
    }

    /// All channels stacked as one `[C, ni, nj, nk]` C-order vector (the
    /// input tensor of whole-volume inference).
    pub fn image_tensor_data(&self) -> Vec<f32> {
        self.channels.concat()
    }

    /// Linear C-order index of `(i, j, k)`.
    pub fn index(&self, ijk: [usize; 3]) -> usize {
        (ijk[0] * self.shape[1] + ijk[1]) * self.shape[2] + ijk[2]
    }

    /// `(i, j, k)` of a linear C-order index.
    pub fn coords(&self, idx: usize) -> [usize; 3] {
        let [_, nj, nk] = self.shape;
        [idx / (nj * nk), (idx / nk) % nj, idx % nk]
    }
}
