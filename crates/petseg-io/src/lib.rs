//! # petseg-io
//!
//! Owns the **volume model** ([`Volume`], [`Affine`]) and everything that
//! moves volumes between disk and memory or between grids: NIfTI-1 read and
//! write, reorientation, resampling, and the synthetic PSMA PET/CT cohort.
//! It does not know about networks, losses or metrics.
//!
//! Conventions (`docs/method/data.md` §1): voxel arrays are indexed `(i, j, k)` in NIfTI order
//! and stored i-fastest; affines map voxel indices to RAS+ millimetres.
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
//! ## Benchmarks: `.nii.gz` load/save, 192×192×550 float32 PET-like volume
//!
//! `cargo bench -p petseg-io --bench nifti_io` (`benches/nifti_io.rs`; the
//! peers are timed by `scripts/bench_peer.py` on the same files in the same
//! run; medians of 5; nibabel 5.4.2 at its default level 1, SimpleITK 2.5.7
//! at its default; petseg-io at level 1, 27.7 MB). Loads are to an in-memory
//! array (nibabel: `np.asarray(img.dataobj)`).
//!
//! Quiet 16-core Intel Xeon (the project's accelerator host, CPU only),
//! `RAYON_NUM_THREADS` = 1 / 2 / 16:
//!
//! | | load | save | load ratio (peer / ours) | save ratio |
//! |---|---|---|---|---|
//! | petseg-io, 1 thread | 0.268 s | 0.532 s | | |
//! | petseg-io, 2 threads | 0.137 s | 0.238 s | | |
//! | petseg-io, 16 threads | 0.026 s | 0.060 s | | |
//! | nibabel (2-thread run) | 0.381 s | 0.952 s | 2.8× | 4.0× |
//! | SimpleITK (2-thread run) | 0.309 s | 1.419 s | 2.3× | 6.0× |
//! | nibabel (1-thread run) | 0.483 s | 1.100 s | 1.8× | 2.1× |
//! | SimpleITK (1-thread run) | 0.332 s | 1.293 s | 1.2× | 2.4× |
//!
//! So petseg-io is faster than SimpleITK even on one thread, and ~2.3× (load)
//! / ~6× (save) faster on the 2 cores of a CI-class machine. Files from other
//! writers are one gzip stream and inflate serially: on the same run
//! petseg-io loaded nibabel's file in 0.20–0.25 s (nibabel itself:
//! 0.36–0.48 s) and SimpleITK's in 0.17–0.19 s (SimpleITK: 0.29–0.33 s).
//!
//! On the 2-vCPU development machine (Intel Xeon @ 2.50 GHz), shared and
//! busy during measurement (load average 6–7 on 2 cores, so absolute times
//! are pessimistic and noisy), same run, 2 threads: petseg-io load 0.326 s /
//! save 0.761 s, nibabel 1.290 / 2.703 s, SimpleITK 0.839 / 3.363 s, i.e.
//! load 3.9× / 2.6× and save 3.6× / 4.4× faster than nibabel / SimpleITK;
//! petseg-io read nibabel's and SimpleITK's files (one gzip stream) in
//! 0.44–0.45 s. Higher levels trade write time for size: level 3 wrote in
//! 1.36 s and loaded in 0.32 s (24.1 MB), level 6 in 2.73 s / 0.52 s
//! (24.0 MB); [`nifti::WriteOptions`] selects the level (default 1, as
//! nibabel).
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
