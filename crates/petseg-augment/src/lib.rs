//! # petseg-augment
//!
//! Owns the **input side of training**: turning a case's CT, PET and label
//! volumes into the network's input channels (`docs/method/preprocessing.md`), and drawing training
//! patches from them — the foreground-biased crop (MONAI
//! `RandCropByPosNegLabel` semantics), the random affine sampled straight from
//! the whole volume in one interpolation pass, optional flips and intensity
//! jitter. It does not know about networks, losses, the training loop or
//! inference (see `petseg-train`), nor about file formats (see `petseg-io`).
//!
//! ## Layout
//! A [`PreparedCase`] keeps each channel as a C-order array with axes
//! `(i, j, k)` (k fastest), the layout of one channel of a `[B, C, i, j, k]`
//! tensor (MONAI's layout), so patches and windows are plain copies. A
//! [`Patch`] holds `image [C, P, P, P]`, `label [1, P, P, P]` and the
//! patch's own affine (patch voxel → world), which stays correct under the
//! random affine and flips.
//!
//! ## Determinism
//! Every random draw comes from [`rng::sample_rng`]`(seed, epoch, index)`:
//! one ChaCha8 stream per sample, so the same seed gives the same patches on
//! any number of threads and in any order, and resuming a run needs no
//! generator state.
//!
//! ## Example
//! ```
//! use petseg_augment::{AugmentConfig, PreparedCase, sample_patch_seeded};
//! use petseg_io::{Affine, Volume};
//!
//! let aff = Affine::from_spacing_origin([2.0; 3], [0.0; 3]).unwrap();
//! let ct = Volume::filled([24, 24, 24], 0.5f32, aff).unwrap();
//! let mut pet = Volume::filled([24, 24, 24], 1.0f32, aff).unwrap();
//! let mut label = Volume::filled([24, 24, 24], 0u8, aff).unwrap();
//! pet.data_mut()[[12, 12, 12]] = 9.0;
//! label.data_mut()[[12, 12, 12]] = 1;
//! let case = PreparedCase::from_volumes("demo", &[ct, pet], Some(&label), &[0.0, 0.0], 1).unwrap();
//! let cfg = AugmentConfig { patch_size: [16; 3], ..Default::default() };
//! let patch = sample_patch_seeded(&case, &cfg, 42, 0, 0).unwrap();
//! assert_eq!(patch.image.len(), 2 * 16 * 16 * 16);
//! ```
//!
//! ## Throughput
//! See the crate README (bench `cargo bench -p petseg-augment --bench patches`).

pub mod case;
pub mod crop;
pub mod error;
pub mod intensity;
pub mod preprocess;
pub mod rng;
pub mod sampler;
pub mod spatial;

pub use case::PreparedCase;
pub use crop::{Candidates, PosNeg};
pub use error::{AugmentError, Result};
pub use intensity::CtNormalisation;
pub use preprocess::{Grid, PreprocessConfig};
pub use sampler::{sample_patch, sample_patch_seeded, AugmentConfig, IntensityJitter, Patch};
pub use spatial::{AffineConfig, FlipConfig, PatchTransform};
