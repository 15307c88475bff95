//! The loss functions: MONAI-compatible Dice, Focal, DiceFocal and DiceCE, and the study's L1DFL.
//!
//! Each is a small, serde-able parameter struct implementing [`SegLoss`]; all of them evaluate
//! through the fused kernel of [`crate::kernel`]. Field names and defaults follow MONAI 1.6.1.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::bins::BinEdges;
use crate::error::{check_range, LossError};
use crate::kernel::LossOp;
use crate::terms::{DiceTerm, FocalMode, FocalTerm, L1DiceTerm, Terms};

/// A segmentation loss on logits `[B, C, *spatial]` and class-index labels `[B, 1, *spatial]`.
///
/// `forward` returns a scalar f32 tensor on the logits' device that is part of the autograd
/// graph: `loss.backward()` gives the gradient with respect to the logits (labels get none).
/// Logits may be f16, bf16, f32 or f64; the loss is computed in f32 with f64 sums. The kernel
/// runs on the CPU; tensors on another device are copied there and back (the copy is part of
/// the graph, so gradients reach the original tensor).
pub trait SegLoss {
    /// The loss value (scalar) with autograd.
    fn forward(&self, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor>;
    /// Short name, as used on the command line and in configs (`dice`, `l1dfl`, ...).
    fn name(&self) -> &'static str;
}

/// Runs the fused kernel on the CPU and returns the scalar on the logits' device.
fn evaluate(terms: Terms, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    let device = logits.device().clone();
    let dtype = logits.dtype();
    if !matches!(dtype, DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
        return Err(LossError::DType {
            what: "logits",
            dtype: dtype.as_str().to_string(),
            expected: "f16, bf16, f32 or f64",
        }
        .into());
    }
    let x = logits
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .contiguous()?;
    let y = labels.to_device(&Device::Cpu)?.contiguous()?;
    x.apply_op2(&y, LossOp::new(terms))?.to_device(&device)
}

/// Soft Dice loss, MONAI `DiceLoss(softmax=True, to_onehot_y=True, ...)`.
///
/// Per (b, c): `1 − (2Σpy + smooth_nr) / (Σp + Σy + smooth_dr)` (Σp² + Σy² with
/// `squared_pred`), averaged over B × C; with `batch` the sums run over the batch too and the
/// average is over C. `include_background = false` drops channel 0 after the softmax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiceLoss {
    /// Keep channel 0 (background) in the average. MONAI default: true.
    pub include_background: bool,
    /// Squared predictions (and targets) in the denominator.
    pub squared_pred: bool,
    /// Sum over the batch before dividing (one Dice per class).
    pub batch: bool,
    /// Added to the numerator.
    pub smooth_nr: f64,
    /// Added to the denominator.
    pub smooth_dr: f64,
}

impl Default for DiceLoss {
    fn default() -> Self {
        Self {
            include_background: true,
            squared_pred: false,
            batch: false,
            smooth_nr: 1e-5,
            smooth_dr: 1e-5,
        }
    }
}

impl DiceLoss {
    fn term(&self, weight: f64) -> Result<DiceTerm, LossError> {
        check_range(
            "smooth_nr",
            self.smooth_nr,
            0.0,
            f64::MAX,
            "a finite value >= 0",
        )?;
        check_range(
            "smooth_dr",
            self.smooth_dr,
            0.0,
            f64::MAX,
            "a finite value >= 0",
        )?;
        Ok(DiceTerm {
            weight,
            include_background: self.include_background,
            squared_pred: self.squared_pred,
            batch: self.batch,
            smooth_nr: self.smooth_nr,
            smooth_dr: self.smooth_dr,
        })
    }
}

impl SegLoss for DiceLoss {
    fn forward(&self, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
        evaluate(
            Terms {
                dice: Some(self.term(1.0)?),
                ..Terms::default()
            },
            logits,
            labels,
        )
    }
    fn name(&self) -> &'static str {
        "dice"
    }
}

/// Which probability the focal loss is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FocalKind {
    /// `−(1 − p_t)^γ log p_t` with p = softmax over the channels (MONAI `use_softmax=True`).
    Softmax,
    /// Per-channel binary focal loss on σ(logit) against the one-hot target (MONAI's default,
    /// and the focal term of MONAI's `DiceFocalLoss`).
    Sigmoid,
}

/// The α of an α-balanced focal loss (MONAI semantics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FocalAlpha {
    /// Softmax: weight `1 − α` for class 0 and `α` for the others (ignored, as in MONAI, when
    /// the background is excluded). Sigmoid: `α` where the one-hot target is 1, `1 − α` where 0.
    Scalar(f64),
    /// One weight per kept channel. Softmax: weight of the voxel's class. Sigmoid: weight where
    /// the target is 1 (1 where it is 0).
    PerClass(Vec<f64>),
}

/// Focal loss, MONAI `FocalLoss(to_onehot_y=True, use_softmax=..., gamma, alpha)`, mean over
/// B × (kept channels) × voxels.
///
/// MONAI quirk kept for parity: with `include_background = false` the softmax variant takes the
/// softmax over the kept channels only (MONAI slices before `log_softmax`), so with two classes
/// it is identically 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FocalLoss {
    /// Softmax or sigmoid probabilities.
    pub kind: FocalKind,
    /// Focusing exponent γ ≥ 0.
    pub gamma: f64,
    /// Optional class balancing, each value in [0, 1].
    pub alpha: Option<FocalAlpha>,
    /// Keep channel 0 (background).
    pub include_background: bool,
}

impl Default for FocalLoss {
    fn default() -> Self {
        Self {
            kind: FocalKind::Softmax,
            gamma: 2.0,
            alpha: None,
            include_background: true,
        }
    }
}

impl FocalLoss {
    /// The same loss with the sigmoid probabilities (MONAI's `FocalLoss` default).
    pub fn sigmoid() -> Self {
        Self {
            kind: FocalKind::Sigmoid,
            ..Self::default()
        }
    }

    fn term(&self, weight: f64, classes_hint: Option<usize>) -> Result<FocalTerm, LossError> {
        check_range("gamma", self.gamma, 0.0, 1e3, "a finite value >= 0")?;
        let mode = match self.kind {
            FocalKind::Softmax => FocalMode::Softmax,
            FocalKind::Sigmoid => FocalMode::Sigmoid,
        };
        let kept = crate::block::MAX_CLASSES;
        let (pos, neg) = match (&self.alpha, mode) {
            (None, _) => (vec![1.0; kept], vec![1.0; kept]),
            (Some(FocalAlpha::Scalar(a)), FocalMode::Softmax) => {
                check_range("alpha", *a, 0.0, 1.0, "a value in [0, 1]")?;
                if self.include_background {
                    let mut pos = vec![*a; kept];
                    pos[0] = 1.0 - a;
                    (pos, vec![1.0; kept])
                } else {
                    (vec![1.0; kept], vec![1.0; kept])
                }
            }
            (Some(FocalAlpha::Scalar(a)), FocalMode::Sigmoid) => {
                check_range("alpha", *a, 0.0, 1.0, "a value in [0, 1]")?;
                (vec![*a; kept], vec![1.0 - a; kept])
            }
            (Some(FocalAlpha::PerClass(v)), _) => {
                for &a in v {
                    check_range("alpha", a, 0.0, 1.0, "values in [0, 1]")?;
                }
                if let Some(c) = classes_hint {
                    let want = if self.include_background { c } else { c - 1 };
                    if v.len() != want {
                        return Err(LossError::InvalidParameter {
                            field: "alpha",
                            value: format!("{v:?}"),
                            expected: "one value per kept channel",
                        });
                    }
                }
                let mut pos = v.clone();
                pos.resize(kept, 1.0);
                (pos, vec![1.0; kept])
            }
        };
        Ok(FocalTerm {
            weight,
            mode,
            gamma: self.gamma,
            alpha_pos: pos,
            alpha_neg: neg,
            include_background: self.include_background,
        })
    }
}

/// Number of classes of a logits tensor, for checks that need it before the kernel runs.
fn classes(logits: &Tensor) -> Option<usize> {
    logits.dims().get(1).copied()
}

impl SegLoss for FocalLoss {
    fn forward(&self, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
        evaluate(
            Terms {
                focal: Some(self.term(1.0, classes(logits))?),
                ..Terms::default()
            },
            logits,
            labels,
        )
    }
    fn name(&self) -> &'static str {
        "focal"
    }
}

/// Dice + focal, MONAI `DiceFocalLoss(softmax=True, to_onehot_y=True)`:
/// `λ_dice·Dice + λ_focal·Focal`.
///
/// The default focal term is MONAI's: **sigmoid** focal on the raw logits against the one-hot
/// target (MONAI's `DiceFocalLoss` never passes `use_softmax`), which the study's DFL baseline
/// inherited; set `focal.kind = "softmax"` for the softmax variant. `focal.include_background`
/// is separate from `dice.include_background` (MONAI passes one flag to both: set both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiceFocalLoss {
    /// The Dice part.
    pub dice: DiceLoss,
    /// The focal part.
    pub focal: FocalLoss,
    /// Weight of the Dice part.
    pub lambda_dice: f64,
    /// Weight of the focal part.
    pub lambda_focal: f64,
}

impl Default for DiceFocalLoss {
    fn default() -> Self {
        Self {
            dice: DiceLoss::default(),
            focal: FocalLoss::sigmoid(),
            lambda_dice: 1.0,
            lambda_focal: 1.0,
        }
    }
}

impl SegLoss for DiceFocalLoss {
    fn forward(&self, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
        check_range(
            "lambda_dice",
            self.lambda_dice,
            0.0,
            f64::MAX,
            "a finite value >= 0",
        )?;
        check_range(
            "lambda_focal",
            self.lambda_focal,
            0.0,
            f64::MAX,
            "a finite value >= 0",
        )?;
        let terms = Terms {
            dice: Some(self.dice.term(self.lambda_dice)?),
            focal: Some(self.focal.term(self.lambda_focal, classes(logits))?),
            ..Terms::default()
        };
        evaluate(terms, logits, labels)
    }
    fn name(&self) -> &'static str {
        "dice_focal"
    }
}

/// Dice + cross-entropy, MONAI `DiceCELoss(softmax=True, to_onehot_y=True)` (nnU-Net's
/// default loss family): `λ_dice·Dice + λ_ce·CE`, CE = mean over B × voxels of `−log p_t`.
/// No class weights and no label smoothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiceCeLoss {
    /// The Dice part.
    pub dice: DiceLoss,
    /// Weight of the Dice part.
    pub lambda_dice: f64,
    /// Weight of the cross-entropy part.
    pub lambda_ce: f64,
}

impl Default for DiceCeLoss {
    fn default() -> Self {
        Self {
            dice: DiceLoss::default(),
            lambda_dice: 1.0,
            lambda_ce: 1.0,
        }
    }
}

impl SegLoss for DiceCeLoss {
    fn forward(&self, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
        check_range(
            "lambda_dice",
            self.lambda_dice,
            0.0,
            f64::MAX,
            "a finite value >= 0",
        )?;
        check_range(
            "lambda_ce",
            self.lambda_ce,
            0.0,
            f64::MAX,
            "a finite value >= 0",
        )?;
        let terms = Terms {
            dice: Some(self.dice.term(self.lambda_dice)?),
            ce: Some(self.lambda_ce),
            ..Terms::default()
        };
        evaluate(terms, logits, labels)
    }
    fn name(&self) -> &'static str {
        "dice_ce"
    }
}

/// Smoothing of the L1DFL weighted Dice (`docs/method/losses.md` §5).
pub const L1DFL_SMOOTH: f64 = 1e-8;

/// The study's L1-weighted Dice Focal loss (`docs/method/losses.md` §5).
///
/// `g = |p − y|` over all B × C × voxels is binned ([`BinEdges`]: width ε, end bins ε/2,
/// left-closed); each entry gets `β = N / density(bin)`, a constant for autograd. Loss =
/// `1 − mean_{b,c} (2Σβpy + s)/(Σβ(p² + y²) + s)` with `s = 1e-8`, plus the softmax focal loss
/// (γ, all channels, mean over B × C × voxels). The background channel is always included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct L1Dfl {
    /// Bin width ε; 0.1 in the paper, 0.05 in the reference code's later default.
    pub epsilon: f64,
    /// Focal exponent γ.
    pub gamma: f64,
}

impl Default for L1Dfl {
    fn default() -> Self {
        Self {
            epsilon: 0.1,
            gamma: 2.0,
        }
    }
}

impl L1Dfl {
    /// The histogram bins this loss uses.
    pub fn bins(&self) -> Result<BinEdges, LossError> {
        BinEdges::new(self.epsilon)
    }
}

impl SegLoss for L1Dfl {
    fn forward(&self, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
        let focal = FocalLoss {
            kind: FocalKind::Softmax,
            gamma: self.gamma,
            alpha: None,
            include_background: true,
        };
        let terms = Terms {
            focal: Some(focal.term(1.0, None)?),
            l1_dice: Some(L1DiceTerm {
                weight: 1.0,
                bins: self.bins()?,
                smooth: L1DFL_SMOOTH,
            }),
            ..Terms::default()
        };
        evaluate(terms, logits, labels)
    }
    fn name(&self) -> &'static str {
        "l1dfl"
    }
}
