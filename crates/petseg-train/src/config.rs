//! The run configuration: everything that defines a training run, read
//! from TOML and saved (resolved) in the run folder and in every checkpoint.

use std::path::{Path, PathBuf};

use petseg_augment::{AugmentConfig, PreprocessConfig};
use petseg_losses::LossConfig;
use petseg_models::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::compute::{DeviceSpec, Precision};
use crate::error::{Result, TrainError};
use crate::optim::AdamWConfig;
use crate::sliding::SlidingWindowConfig;

/// Which cases train and validate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The dataset manifest (JSON, `docs/method/data.md` §4); relative paths are resolved
    /// against the current directory.
    pub manifest: PathBuf,
    /// The fold of the manifest's split to train (its `train` ids) and
    /// validate (its `val` ids).
    #[serde(default)]
    pub fold: usize,
}

/// Epochs, batches and the learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Number of epochs (study: 1000).
    pub epochs: usize,
    /// Patches per optimiser step (study: 8).
    pub batch_size: usize,
    /// Optimiser steps per epoch; default `ceil(train cases / batch_size)`
    /// (one patch per training case per epoch, as MONAI's loader).
    pub steps_per_epoch: Option<usize>,
    /// Linear warm-up epochs before the cosine decay.
    pub warmup_epochs: usize,
    /// Clip the global gradient norm to this value (off when absent).
    pub grad_clip: Option<f64>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            epochs: 1000,
            batch_size: 8,
            steps_per_epoch: None,
            warmup_epochs: 0,
            grad_clip: None,
        }
    }
}

/// Validation by sliding window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Validate every this many epochs (and after the last epoch); 0 = never.
    pub every_epochs: usize,
    /// The sliding window used for validation.
    pub window: SlidingWindowConfig,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            every_epochs: 10,
            window: SlidingWindowConfig::default(),
        }
    }
}

/// Background patch production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Batches prepared ahead of the training step (bounded channel size).
    pub queue_depth: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { queue_depth: 2 }
    }
}

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of every random choice (weights, case order, patches, dropout).
    #[serde(default)]
    pub seed: u64,
    /// Folder of checkpoints, logs and the resolved config.
    pub run_dir: PathBuf,
    /// The cases.
    pub data: DataConfig,
    /// The network (`name = "segresnet"` or `"attention_unet"`).
    pub model: ModelConfig,
    /// The loss (`name = "l1dfl"`, `"dice"`, `"dice_focal"`, `"dice_ce"`, `"focal"`).
    pub loss: LossConfig,
    /// Preprocessing (spacing, CT normalisation).
    #[serde(default)]
    pub preprocess: PreprocessConfig,
    /// Patch sampling and augmentation.
    #[serde(default)]
    pub augment: AugmentConfig,
    /// AdamW.
    #[serde(default)]
    pub optimizer: AdamWConfig,
    /// Epochs, batches, schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Validation.
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Loader.
    #[serde(default)]
    pub loader: LoaderConfig,
    /// Write the resumable checkpoint also every this many steps (besides
    /// every epoch end).
    #[serde(default)]
    pub checkpoint_every_steps: Option<u64>,
    /// Where to compute: `"cpu"` (default), `"cuda"` or `"cuda:N"` (needs the
    /// `cuda` feature). Not part of the run's identity: a resumed run may
    /// continue on another device ([`crate::trainer::TrainOptions::device`]).
    #[serde(default)]
    pub device: DeviceSpec,
    /// `"f32"` (default) or `"bf16"` autocast ([`crate::compute`]); part of
    /// the run, kept on resume.
    #[serde(default)]
    pub precision: Precision,
}

impl RunConfig {
    /// Reads a TOML config, naming the file and the field on error.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::file(path, e))?;
        let cfg: RunConfig = toml::from_str(&text).map_err(|e| TrainError::file(path, e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config as TOML (the form saved in the run folder).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| TrainError::Config(format!("cannot serialise config: {e}")))
    }

    /// Checks every part; errors name the field.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.loss.validate()?;
        self.preprocess.validate()?;
        self.augment.validate()?;
        self.optimizer.validate()?;
        self.validation.window.validate()?;
        let s = &self.schedule;
        for (field, value) in [
            ("epochs", Some(s.epochs)),
            ("batch_size", Some(s.batch_size)),
            ("steps_per_epoch", s.steps_per_epoch),
        ] {
            if value == Some(0) {
                return Err(TrainError::Config(format!(
                    "schedule.{field} = 0: must be >= 1"
                )));
            }
        }
        if s.warmup_epochs >= s.epochs && s.warmup_epochs > 0 {
            return Err(TrainError::Config(format!(
                "schedule.warmup_epochs {} must be < epochs {}",
                s.warmup_epochs, s.epochs
            )));
        }
        if let Some(c) = s.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(TrainError::Config(format!(
                    "schedule.grad_clip {c}: must be > 0"
                )));
            }
        }
        let div = self.model.size_divisor();
        for (what, size) in [
            ("augment.patch_size", self.augment.patch_size),
            ("validation.window.roi", self.validation.window.roi),
        ] {
            if size.iter().any(|p| p % div != 0) {
                return Err(TrainError::Config(format!(
                    "{what} {size:?}: each axis must be a multiple of {div} for {}",
                    self.model.name()
                )));
            }
        }
        if self.model.in_channels() != 2 {
            return Err(TrainError::Config(format!(
                "model.in_channels {}: the inputs are CT and PET (2 channels)",
                self.model.in_channels()
            )));
        }
        if self.loader.queue_depth == 0 {
            return Err(TrainError::Config("loader.queue_depth must be >= 1".into()));
        }
        if self.checkpoint_every_steps == Some(0) {
            return Err(TrainError::Config(
                "checkpoint_every_steps must be >= 1".into(),
            ));
        }
        Ok(())
    }
}
