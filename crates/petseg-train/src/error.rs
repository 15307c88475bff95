//! The error type of `petseg-train`.

use std::path::PathBuf;

/// Everything that can go wrong training or predicting.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value outside its valid range.
    #[error("invalid config: {0}")]
    Config(String),
    /// A device that this build cannot use or that cannot be opened (e.g.
    /// CUDA without the `cuda` feature, or no GPU).
    #[error("{0}")]
    Device(String),
    /// Tensors or buffers whose sizes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A file that cannot be read or written, or whose content is wrong.
    #[error("{path}: {reason}")]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error("loss is not finite ({loss}) at epoch {epoch}, step {step}; stopping. The last good checkpoint is kept in {run_dir}")]
    NonFiniteLoss {
        /// The offending loss value.
        loss: f32,
        /// Epoch (0-based) of the failure.
        epoch: usize,
        /// Global optimiser step of the failure.
        step: u64,
        /// The run folder holding the last good checkpoint.
        run_dir: PathBuf,
    },
    /// The run stopped on request after this many optimiser steps
    /// ([`crate::trainer::TrainOptions::stop_after_steps`]), as if killed;
    /// the checkpoints written so far are intact.
    #[error("training stopped on request after step {0}")]
    Stopped(u64),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from the volume layer.
    #[error(transparent)]
    Io(#[from] petseg_io::IoError),
    /// An error from preprocessing or augmentation.
    #[error(transparent)]
    Augment(#[from] petseg_augment::AugmentError),
    /// An error from the networks.
    #[error(transparent)]
    Model(#[from] petseg_models::ModelError),
    /// An error from the losses.
    #[error(transparent)]
    Loss(#[from] petseg_losses::LossError),
}

impl TrainError {
    /// A file error for `path`.
    pub fn file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        TrainError::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
