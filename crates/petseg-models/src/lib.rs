//! # petseg-models — MONAI's SegResNet and Attention U-Net on candle
//!
//! This crate owns the two networks of the study (`docs/method/networks.md` §2–3), written
//! so that they are MONAI's networks parameter for parameter:
//!
//! * [`SegResNet`] — MONAI `SegResNet` (GroupNorm ResBlocks, stride-2 conv down-sampling,
//!   trilinear ×2 or transposed-conv up-sampling);
//! * [`AttentionUnet`] — MONAI `AttentionUnet` (Conv–BatchNorm–ReLU blocks, strided-conv
//!   down-sampling, transposed-conv up-sampling, additive sigmoid attention gates,
//!   InstanceNorm + PReLU merge convs);
//! * the [`Segmenter`] trait, by which training and inference hold either network;
//! * [`ModelConfig`], the serde registry (`name = "segresnet" | "attention_unet"`) with
//!   the study's defaults, validation, `build`, seeded `build_seeded`, key/shape listing
//!   and parameter counts;
//! * [`weights`]: loading MONAI/PyTorch checkpoints (safetensors, `torch.save` zip
//!   `.pt`/`.pth`, `{"state_dict": …}` wrappers, DDP `module.` prefixes) all-or-nothing
//!   with a precise error, and saving ours as safetensors under the same keys.
//!
//! It does **not** own the 3-D operators (conv3d, transposed conv, trilinear
//! up-sampling, GroupNorm/InstanceNorm kernels: `petseg-ops3d`), losses
//! (`petseg-losses`), the optimiser loop, checkpoints of a training run (optimiser state,
//! epoch, …) or sliding-window inference (`petseg-train`).
//!
//! ## Parameter names
//!
//! Every parameter's `VarBuilder` path is MONAI's `state_dict` key (`convInit.conv.weight`,
//! `model.1.attention.W_g.1.running_mean`, …), so a MONAI checkpoint loads without
//! conversion and our safetensors load into MONAI with `strict=True`. BatchNorm running
//! statistics are variables in the `VarMap`; they receive no
//! gradient, so an optimiser over `varmap.all_vars()` leaves them alone. PyTorch's
//! `num_batches_tracked` is not kept (see [`weights`]).
//!
//! ## Determinism
//!
//! [`ModelConfig::build_seeded`] draws every parameter from `ChaCha8Rng::seed_from_u64(seed)`
//! with PyTorch's default initialisers (conv weight and bias `U(±1/√fan_in)`, i.e.
//! kaiming-uniform with a = √5; norm weights 1, biases 0; PReLU 0.25), in sorted-name
//! order: the same seed gives bit-identical weights. Dropout masks come from stream 1 of
//! the same seed ([`Segmenter::set_dropout_seed`] restarts it), never from candle's
//! unseedable RNG.
//!
//! ## Precision (autocast) and devices
//!
//! The networks compute in the dtype of their input, PyTorch-autocast style: pass a bf16
//! input and every convolution casts its f32 weight and bias to bf16 in its forward pass
//! (the cast is part of the graph, so gradients reach the f32 `Var`s, which stay the
//! master weights), while the norms keep their f32 parameters and normalise in f32
//! (`petseg_ops3d` computes every norm in f32 and casts only its result back) and the
//! BatchNorm running statistics are computed and stored in f32. Cast the logits to f32
//! before a loss or a softmax. With an f32 input every cast is a no-op and the network
//! is unchanged, bit for bit. `petseg-train`'s `precision = "bf16"` does exactly this.
//!
//! The `cuda` cargo feature forwards to `petseg-ops3d/cuda`, `candle-core/cuda` and
//! `candle-nn/cuda`; build the network with a CUDA `Device` to run it there. The fused
//! CPU ops of this crate (`gate`, `affine`) are used for f32/f64 CPU tensors only; on
//! other devices and dtypes the same layers are composed from candle ops.
//!
//! ## Example
//!
//! ```no_run
//! use candle_core::{Device, Tensor};
//! use candle_nn::VarMap;
//! use petseg_models::{weights, ModelConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg: ModelConfig = toml::from_str("name = \"segresnet\"\ninit_filters = 16")?;
//! assert_eq!(cfg.param_count()?, 4_701_346); // as MONAI 1.6
//! let varmap = VarMap::new();
//! let net = cfg.build_seeded(&varmap, 42, &Device::Cpu)?;
//! weights::load_weights(&varmap, "monai_checkpoint.pt".as_ref())?; // optional
//! let x = Tensor::zeros((1, 2, 32, 32, 32), candle_core::DType::F32, &Device::Cpu)?;
//! let logits = net.forward_t(&x, false)?; // [1, 2, 32, 32, 32]
//! weights::save_weights(&varmap, "ours.safetensors".as_ref())?;
//! # let _ = logits; Ok(()) }
//! ```
//!
//! ## Checked against MONAI
//!
//! `tests/fixtures/` holds MONAI 1.6.1 references made by `scripts/make_fixtures.py`:
//! the state-dict keys and shapes of the study configurations, and small models with
//! their eval output and one train-mode step (loss, gradients, running statistics).
//! See `tests/parity.rs` and `tests/keys.rs`.
//!
//! ## Fused layers
//!
//! candle's autograd keeps every op's inputs alive until the backward pass and gives
//! every tensor that receives a gradient a zero-filled buffer plus an addition, so each
//! element-wise op costs memory and full-size passes. The networks therefore compute
//! MONAI's layer sequences as fused ops with their own backward (each tested against
//! the composed ops and finite differences):
//!
//! * norm → ReLU: `petseg_ops3d::group_norm_relu` (SegResNet's GroupNorms, and
//!   train-mode BatchNorm with one group per channel); MONAI's norm → dropout → ReLU
//!   order is computed as norm+ReLU → dropout, equal because the mask is ≥ 0;
//! * InstanceNorm → (dropout →) PReLU of the merge blocks: `petseg_ops3d::instance_norm_prelu`;
//! * the attention gate's `x · sigmoid(psi)` and the concatenation with the up-sampled
//!   features (`gate::gate_cat`);
//! * eval-mode BatchNorm (→ ReLU) as one per-channel affine op (`affine`).
//!
//! ## Benchmarks
//!
//! See the crate's `README.md` (`cargo bench -p petseg-models --bench models`, with
//! `scripts/bench_monai.py` as the PyTorch peer).

mod affine;
mod attention_unet;
mod bn_stats;
mod config;
mod cpu_op;
mod error;
mod gate;
mod init;
mod layers;
mod segmenter;
mod segresnet;
pub mod weights;

pub use attention_unet::AttentionUnet;
pub use config::{is_buffer, AttentionUnetConfig, ModelConfig, SegResNetConfig, UpsampleMode};
pub use error::{ModelError, Result};
pub use segmenter::Segmenter;
pub use segresnet::SegResNet;
