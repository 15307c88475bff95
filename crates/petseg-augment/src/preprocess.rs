//! From scanner volumes to a [`PreparedCase`] (`docs/method/preprocessing.md`
//! §1–2): reorient to RAS, resample to the training spacing, normalise the CT,
//! keep the PET in SUV.
//!
//! The grid of a prepared case is derived from the **PET**: the PET is
//! reoriented to RAS (axis permutation and flips, no interpolation), then
//! resampled to `spacing_mm` keeping its field of view
//! ([`petseg_io::resample::grid_for_spacing`]). The CT and the label are
//! resampled straight onto that grid in one interpolation each (trilinear
//! for the CT with −1024 HU outside, nearest for the label), so a CT on its
//! own finer grid — the usual scanner output — is accepted: differing PET/CT
//! grids are resampled, never refused, as long as they overlap.

use petseg_io::orient::reorient_to_ras;
use petseg_io::resample::{grid_for_spacing, resample_onto, Interpolation};
use petseg_io::{Affine, Volume};
use serde::{Deserialize, Serialize};

use crate::case::PreparedCase;
use crate::error::{AugmentError, Result};
use crate::intensity::{sanitise_suv, CtNormalisation};

/// Channel index of the CT in a prepared case.
pub const CT_CHANNEL: usize = 0;
/// Channel index of the PET in a prepared case.
pub const PET_CHANNEL: usize = 1;

/// Air in HU: the CT value outside the scanned field of view.
pub const AIR_HU: f32 = -1024.0;

/// How scanner volumes become network input (study defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreprocessConfig {
    /// Target voxel size in mm (study: 2 mm isotropic); `None` keeps the
    /// PET's own spacing (after reorientation).
    pub spacing_mm: Option<[f64; 3]>,
    /// CT scaling (study: window [−154, 325] HU → [0, 1]).
    pub ct: CtNormalisation,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            spacing_mm: Some([2.0; 3]),
            ct: CtNormalisation::default(),
        }
    }
}

/// The network grid of a case: shape and affine of the prepared volumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Shape `[ni, nj, nk]`.
    pub shape: [usize; 3],
    /// Voxel-to-world affine.
    pub affine: Affine,
}

impl PreprocessConfig {
    /// Checks the spacing and the CT window.
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = self.spacing_mm {
            if s.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return Err(AugmentError::Config(format!(
                    "spacing_mm {s:?}: must be positive and finite"
                )));
            }
        }
        self.ct.validate()
    }

    /// The network grid for a PET volume: RAS orientation, target spacing.
    pub fn grid_for(&self, pet: &Volume<f32>) -> Result<Grid> {
        let ras = reorient_to_ras(pet);
        let (shape, affine) = match self.spacing_mm {
            Some(s) => grid_for_spacing(ras.shape(), ras.affine(), s)?,
            None => (ras.shape(), *ras.affine()),
        };
        Ok(Grid { shape, affine })
    }

    /// The two input channels (normalised CT, PET in SUV) on `grid`.
    pub fn channels(
        &self,
        ct_hu: &Volume<f32>,
        pet_suv: &Volume<f32>,
        grid: &Grid,
    ) -> Result<[Volume<f32>; 2]> {
        self.validate()?;
        let mut ct = resample_onto(
            ct_hu,
            grid.shape,
            &grid.affine,
            Interpolation::Linear,
            AIR_HU,
        )?;
        self.ct.apply(ct.as_raster_slice_mut());
        let mut pet = resample_onto(
            pet_suv,
            grid.shape,
            &grid.affine,
            Interpolation::Linear,
            0.0,
        )?;
        sanitise_suv(pet.as_raster_slice_mut());
        Ok([ct, pet])
    }

    /// Prepares a case for training or validation: channels on the network
    /// grid, the label (if any) resampled nearest-neighbour and binarised,
    /// crop candidates computed.
    pub fn prepare(
        &self,
        id: &str,
        ct_hu: &Volume<f32>,
        pet_suv: &Volume<f32>,
        label: Option<&Volume<u8>>,
    ) -> Result<PreparedCase> {
        let grid = self.grid_for(pet_suv)?;
        let channels = self.channels(ct_hu, pet_suv, &grid)?;
        let label = label
            .map(|l| resample_onto(l, grid.shape, &grid.affine, Interpolation::Nearest, 0u8))
            .transpose()?;
        PreparedCase::from_volumes(
            id,
            &channels,
            label.as_ref(),
            &[self.ct.pad_value(), 0.0],
            PET_CHANNEL,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lps_pet_and_finer_ct_end_on_one_ras_2mm_grid() {
        // PET 4 mm, LPS; CT 2 mm RAS covering the same box.
        let pet_aff = Affine::from_rows([
            [-4.0, 0.0, 0.0, 60.0],
            [0.0, -4.0, 0.0, 60.0],
            [0.0, 0.0, 4.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ])
        .unwrap();
        let pet = Volume::filled([16, 16, 8], 2.5f32, pet_aff).unwrap();
        let ct_aff = Affine::from_spacing_origin([2.0; 3], [0.0 - 1.0, -1.0, -1.0]).unwrap();
        let ct = Volume::filled([32, 32, 16], 85.5f32, ct_aff).unwrap();
        let mut label = Volume::filled([16, 16, 8], 0u8, pet_aff).unwrap();
        label.data_mut()[[8, 8, 4]] = 3;
        let case = PreprocessConfig::default()
            .prepare("c", &ct, &pet, Some(&label))
            .unwrap();
        assert_eq!(case.affine().orientation_code(), "RAS");
        assert_eq!(case.shape(), [32, 32, 16]);
        let sp = case.affine().spacing_mm();
        assert!(sp.iter().all(|s| (s - 2.0).abs() < 1e-9));
        // CT 85.5 HU is the middle of the window; PET stays in SUV.
        let mid = case.index([16, 16, 8]);
        assert!((case.channel(CT_CHANNEL)[mid] - 0.5).abs() < 1e-5);
        assert!((case.channel(PET_CHANNEL)[mid] - 2.5).abs() < 1e-5);
        let lab = case.label().unwrap();
        assert!(lab.iter().all(|&v| v <= 1));
        assert!(lab.contains(&1));
    }
}
