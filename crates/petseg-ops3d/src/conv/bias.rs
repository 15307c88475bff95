//! The bias of [`super::conv3d`] and [`super::conv_transpose3d`].
//!
//! On the CPU the bias is part of the convolution op ([`BiasedConv`]): it is
//! added in place to the freshly computed result, and its gradient (the sum of
//! the output gradient over batch and space) is one parallel pass. Composed
//! from candle ops instead, `y + b` costs a new volume-sized tensor in the
//! forward, and in the backward candle materialises the gradient of the
//! unbiased result as `zeros + grad` (two more volume-sized passes) before the
//! convolution's own backward runs. Other devices use the composed form.

use super::ConvOp;
use crate::elem::{contiguous, dispatch_float, same_dtype, storage, through_f32, Elem, SharedMut};
use crate::error::shape_err;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// `op(x, w) + bias` over dim 1, with autograd for all three. `x` and `w` are
/// already in the compute dtype and contiguous; `channels` is the result's
/// channel count.
pub(super) fn conv_with_bias(
    name: &'static str,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    op: ConvOp,
    channels: usize,
) -> Result<Tensor> {
    let Some(bias) = bias else {
        return x.apply_op2(w, op);
    };
    if bias.dims() != [channels] {
        return Err(shape_err(
            name,
            format!(
                "bias must have shape [{channels}] (one value per output channel), got {:?}",
                bias.dims()
            ),
        ));
    }
    let bias = crate::elem::prepare(bias, x.dtype())?;
    if x.device().is_cpu() {
        x.apply_op3(w, &bias, BiasedConv(op))
    } else {
        x.apply_op2(w, op)?
            .broadcast_add(&bias.reshape((1, channels, 1, 1, 1))?)
    }
}

/// A forward convolution (`Conv` or `Transposed`) with its bias, as one op.
#[derive(Clone, Copy, Debug)]
struct BiasedConv(ConvOp);

impl CustomOp3 for BiasedConv {
    fn name(&self) -> &'static str {
        match self.0.kind {
            super::ConvKind::Transposed => "conv-transpose3d+bias",
            _ => "conv3d+bias",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        through_f32(
            [(s1, l1), (s2, l2), (s3, l3)],
            None,
            |[(s1, l1), (s2, l2), (s3, l3)]| {
                let name = self.name();
                same_dtype(name, &[s1, s2, s3])?;
                let shape = self.0.out_shape();
                let storage = dispatch_float!(name, s1, T => {
                    let mut y = self.0.run_vec::<T>(contiguous(name, s1, l1)?, contiguous(name, s2, l2)?)?;
                    add_channel_bias(&mut y, contiguous::<T>(name, s3, l3)?, shape.dims()[0]);
                    Ok::<_, candle_core::Error>(storage(y))
                })?;
                Ok((storage, shape))
            },
        )
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (gx, gw) = self.0.grads(x, w, &grad)?;
        let gb = bias
            .track_op()
            .then(|| grad.apply_op1_no_bwd(&ChannelSum))
            .transpose()?;
        Ok((gx, gw, gb))
    }
}

/// Adds `bias[c]` to every voxel of channel `c` of `y [n, C, vol]`, in
/// parallel over the `n·C` planes.
fn add_channel_bias<T: Elem>(y: &mut [T], bias: &[T], n: usize) {
    let c = bias.len();
    let vol = y.len() / (n * c).max(1);
    if vol == 0 {
        return;
    }
    y.par_chunks_mut(vol).enumerate().for_each(|(plane, v)| {
        let b = bias[plane % c];
        v.iter_mut().for_each(|e| *e += b);
    });
}

/// `[N, C, D, H, W] → [C]`: the sum over batch and space of each channel (the
/// bias gradient), accumulated in f64 in a fixed order (deterministic).
#[derive(Clone, Copy, Debug)]
struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "conv-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        through_f32([(s, l)], None, |[(s, l)]| {
            let [n, c, d, h, w] = match *l.dims() {
                [a, b, c, d, e] => [a, b, c, d, e],
                _ => {
                    return Err(shape_err(
                        self.name(),
                        format!("expected a 5-D gradient, got {:?}", l.dims()),
                    ))
                }
            };
            let vol = d * h * w;
            let storage = dispatch_float!(self.name(), s, T => {
                let g = contiguous::<T>(self.name(), s, l)?;
                let mut sums = vec![T::ZERO; c];
                let out = SharedMut(sums.as_mut_ptr());
                (0..c).into_par_iter().for_each(|ch| {
                    let total: f64 = (0..n)
                        .map(|b| g[(b * c + ch) * vol..][..vol].iter().map(|v| v.to_f64()).sum::<f64>())
                        .sum();
                    // SAFETY: each task writes only its own channel's element.
                    unsafe { *out.ptr().add(ch) = T::from_f64(total) };
                });
                Ok::<_, candle_core::Error>(storage(sums))
            })?;
            Ok((storage, Shape::from(c)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{conv3d, conv_transpose3d, Conv3dConfig, ConvTranspose3dConfig};
    use candle_core::{Device, Var};

    /// The fused op (CPU) gives the composed `y + b` and its gradients exactly
    /// (same kernels; only the summation order of the bias gradient differs).
    #[test]
    fn fused_bias_matches_composed() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, 5, 6, 7), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f64, 0.3, (4, 3, 3, 3, 3), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f64, 1.0, 4, &dev)?)?;
        let cfg = Conv3dConfig {
            stride: [1, 2, 1],
            padding: [1; 3],
            ..Default::default()
        };
        let fused = conv3d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), &cfg)?;
        let composed = conv3d(x.as_tensor(), w.as_tensor(), None, &cfg)?
            .broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1, 1))?)?;
        check_same(&fused, &composed, &[&x, &w, &b])?;

        let wt = Var::from_tensor(&Tensor::randn(0f64, 0.3, (3, 4, 3, 3, 3), &dev)?)?;
        let tcfg = ConvTranspose3dConfig {
            stride: [2; 3],
            padding: [1; 3],
            output_padding: [1; 3],
            ..Default::default()
        };
        let fused = conv_transpose3d(x.as_tensor(), wt.as_tensor(), Some(b.as_tensor()), &tcfg)?;
        let composed = conv_transpose3d(x.as_tensor(), wt.as_tensor(), None, &tcfg)?
            .broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1, 1))?)?;
        check_same(&fused, &composed, &[&x, &wt, &b])
    }

    fn check_same(fused: &Tensor, composed: &Tensor, vars: &[&Var]) -> Result<()> {
        let diff = |a: &Tensor, b: &Tensor| -> Result<f64> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f64>()
        };
        assert_eq!(diff(fused, composed)?, 0.0);
        // a non-uniform output gradient, so that every channel's sum differs
        let weight = Tensor::randn(0f64, 1.0, fused.dims(), fused.device())?;
        let gf = (fused * &weight)?.sum_all()?.backward()?;
        let gc = (composed * &weight)?.sum_all()?.backward()?;
        for v in vars {
            let (a, b) = (
                gf.get(v.as_tensor()).unwrap(),
                gc.get(v.as_tensor()).unwrap(),
            );
            assert!(
                diff(a, b)? <= 1e-12,
                "gradient of a {:?} argument",
                v.dims()
            );
        }
        Ok(())
    }

    /// A bias of the wrong shape is an error naming the expected shape.
    #[test]
    fn wrong_bias_shape_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 4, 4, 4), candle_core::DType::F32, &dev)?;
        let w = Tensor::zeros((3, 2, 3, 3, 3), candle_core::DType::F32, &dev)?;
        let b = Tensor::zeros(2, candle_core::DType::F32, &dev)?;
        let err = conv3d(&x, &w, Some(&b), &Conv3dConfig::default()).unwrap_err();
        assert!(
            err.to_string().contains("bias must have shape [3]"),
            "{err}"
        );
        Ok(())
    }

    /// The bias-gradient op refuses a gradient that is not 5-D.
    #[test]
    fn channel_sum_rejects_non_5d() {
        let t = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = t.apply_op1_no_bwd(&ChannelSum).unwrap_err();
        assert!(err.to_string().contains("expected a 5-D gradient"), "{err}");
    }
}
