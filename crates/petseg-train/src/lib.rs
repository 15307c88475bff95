//! # petseg-train
//!
//! Owns **training and inference** (`docs/method/training.md`,
//! `docs/method/inference.md`): the run configuration,
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
//! ## Devices and precision
//! The run config's `device` (`"cpu"` default, `"cuda"`, `"cuda:N"`) and
//! `precision` (`"f32"` default, `"bf16"`) choose where and how the network
//! computes ([`compute`]); `petseg train/predict/demo` take `--device` and
//! `--precision`. CUDA needs the `cuda` cargo feature (`cargo build --release
//! -p petseg-cli --features cuda`); a build without it refuses a CUDA device
//! with a clear error before anything is written. Batches are prepared on the
//! CPU and copied to the device; the loss, the AdamW update and the
//! sliding-window blending run on the CPU in f32 whatever the device (the
//! loss kernels of `petseg-losses` and our AdamW are host code), so a GPU
//! speeds up the network's forward and backward passes only.
//!
//! `bf16` is autocast in PyTorch's sense: the master weights stay f32 `Var`s
//! (AdamW moments, checkpoints and saved weights are f32, under the same
//! MONAI keys, and load into an f32 run); the input is cast to bf16 and each
//! convolution casts its weight and bias to bf16 in its forward pass, so the
//! gradients flow back through the casts into the f32 variables; norms keep
//! f32 parameters and statistics (BatchNorm running statistics are updated
//! in f32); the logits are cast to f32 before the loss and the softmax, so
//! losses, validation and predicted probabilities are f32. Tested on the CPU
//! (`tests/precision.rs`, `tests/predict.rs`, petseg-models'
//! `tests/autocast.rs`): the first bf16 training loss is within 2e-2
//! relative of f32's (measured 6e-5 on the tiny test run), every trainable
//! variable receives a gradient, a bf16 run resumes bit-exactly.
//!
//! What bf16 gives today is limited: candle's own ops (element-wise ops,
//! matmul, softmax) run natively in bf16 on CUDA, but petseg-ops3d's
//! convolutions, norms, pooling and up-sampling compute in f32 internally
//! (they cast bf16 inputs to f32 and the result back; there is no bf16
//! tensor-core convolution yet), so the compute-bound convolutions are not
//! faster in bf16. Memory is saved: the ops take and return bf16 tensors
//! (the conversion to f32 happens inside each op, outside the autograd
//! graph), so the graph keeps bf16 activations (measured on the CPU: peak
//! memory of a `[1,2,64³]` train step −30 % for SegResNet, −19 % for the
//! Attention U-Net, see the README). On the CPU bf16 is slower than f32
//! (≈ 1.5×: the same f32 kernels plus the conversions) and `petseg` prints a
//! one-line warning; it is allowed because it is how bf16 is tested. **Nothing of this crate has run
//! on a GPU yet** (petseg-ops3d's op-by-op CUDA check has, see its README):
//! `scripts/gpu-train-check.sh` is the prepared check for a machine with one
//! (see the crate README, "GPU").

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
