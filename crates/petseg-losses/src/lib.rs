//! # petseg-losses
//!
//! The segmentation losses of the study, on candle tensors, matching PyTorch/MONAI in value
//! and gradient (`docs/method/losses.md`):
//!
//! | loss | type | reference |
//! |---|---|---|
//! | Dice | [`DiceLoss`] | MONAI `DiceLoss(softmax=True, to_onehot_y=True)` |
//! | Focal | [`FocalLoss`] | MONAI `FocalLoss(to_onehot_y=True, use_softmax=…)` |
//! | DiceFocal (DFL) | [`DiceFocalLoss`] | MONAI `DiceFocalLoss(softmax=True, to_onehot_y=True)`: **sigmoid** focal term by default |
//! | L1DFL | [`L1Dfl`] | the study's L1-weighted Dice Focal loss (ε = 0.1, γ = 2; ε = 0.05 selectable) |
//! | DiceCE | [`DiceCeLoss`] | MONAI `DiceCELoss(softmax=True, to_onehot_y=True)` |
//!
//! All implement [`SegLoss`]; [`LossConfig`] is the serde registry (TOML/JSON, CLI names).
//!
//! **Owns**: loss values and their gradients with respect to the logits, the L1DFL histogram
//! ([`BinEdges`]), the loss configuration. **Does not own**: networks, optimisers, training loops
//! (`petseg-train`), metrics such as the evaluation DSC (`petseg-eval`).
//!
//! ## Inputs
//! - logits `[B, C, *spatial]`, `2 ≤ C ≤ 16`, f32 (f16/bf16/f64 are cast to f32; the gradient
//!   flows back through the cast);
//! - labels `[B, 1, *spatial]`, integer class indices in `0..C` stored as u8, u32, i16, i32,
//!   i64 or whole-number floats. Other values are a [`LossError::Label`] naming the voxel.
//!
//! ## How it is computed
//! Every loss is one fused candle custom op (`kernel` module): a forward pass over the voxels
//! accumulates the per-(b, c) sums the loss needs (for L1DFL also the per-bin sums, so the
//! histogram and β cost no extra pass); the backward pass writes `∂loss/∂logits` in closed form
//! in one more pass, straight into the output. Both passes run in parallel over fixed chunks
//! of voxels (rayon) and, inside a chunk, over blocks of 32 neighbouring voxels with
//! branch-free code the compiler vectorises (`block`, `terms`), using polynomial `exp`/`ln`
//! accurate to 1e-6 relative (`lanes`); on x86-64 the loops are also compiled for AVX2 + FMA
//! and picked at run time. Partial sums go from f32 lanes to f64 totals every 16 blocks and
//! are added in a fixed order, so results do not depend on the thread count. The softmax is
//! computed stably (max subtracted, log-sum-exp; one `exp` for two classes). The kernel is CPU
//! code: tensors on another device are copied to the CPU and back inside the graph.
//!
//! ## Example
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use petseg_losses::{LossConfig, SegLoss};
//!
//! let dev = Device::Cpu;
//! let x = Tensor::arange(0f32, 128.0, &dev)?.affine(0.05, -3.0)?.reshape((1, 2, 4, 4, 4))?;
//! let logits = Var::from_tensor(&x)?;
//! let labels = Tensor::zeros((1, 1, 4, 4, 4), candle_core::DType::U8, &dev)?;
//! let loss = "l1dfl".parse::<LossConfig>()?.build()?;
//! let value = loss.forward(logits.as_tensor(), &labels)?;
//! let grads = value.backward()?;
//! assert_eq!(grads.get(logits.as_tensor()).unwrap().dims(), &[1, 2, 4, 4, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Parity and tests
//! `tests/parity.rs` compares every loss, value and gradient, with fixtures written by
//! `scripts/make_fixtures.py` (MONAI 1.6.1 and a PyTorch port of L1DFL; regenerate with
//! `python3 crates/petseg-losses/scripts/make_fixtures.py`), on sparse (0.5 %), empty,
//! all-foreground and batch-of-2 inputs; relative error ≤ 1e-5.
//!
//! ## Speed
//! `benches/losses.rs` times forward + backward at `[2, 2, 96³]` and runs
//! `scripts/bench_torch.py` (MONAI / the PyTorch L1DFL port) in the same run; the measured
//! figures are in the crate README.

mod bins;
mod block;
mod config;
mod error;
mod kernel;
mod labels;
mod lanes;
mod losses;
mod terms;

pub use bins::BinEdges;
pub use config::LossConfig;
pub use error::LossError;
pub use losses::{
    DiceCeLoss, DiceFocalLoss, DiceLoss, FocalAlpha, FocalKind, FocalLoss, L1Dfl, SegLoss,
    L1DFL_SMOOTH,
};
