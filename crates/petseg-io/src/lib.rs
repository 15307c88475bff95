//! # petseg-io
//!
//! Owns the **volume model** ([`Volume`], [`Affine`]) and everything that
//! moves volumes between disk and memory or between grids: NIfTI-1 read and
//! write, reorientation, resampling, and the synthetic PSMA PET/CT cohort.
//! It does not know about networks, losses or metrics.
//!
//! Conventions (SPEC §1): voxel arrays are indexed `(i, j, k)` in NIfTI order
//! and stored i-fastest; affines map voxel indices to RAS+ millimetres.
//!
//! Data sets: [`manifest`] is the data set as data (cases with explicit
//! files, patient ids, lesion counts, the split; nnU-Net and autoPET layout
//! readers). [`phantom`] generates the synthetic PSMA PET/CT cohort
//! (SPEC §10) and writes it in the nnU-Net layout with a manifest:
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
