//! # petseg-train
//!
//! Owns **training and inference**: sliding-window prediction with MONAI's
//! semantics. It does not define networks (`petseg-models`), losses
//! (`petseg-losses`), patch sampling (`petseg-augment`) or metrics
//! (`petseg-eval`); it drives them.

pub mod error;
pub mod optim;
pub mod predict;
pub mod sliding;

pub use error::{Result, TrainError};
pub use sliding::{sliding_window_inference, BlendMode, SlidingWindowConfig};
