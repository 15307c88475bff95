//! # petseg-train
//!
//! Owns **training and inference** (SPEC §7, §8): the run configuration,
//! case loading and caching, background batch production, the training loop
//! (AdamW matched to PyTorch, cosine schedule, gradient clipping, validation
//! by sliding window, best/last checkpoints, exact resume), and prediction
//! (sliding window with MONAI's semantics, flip TTA, fold ensembles, back to
//! the original PET grid).
//!
//! It does not define networks (`petseg-models`), losses (`petseg-losses`),
//! patch sampling or preprocessing (`petseg-augment`), file formats
//! (`petseg-io`) or the evaluation metrics of a study (`petseg-eval`); it
//! drives them.
//!
//! ## Example
//! ```no_run
//! use petseg_train::{config::RunConfig, trainer::{train, TrainOptions}};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = RunConfig::load("run.toml".as_ref())?;
//! let summary = train(&cfg, &TrainOptions::default())?;
//! println!("best mean DSC {:?}", summary.best);
//! # Ok(()) }
//! ```
//!
//! ## Reproducibility
//! Weights come from the seed (`ModelConfig::build_seeded`); the case order
//! of each epoch and every patch are pure functions of (seed, epoch, sample
//! index), dropout of (seed, step). A checkpoint therefore stores counters,
//! not generator states, and on the CPU with a fixed thread count a resumed
//! run reproduces the uninterrupted one bit for bit (tested).
//!
//! ## Not done
//! bf16 autocast under the `cuda` feature is not implemented: training runs
//! in f32 on the CPU.

pub mod checkpoint;
pub mod compute;
pub mod config;
pub mod data;
pub mod error;
pub mod optim;
pub mod predict;
pub mod producer;
pub mod sliding;
pub mod trainer;

pub use compute::{DeviceSpec, Precision};
pub use error::{Result, TrainError};
pub use sliding::{sliding_window_inference, BlendMode, SlidingWindowConfig};
