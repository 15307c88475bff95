//! The loss registry: one serde enum naming every loss and its parameters, shared by training,
//! sweeps and the command line.
//!
//! JSON: `{"name": "l1dfl", "epsilon": 0.05}`. TOML:
//!
//! ```toml
//! [loss]
//! name = "dice_focal"
//! lambda_focal = 0.5
//! [loss.focal]
//! kind = "softmax"
//! ```
//!
//! Missing fields take the defaults of the loss (MONAI's, and ε = 0.1, γ = 2 for L1DFL); unknown
//! fields are errors. On the command line a bare name (`"dice"`, `"focal"`, `"dice_focal"`,
//! `"l1dfl"`, `"dice_ce"`) parses with [`std::str::FromStr`] to the defaults.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::LossError;
use crate::losses::{DiceCeLoss, DiceFocalLoss, DiceLoss, FocalLoss, L1Dfl, SegLoss};

/// Every loss the project trains with, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum LossConfig {
    /// [`DiceLoss`].
    Dice(DiceLoss),
    /// [`FocalLoss`].
    Focal(FocalLoss),
    /// [`DiceFocalLoss`] (the study's DFL baseline).
    DiceFocal(DiceFocalLoss),
    /// [`L1Dfl`] (the study's loss).
    L1dfl(L1Dfl),
    /// [`DiceCeLoss`].
    DiceCe(DiceCeLoss),
}

impl Default for LossConfig {
    /// L1DFL with the paper's ε = 0.1, γ = 2.
    fn default() -> Self {
        LossConfig::L1dfl(L1Dfl::default())
    }
}

impl LossConfig {
    /// The names accepted by [`FromStr`], in registry order.
    pub const NAMES: [&'static str; 5] = ["dice", "focal", "dice_focal", "l1dfl", "dice_ce"];

    /// The config's name (`dice`, `l1dfl`, ...).
    pub fn name(&self) -> &'static str {
        self.loss().name()
    }

    fn loss(&self) -> &dyn SegLoss {
        match self {
            LossConfig::Dice(l) => l,
            LossConfig::Focal(l) => l,
            LossConfig::DiceFocal(l) => l,
            LossConfig::L1dfl(l) => l,
            LossConfig::DiceCe(l) => l,
        }
    }

    /// Checks every parameter (the same checks `forward` makes, without tensors).
    pub fn validate(&self) -> Result<(), LossError> {
        let lambda = |field, v: f64| {
            crate::error::check_range(field, v, 0.0, f64::MAX, "a finite value >= 0")
        };
        let dice = |d: &DiceLoss| {
            crate::error::check_range(
                "smooth_nr",
                d.smooth_nr,
                0.0,
                f64::MAX,
                "a finite value >= 0",
            )?;
            crate::error::check_range(
                "smooth_dr",
                d.smooth_dr,
                0.0,
                f64::MAX,
                "a finite value >= 0",
            )
        };
        let focal = |f: &FocalLoss| {
            crate::error::check_range("gamma", f.gamma, 0.0, 1e3, "a finite value >= 0")?;
            let alphas: Vec<f64> = match &f.alpha {
                None => vec![],
                Some(crate::losses::FocalAlpha::Scalar(a)) => vec![*a],
                Some(crate::losses::FocalAlpha::PerClass(v)) => v.clone(),
            };
            alphas.iter().try_for_each(|&a| {
                crate::error::check_range("alpha", a, 0.0, 1.0, "values in [0, 1]")
            })
        };
        match self {
            LossConfig::Dice(d) => dice(d),
            LossConfig::Focal(f) => focal(f),
            LossConfig::DiceFocal(l) => {
                dice(&l.dice)?;
                focal(&l.focal)?;
                lambda("lambda_dice", l.lambda_dice)?;
                lambda("lambda_focal", l.lambda_focal)
            }
            LossConfig::L1dfl(l) => {
                l.bins()?;
                crate::error::check_range("gamma", l.gamma, 0.0, 1e3, "a finite value >= 0")
            }
            LossConfig::DiceCe(l) => {
                dice(&l.dice)?;
                lambda("lambda_dice", l.lambda_dice)?;
                lambda("lambda_ce", l.lambda_ce)
            }
        }
    }

    /// The loss, after [`LossConfig::validate`].
    pub fn build(&self) -> Result<Box<dyn SegLoss + Send + Sync>, LossError> {
        self.validate()?;
        Ok(match self.clone() {
            LossConfig::Dice(l) => Box::new(l),
            LossConfig::Focal(l) => Box::new(l),
            LossConfig::DiceFocal(l) => Box::new(l),
            LossConfig::L1dfl(l) => Box::new(l),
            LossConfig::DiceCe(l) => Box::new(l),
        })
    }
}

impl FromStr for LossConfig {
    type Err = LossError;

    /// A bare loss name with default parameters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "dice" => LossConfig::Dice(DiceLoss::default()),
            "focal" => LossConfig::Focal(FocalLoss::default()),
            "dice_focal" => LossConfig::DiceFocal(DiceFocalLoss::default()),
            "l1dfl" => LossConfig::L1dfl(L1Dfl::default()),
            "dice_ce" => LossConfig::DiceCe(DiceCeLoss::default()),
            other => return Err(LossError::UnknownLoss(other.to_string())),
        })
    }
}

impl fmt::Display for LossConfig {
    /// The name only (parameters are in the serde form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
