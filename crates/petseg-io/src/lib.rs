//! # petseg-io
//!
//! Owns the **volume model** ([`Volume`], [`Affine`]) and everything that
//! moves volumes between disk and memory or between grids: NIfTI-1 read and
//! write, reorientation, resampling, DICOM PET/CT ingest with SUVbw by the
//! QIBA rules ([`dicom`]), the dataset manifest, and the synthetic PSMA
//! PET/CT cohort. It does not know about networks, losses or metrics.
//!
//! Conventions (`docs/method/data.md` §1): voxel arrays are indexed
//! `(i, j, k)` in NIfTI order and stored i-fastest; affines map voxel indices
//! to RAS+ millimetres.
//!
//! Volumes on disk and between grids: [`nifti`] reads and writes NIfTI-1
//! (`.nii`, `.nii.gz`; validated headers, sform → qform → pixdim, scaling,
//! atomic parallel-compressed writes); [`resample`] moves a volume onto a new
//! spacing or onto another volume's grid (trilinear or nearest, any affine
//! pair, rayon-parallel); [`orient`] reorients to RAS+ by permutation and
//! flips only.
//!
//! ```no_run
//! use petseg_io::nifti::{read_nifti, read_nifti_f32, write_nifti};
//! use petseg_io::orient::reorient_to_ras;
//! use petseg_io::resample::{resample_like, resample_to_spacing, Interpolation};
//! # fn main() -> petseg_io::Result<()> {
//! let pet = read_nifti_f32("case_0001_0001.nii.gz")?; // SUV, scaling applied
//! let ct = read_nifti_f32("ct.nii.gz")?;
//! let ct_on_pet = resample_like(&ct, &pet, Interpolation::Linear, -1024.0)?;
//! let pet_2mm = resample_to_spacing(&reorient_to_ras(&pet), [2.0; 3], Interpolation::Linear, 0.0)?;
//! println!("{:?} -> {:?}, stored as {}", pet.shape(), pet_2mm.shape(), read_nifti("ct.nii.gz")?.dtype_name());
//! write_nifti("ct_on_pet.nii.gz", &ct_on_pet)?;
//! # Ok(())
//! # }
//! ```
//!
//! `.nii.gz` files are written as parallel-compressed gzip members at level 1
//! by default; [`nifti::WriteOptions`] selects another level. Measured load
//! and save times against nibabel and SimpleITK are in the crate README.
//!
//! Data sets: [`manifest`] is the data set as data (cases with explicit
//! files, patient ids, lesion counts, the split; nnU-Net and autoPET layout
//! readers). [`phantom`] generates the synthetic PSMA PET/CT cohort
//! (`docs/method/cohort.md`) and writes it in the nnU-Net layout with a manifest:
//!
//! ```no_run
//! use petseg_io::phantom::{write_cohort, PhantomConfig, Size};
//! # fn main() -> petseg_io::Result<()> {
//! let manifest = write_cohort("demo-out/cohort".as_ref(), &PhantomConfig::new(Size::Small), 4, 7)?;
//! manifest.check_files_exist()?;
//! # Ok(())
//! # }
//! ```

pub mod affine;
pub mod dicom;
pub mod error;
pub mod manifest;
pub mod nifti;
pub mod orient;
pub mod phantom;
pub mod resample;
pub mod volume;

pub use affine::Affine;
pub use error::{IoError, Result};
pub use volume::Volume;
