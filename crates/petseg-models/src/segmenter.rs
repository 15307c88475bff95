//! The interface that training and inference hold a network by.

use candle_core::{Result, Tensor};

use crate::ModelConfig;

/// A 3-D segmentation network: `[N, C_in, D, H, W]` → logits `[N, C_out, D, H, W]`.
///
/// Object safe, so training, inference and sweeps can hold a `Box<dyn Segmenter>`
/// built from a [`ModelConfig`]. The parameters live in the `VarBuilder`/`VarMap` the
/// network was built from, not in the network.
pub trait Segmenter: Send + Sync + std::fmt::Debug {
    /// Runs the network. `train = true` uses BatchNorm batch statistics (and updates the
    /// running statistics, momentum 0.1, unbiased variance, as PyTorch does) and applies
    /// dropout; `train = false` is PyTorch's `model.eval()`.
    ///
    /// Errors if `x` is not 5-D, has the wrong channel count, or has a spatial size that
    /// is not a multiple of [`ModelConfig::size_divisor`].
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// Eval-mode forward pass (`forward_t(x, false)`).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
    }

    /// The configuration the network was built from.
    fn config(&self) -> ModelConfig;

    /// Restarts the generator of the dropout masks (stream 1 of ChaCha8 with this seed).
    /// A network without dropout ignores it.
    fn set_dropout_seed(&self, seed: u64);
}
