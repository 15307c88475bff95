//! # petseg-ops3d — the 3-D operators candle 0.11 lacks
//!
//! candle 0.11.1 has no operator for 5-D tensors `[N, C, D, H, W]`: no conv3d,
//! no transposed conv3d, no 3-D pooling, no trilinear up-sampling. This crate
//! provides them as candle custom ops with hand-written backward passes, so
//! `Tensor::backward()` works through them:
//!
//! | function | PyTorch equivalent | gradients |
//! |---|---|---|
//! | [`conv3d`] | `F.conv3d` (stride, padding, dilation, groups) | x, w, bias |
//! | [`conv_transpose3d`] | `F.conv_transpose3d` (stride, padding, output_padding, dilation) | x, w, bias |
//! | [`max_pool3d`] | `F.max_pool3d` (first argmax on ties) | x |
//! | [`avg_pool3d`] | `F.avg_pool3d` (`count_include_pad=True`) | x |
//! | [`upsample_trilinear3d`] | `F.interpolate(mode="trilinear")`, both `align_corners` | x |
//! | [`upsample_nearest3d`] | `F.interpolate(mode="nearest")` | x |
//! | [`group_norm`], [`instance_norm`] | `F.group_norm`, `F.instance_norm` (fused) | x, gamma, beta |
//! | [`group_norm_relu`] | `F.relu(F.group_norm(…))` in one op (CPU; composed elsewhere) | x, gamma, beta |
//! | [`instance_norm_prelu`] | `F.prelu(F.instance_norm(x), w)` in one op (CPU; composed elsewhere) | x, slope |
//! | [`init`] | PyTorch's default Conv3d/ConvTranspose3d init, seeded | — |
//! | [`alloc::retain_freed_memory`] | (process set-up) glibc keeps freed tensor memory | — |
//!
//! **Owns:** the kernels (CPU; CUDA behind the `cuda` feature), their autograd
//! rules, shape checking, and seeded initialisation. **Does not own:** layers
//! with parameters, networks, losses, optimisers (see `petseg-models` and
//! `petseg-train`); element-wise ops, BatchNorm, activations (candle has them).
//!
//! ## Dtypes and devices
//! * CPU: f32 and f64 kernels (f64 is what the finite-difference gradient
//!   tests use). f16/bf16 tensors enter the ops as they are and are converted
//!   to f32 inside each op (`elem::through_f32`, on CUDA too), so the autograd
//!   graph keeps them in half precision (autocast saves memory); each result
//!   is the f32 result rounded once. Norm parameters stay f32, and so do
//!   their gradients.
//! * CUDA (`--features cuda`, which forwards to `candle-core/cuda` and needs
//!   nvcc at build time): f32 kernels compiled at run time with NVRTC, conv
//!   through im2col/col2im + cuBLAS sgemm; f16/bf16 are converted inside the
//!   op as on the CPU (compile-checked, not yet run on a GPU).
//! * Inputs may be non-contiguous; they are copied to contiguous ones first.
//!
//! ## Example
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use petseg_ops3d::{conv3d, group_norm, upsample_trilinear3d, Conv3dConfig, UpsampleTarget};
//! # fn main() -> candle_core::Result<()> {
//! let dev = Device::Cpu;
//! let x = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 2, 8, 8, 8), &dev)?)?;
//! let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (4, 2, 3, 3, 3), &dev)?)?;
//! let cfg = Conv3dConfig { stride: [2; 3], padding: [1; 3], ..Default::default() };
//! let y = conv3d(x.as_tensor(), w.as_tensor(), None, &cfg)?; // [1, 4, 4, 4, 4]
//! let y = group_norm(&y, 2, None, None, 1e-5)?.relu()?;
//! let y = upsample_trilinear3d(&y, UpsampleTarget::Scale([2.0; 3]), false)?;
//! assert_eq!(y.dims(), [1, 4, 8, 8, 8]);
//! let grads = y.sqr()?.sum_all()?.backward()?;
//! assert_eq!(grads.get(&w).unwrap().dims(), [4, 2, 3, 3, 3]);
//! # Ok(()) }
//! ```
//!
//! ## Algorithms
//! * Convolution (CPU), routed by `conv/cpu.rs` (details in the `conv`
//!   module docs): f32 on x86-64 with AVX-512 or AVX2 + FMA uses a direct
//!   convolution with register-blocked SIMD micro-kernels for the forward and
//!   the weight gradient; the input gradient is the forward of the flipped,
//!   channel-transposed kernel for stride 1 and `s³` sub-pixel stride-1
//!   phases for strided convolutions. f64, other CPUs, 1×1×1 convolutions
//!   without AVX-512 and unusual paddings use im2col / shifted-row tiles with the `gemm` crate
//!   (and col2im for the strided input gradient), which are also the
//!   reference the direct kernels are tested against. Every route tiles the
//!   output rows (rayon over sample × tile, ≤ ~1 MiB of buffer per task)
//!   and sums the weight gradient in a fixed order, so results do not depend
//!   on the thread count. Stride-1 direct convolutions read a copy of the
//!   input zero-padded once per call (`conv/padded.rs`, about the input's
//!   size); strided ones copy the rows each tile reads; nothing else
//!   volume-sized is allocated besides the result. The kernels that vectorise
//!   over channels work on `[voxel][channel]` tiles, moved to and from
//!   candle's `[channel][voxel]` layout in 16 × 16 register transposes
//!   (`conv/transpose.rs`), and skip the padding columns between rows. A transposed convolution
//!   runs the input-gradient kernel forward and the forward kernel backward.
//!   With AVX-512, stride-1 3×3×3 convolutions with ≥ 16 input and ≥ 32
//!   output channels (one group) use Winograd F(2×2×2, 3×3×3)
//!   (`conv/winograd/`): 64 instead of 216 products per 2×2×2 tile and
//!   channel pair for the forward and hence the stride-1 input gradient, and
//!   from 128 channels also for the weight gradient; `PETSEG_OPS3D_CONV=direct`
//!   turns it off. Its results differ from the direct sums by rounding only
//!   (≤ 1e-5 relative in the tests). 1×1×1 convolutions without stride or
//!   padding run an AVX-512 kernel over packed runs of the input
//!   (`conv/pointwise.rs`), also for their input gradient.
//!   On the CPU the bias is added inside the op and its gradient is one
//!   channel-sum pass (`conv/bias.rs`), which saves the volume-sized `y + b`
//!   tensor and candle's zero-fill + add of its gradient.
//! * Pooling and up-sampling: direct loops, rayon over `N·C` planes; backward
//!   is the exact adjoint (scatter-add into the plane owned by the task).
//!   Trilinear uses per-axis tables of `(i0, i1, λ0, λ1)` computed as PyTorch
//!   does (in f32, with `1/scale` when a scale factor is given).
//! * Norms: statistics in f64 (8 independent lanes, fixed order), one fused
//!   pass each for y, dx and (dγ, dβ); the backward reuses the forward's
//!   statistics and, with the fused ReLU, rebuilds its mask from x.
//!
//! ## How it is verified
//! * `tests/gradcheck.rs`: central finite differences in f64 for every op and
//!   every differentiable argument (input, weight, bias, gamma, beta) on small
//!   odd shapes with stride / padding / dilation / groups / output_padding
//!   mixes (worst relative error ~1e-8), at up to 40 seeded random entries
//!   of each argument. f64 takes the im2col + `gemm` route, so the f32
//!   convolution kernels the networks run (direct, channel-vector,
//!   Winograd with its weight gradient, sub-pixel, 1×1×1, transposed) get
//!   their own check: convolutions are linear in each argument, so a central
//!   difference with a large step is exact and the f32 gradients must match
//!   it within 1e-4 of their largest entry (observed ≤ 2.4e-6).
//! * `tests/torch_fixtures.rs`: outputs and gradients against PyTorch
//!   (`scripts/make_fixtures.py`, `torch.nn.functional`) for the SegResNet
//!   (16 and 32 channels, the 16 → 32 stride-2 down-sampling, GroupNorm(8) on
//!   16 channels) and AttentionUnet configurations, a 32-channel one that
//!   takes the Winograd route, and instance norm with and without affine
//!   parameters; max abs error ≤ 1e-4 (observed ≤ 2.3e-5).
//! * `tests/kernels.rs`: forward against a naive 7-loop convolution and the
//!   adjoint identities for the gradients, on volumes spanning many tiles;
//!   f32 vs f64; f16/bf16 for every op (the forward, and for the ops outside
//!   the fused chain also every gradient, equal to the f32 result rounded
//!   once, bit for bit); max-pool ties (the gradient goes to the first
//!   maximum in D, H, W order); non-contiguous inputs; error messages.
//! * `tests/peak_memory.rs`: the peak of live heap bytes during a
//!   convolution's forward+backward stays within 1.7× (stride 1) and 2.0×
//!   (stride 2, candle's untouched zero buffer included) of the tensors the
//!   step needs: no volume-sized buffer.
//! * `src/init.rs`: seeded initialisers within PyTorch's bounds (fan-in of
//!   `Conv3d` and `ConvTranspose3d` weights, grouped too), filling them, and
//!   reproducible by seed.
//!
//! ## Performance
//! See `README.md` next to this file for the CPU benchmark (`benches/ops.rs`
//! against PyTorch via `scripts/bench_torch.py`, same machine, same run) and
//! the peak-memory check (`examples/conv_memory.rs`, against PyTorch via
//! `scripts/conv_memory_torch.py`).
//!
//! ## CUDA
//! `cargo build --release -p petseg-ops3d --features cuda --examples` (with
//! the CUDA 13 toolchain that `tools/cuda-check.sh` lays out) builds
//! `examples/cuda_check.rs`, which runs every op forward and backward on GPU 0
//! and on the CPU, prints the errors, times conv3d at `[1,32,96³]` and exits
//! non-zero on a mismatch; `scripts/gpu-check.sh` runs it on a GPU machine.

pub mod alloc;
mod conv;
mod elem;
mod error;
pub mod init;
mod norm;
mod pool;
mod upsample;

#[cfg(feature = "cuda")]
mod cuda;

pub use conv::{conv3d, conv_transpose3d, Conv3dConfig, ConvTranspose3dConfig};
pub use error::Ops3dError;
pub use norm::{group_norm, group_norm_relu, instance_norm, instance_norm_prelu};
pub use pool::{avg_pool3d, max_pool3d};
pub use upsample::{upsample_nearest3d, upsample_trilinear3d, UpsampleTarget};
