//! `conv3d` and `conv_transpose3d` with autograd.
//!
//! Both are built from three kernels on one [`ConvGeom`]: forward, input
//! gradient and weight gradient. A transposed convolution *is* the input
//! gradient of a convolution, so its forward uses the input-gradient kernel,
//! its input gradient the forward kernel, and its weight gradient the
//! weight-gradient kernel with the roles of input and output swapped.
//!
//! CPU routes (`cpu.rs` dispatches):
//! * f32 on x86-64 with AVX-512F/VL or AVX2 + FMA (detected at run time):
//!   direct convolution with register-blocked SIMD micro-kernels (`direct`)
//!   for the forward and the weight gradient of every convolution that is not
//!   1×1×1 without stride/padding; the input gradient is a forward of the
//!   flipped kernel for stride 1 and `s³` sub-pixel stride-1 phases
//!   (`subpixel`) for strided convolutions. With AVX-512, stride-1 3×3×3
//!   convolutions of one group with ≥ 16 input and ≥ 32 output channels run
//!   their forward (hence their input gradient) as Winograd F(2×2×2, 3×3×3)
//!   (`winograd`), and their weight gradient too from 128 channels on;
//!   `PETSEG_OPS3D_CONV=direct` keeps them on the direct kernels. 1×1×1
//!   convolutions without stride or padding run `pointwise` (AVX-512), their
//!   input gradient through the flipped adjoint.
//! * f64, other CPUs, 1×1×1 convolutions without AVX-512 and geometries the above cannot
//!   express (padding beyond the dilated kernel): im2col/shifted-row tiles +
//!   the `gemm` crate, and col2im for the strided input gradient. These are
//!   also the reference the direct kernels are tested against.
//!   `PETSEG_OPS3D_CONV=gemm` forces them for benchmarks.
//!
//! All routes tile the output rows (rayon over sample × tile, a buffer of at
//! most ~1 MiB per task, 2–4 MiB for Winograd's blocks of tiles; nothing
//! volume-sized but the result and the once-padded input) and sum the weight
//! gradient in a fixed number of ordered partial sums that depends only on
//! the geometry (Winograd: one sum, each element added block by block in
//! order), so results do not depend on the thread count.

mod bias;
pub(crate) mod cpu;
mod direct;
pub(crate) mod geom;
mod out_map;
mod padded;
#[cfg(target_arch = "x86_64")]
mod pointwise;
mod rows;
mod subpixel;
mod transpose;
#[cfg(target_arch = "x86_64")]
mod winograd;

use crate::elem::{
    compute_dtype, contiguous, dims5, dispatch_float, prepare, same_dtype, storage, through_f32,
};
use crate::error::{config_err, shape_err};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use geom::{conv_out_len, ConvGeom};

/// Hyper-parameters of [`conv3d`], per axis in (D, H, W) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3dConfig {
    /// Step between output voxels (≥ 1).
    pub stride: [usize; 3],
    /// Zero padding added on both sides.
    pub padding: [usize; 3],
    /// Spacing between kernel taps (≥ 1).
    pub dilation: [usize; 3],
    /// Channel groups: input and output channels must both be divisible by it.
    pub groups: usize,
}

impl Default for Conv3dConfig {
    /// Stride 1, no padding, no dilation, one group (PyTorch's defaults).
    fn default() -> Self {
        Conv3dConfig {
            stride: [1; 3],
            padding: [0; 3],
            dilation: [1; 3],
            groups: 1,
        }
    }
}

/// Hyper-parameters of [`conv_transpose3d`], per axis in (D, H, W) order, with
/// PyTorch's meaning (`ConvTranspose3d`); groups are not supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose3dConfig {
    /// Stride of the convolution this op is the transpose of (≥ 1).
    pub stride: [usize; 3],
    /// Padding of that convolution: removes `dilation·(k−1) − padding` ... from
    /// each side of the full transposed output.
    pub padding: [usize; 3],
    /// Extra size added to one side of the output; must be smaller than the
    /// stride or the dilation (as in PyTorch).
    pub output_padding: [usize; 3],
    /// Spacing between kernel taps (≥ 1).
    pub dilation: [usize; 3],
}

impl Default for ConvTranspose3dConfig {
    /// Stride 1, no padding, no output padding, no dilation.
    fn default() -> Self {
        ConvTranspose3dConfig {
            stride: [1; 3],
            padding: [0; 3],
            output_padding: [0; 3],
            dilation: [1; 3],
        }
    }
}

/// Which of the three kernels an op runs, and therefore its inputs/output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvKind {
    /// `(x, w) → y`; backward = (InputGrad, WeightGrad).
    Conv,
    /// `(gy, w) → gx`; no backward.
    InputGrad,
    /// `(x, gy) → gw`; no backward.
    WeightGrad,
    /// Transposed convolution `(x_t, w) → y_t`, computed as InputGrad of the
    /// adjoint convolution; backward = (Conv, WeightGrad).
    Transposed,
}

/// A convolution kernel as a candle custom op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvOp {
    pub geom: ConvGeom,
    pub kind: ConvKind,
}

impl ConvOp {
    fn out_shape(&self) -> Shape {
        let g = &self.geom;
        let [d, h, w] = match self.kind {
            ConvKind::Conv => g.output,
            ConvKind::InputGrad | ConvKind::Transposed => g.input,
            ConvKind::WeightGrad => g.kernel,
        };
        match self.kind {
            ConvKind::Conv => Shape::from((g.n, g.o, d, h, w)),
            ConvKind::InputGrad | ConvKind::Transposed => Shape::from((g.n, g.c, d, h, w)),
            ConvKind::WeightGrad => Shape::from((g.o, g.cg(), d, h, w)),
        }
    }
    /// Expected element counts of the two inputs.
    fn in_lens(&self) -> (usize, usize) {
        let g = &self.geom;
        match self.kind {
            ConvKind::Conv => (g.x_len(), g.w_len()),
            ConvKind::InputGrad | ConvKind::Transposed => (g.y_len(), g.w_len()),
            ConvKind::WeightGrad => (g.x_len(), g.y_len()),
        }
    }
    /// Runs the kernel of `self.kind` on the contiguous data of its two inputs.
    fn run_vec<T: crate::elem::Elem>(&self, a: &[T], b: &[T]) -> Result<Vec<T>> {
        let (la, lb) = self.in_lens();
        if a.len() != la || b.len() != lb {
            return Err(shape_err(
                self.name(),
                format!(
                    "kernel inputs have {} and {} elements, expected {la} and {lb}",
                    a.len(),
                    b.len()
                ),
            ));
        }
        let g = &self.geom;
        Ok(match self.kind {
            ConvKind::Conv => cpu::conv_fwd(g, a, b),
            ConvKind::InputGrad | ConvKind::Transposed => cpu::conv_dgrad(g, a, b),
            ConvKind::WeightGrad => cpu::conv_wgrad(g, a, b),
        })
    }

    /// Gradients of the two inputs `(a, b)` of a `Conv` or `Transposed` op
    /// from the (contiguous) gradient of its result; an input nobody tracks
    /// (e.g. the network's input image) gets none, and costs nothing.
    fn grads(
        &self,
        a: &Tensor,
        b: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = |kind| ConvOp {
            geom: self.geom,
            kind,
        };
        match self.kind {
            ConvKind::Conv => {
                // a = x, b = w
                let gx = a
                    .track_op()
                    .then(|| grad.apply_op2_no_bwd(b, &op(ConvKind::InputGrad)))
                    .transpose()?;
                let gw = b
                    .track_op()
                    .then(|| a.apply_op2_no_bwd(grad, &op(ConvKind::WeightGrad)))
                    .transpose()?;
                Ok((gx, gw))
            }
            ConvKind::Transposed => {
                // a = x_t (the adjoint conv's output), b = w; grad lives on the adjoint conv's input
                let gx = a
                    .track_op()
                    .then(|| grad.apply_op2_no_bwd(b, &op(ConvKind::Conv)))
                    .transpose()?;
                let gw = b
                    .track_op()
                    .then(|| grad.apply_op2_no_bwd(a, &op(ConvKind::WeightGrad)))
                    .transpose()?;
                Ok((gx, gw))
            }
            ConvKind::InputGrad | ConvKind::WeightGrad => {
                Err(candle_core::Error::BackwardNotSupported { op: self.name() })
            }
        }
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        match self.kind {
            ConvKind::Conv => "conv3d",
            ConvKind::InputGrad => "conv3d-input-grad",
            ConvKind::WeightGrad => "conv3d-weight-grad",
            ConvKind::Transposed => "conv-transpose3d",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        through_f32([(s1, l1), (s2, l2)], None, |[(s1, l1), (s2, l2)]| {
            same_dtype(self.name(), &[s1, s2])?;
            let storage = dispatch_float!(self.name(), s1, T => {
                self.run_vec::<T>(contiguous(self.name(), s1, l1)?, contiguous(self.name(), s2, l2)?)
                    .map(storage)
            })?;
            Ok((storage, self.out_shape()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        through_f32([(s1, l1), (s2, l2)], None, |[(s1, l1), (s2, l2)]| {
            let (la, lb) = self.in_lens();
            let out =
                crate::cuda::conv::run(self.name(), self.kind, &self.geom, s1, l1, la, s2, l2, lb)?;
            Ok((out, self.out_shape()))
        })
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(a, b, &grad.contiguous()?)
    }
}

fn check_positive(op: &'static str, field: &str, v: [usize; 3]) -> Result<()> {
    if v.contains(&0) {
        return Err(config_err(
            op,
            format!("{field} must be ≥ 1 on every axis, got {v:?}"),
        ));
    }
    Ok(())
}

const AXES: [&str; 3] = ["D", "H", "W"];

/// Every kernel extent (weight dims 2..5) must be at least 1.
fn check_kernel(op: &'static str, k: &[usize]) -> Result<()> {
    if let Some(a) = k.iter().position(|&v| v == 0) {
        return Err(shape_err(
            op,
            format!(
                "weight kernel {} (dim {}) is 0, expected ≥ 1; weight shape tail {k:?}",
                AXES[a],
                a + 2
            ),
        ));
    }
    Ok(())
}

/// 3-D convolution (cross-correlation, like `torch.nn.functional.conv3d`).
///
/// `x [N, C, D, H, W]`, `w [O, C/groups, kd, kh, kw]`, optional `bias [O]` →
/// `[N, O, D', H', W']` with `D' = (D + 2p − dil·(k−1) − 1)/s + 1` per axis.
/// Autograd: gradients for `x`, `w` and `bias`. f32 and f64 run natively on
/// the CPU (f32 on CUDA); f16/bf16 stay half precision in the graph and are
/// computed in f32 inside the op (one rounding of the result).
/// Non-contiguous inputs are copied to contiguous ones first.
pub fn conv3d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, cfg: &Conv3dConfig) -> Result<Tensor> {
    const OP: &str = "conv3d";
    let [n, c, id, ih, iw] = dims5(OP, "input x", x)?;
    let [o, cg, kd, kh, kw] = dims5(OP, "weight w", w)?;
    check_positive(OP, "stride", cfg.stride)?;
    check_positive(OP, "dilation", cfg.dilation)?;
    check_kernel(OP, &w.dims()[2..])?;
    let groups = cfg.groups;
    if groups == 0 || c % groups != 0 || o % groups != 0 {
        return Err(config_err(
            OP,
            format!("groups = {groups} must be ≥ 1 and divide the input channels ({c}) and the output channels ({o})"),
        ));
    }
    if cg != c / groups {
        return Err(shape_err(
            OP,
            format!(
                "weight dim 1 (input channels per group) is {cg}, expected C/groups = {c}/{groups} = {}",
                c / groups
            ),
        ));
    }
    if x.dtype() != w.dtype() {
        return Err(shape_err(
            OP,
            format!(
                "input dtype {:?} differs from weight dtype {:?}",
                x.dtype(),
                w.dtype()
            ),
        ));
    }
    let input = [id, ih, iw];
    let kernel = [kd, kh, kw];
    let mut output = [0; 3];
    for a in 0..3 {
        output[a] =
            conv_out_len(input[a], kernel[a], cfg.stride[a], cfg.padding[a], cfg.dilation[a]).ok_or_else(|| {
                shape_err(
                    OP,
                    format!(
                        "input {} = {} plus padding 2·{} is smaller than the dilated kernel {}·({}−1)+1",
                        AXES[a], input[a], cfg.padding[a], cfg.dilation[a], kernel[a]
                    ),
                )
            })?;
    }
    let geom = ConvGeom {
        n,
        c,
        o,
        groups,
        input,
        kernel,
        stride: cfg.stride,
        padding: cfg.padding,
        dilation: cfg.dilation,
        output,
    };
    let dt = compute_dtype(x);
    let op = ConvOp {
        geom,
        kind: ConvKind::Conv,
    };
    bias::conv_with_bias(OP, &prepare(x, dt)?, &prepare(w, dt)?, bias, op, o)?.to_dtype(x.dtype())
}

/// 3-D transposed convolution (like `torch.nn.functional.conv_transpose3d`,
/// groups = 1).
///
/// `x [N, Cin, D, H, W]`, `w [Cin, Cout, kd, kh, kw]` (PyTorch layout), optional
/// `bias [Cout]` → `[N, Cout, D', H', W']` with
/// `D' = (D − 1)·s − 2p + dil·(k − 1) + output_padding + 1`.
/// `output_padding` must be smaller than the stride or the dilation on its axis.
/// Autograd, dtypes and layouts as in [`conv3d`].
pub fn conv_transpose3d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: &ConvTranspose3dConfig,
) -> Result<Tensor> {
    const OP: &str = "conv_transpose3d";
    let [n, cin, id, ih, iw] = dims5(OP, "input x", x)?;
    let [wc, cout, kd, kh, kw] = dims5(OP, "weight w", w)?;
    check_positive(OP, "stride", cfg.stride)?;
    check_positive(OP, "dilation", cfg.dilation)?;
    check_kernel(OP, &w.dims()[2..])?;
    if wc != cin {
        return Err(shape_err(
            OP,
            format!("weight dim 0 (input channels) is {wc}, expected {cin} = input dim 1"),
        ));
    }
    if x.dtype() != w.dtype() {
        return Err(shape_err(
            OP,
            format!(
                "input dtype {:?} differs from weight dtype {:?}",
                x.dtype(),
                w.dtype()
            ),
        ));
    }
    let t_in = [id, ih, iw];
    if let Some(a) = t_in.iter().position(|&v| v == 0) {
        return Err(shape_err(
            OP,
            format!("input {} (dim {}) is 0, expected ≥ 1", AXES[a], a + 2),
        ));
    }
    let kernel = [kd, kh, kw];
    let mut t_out = [0; 3];
    for a in 0..3 {
        let (s, p, d, op) = (
            cfg.stride[a],
            cfg.padding[a],
            cfg.dilation[a],
            cfg.output_padding[a],
        );
        if op >= s && op >= d {
            return Err(config_err(
                OP,
                format!(
                    "output_padding {} = {op} must be smaller than the stride ({s}) or the dilation ({d})",
                    AXES[a]
                ),
            ));
        }
        let full = (t_in[a] - 1) * s + d * (kernel[a] - 1) + op + 1;
        if full <= 2 * p {
            return Err(shape_err(
                OP,
                format!(
                    "output {} would be empty: (in {} − 1)·{s} + {d}·({} − 1) + {op} + 1 ≤ 2·padding {p}",
                    AXES[a], t_in[a], kernel[a]
                ),
            ));
        }
        t_out[a] = full - 2 * p;
    }
    // The adjoint convolution maps t_out (its input) to t_in (its output).
    let geom = ConvGeom {
        n,
        c: cout,
        o: cin,
        groups: 1,
        input: t_out,
        kernel,
        stride: cfg.stride,
        padding: cfg.padding,
        dilation: cfg.dilation,
        output: t_in,
    };
    let dt = compute_dtype(x);
    let op = ConvOp {
        geom,
        kind: ConvKind::Transposed,
    };
    bias::conv_with_bias(OP, &prepare(x, dt)?, &prepare(w, dt)?, bias, op, cout)?
        .to_dtype(x.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The backward computes only the gradients of tracked tensors, and those
    /// are unchanged when the other one is skipped.
    #[test]
    fn untracked_arguments_get_no_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 5, 6, 7), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3, 3), &dev)?;
        let cfg = Conv3dConfig {
            padding: [1; 3],
            ..Default::default()
        };
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let both = conv3d(xv.as_tensor(), wv.as_tensor(), None, &cfg)?
            .sqr()?
            .sum_all()?
            .backward()?;
        let only_w = conv3d(&x, wv.as_tensor(), None, &cfg)?
            .sqr()?
            .sum_all()?
            .backward()?;
        assert!(only_w.get(&x).is_none());
        let (a, b) = (
            both.get(wv.as_tensor()).unwrap(),
            only_w.get(wv.as_tensor()).unwrap(),
        );
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        let only_x = conv3d(xv.as_tensor(), &w, None, &cfg)?
            .sqr()?
            .sum_all()?
            .backward()?;
        assert!(only_x.get(&w).is_none());
        let diff = (both.get(xv.as_tensor()).unwrap() - only_x.get(xv.as_tensor()).unwrap())?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }
}
