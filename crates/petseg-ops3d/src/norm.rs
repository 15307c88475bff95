//! Fused `group_norm` / `instance_norm` over 5-D tensors with autograd.
//!
//! candle-nn's GroupNorm is composed of ~10 generic ops and keeps every
//! intermediate for the backward. Here the forward is one statistics pass
//! plus one normalisation pass, and the backward one fused op of three passes
//! (statistics, per-channel sums, dx), with sums in f64.

use crate::elem::{
    compute_dtype, contiguous, dims5, dispatch_float, param_dtype, prepare, same_dtype, storage,
    through_f32, written_vec, Elem,
};
use crate::error::{config_err, shape_err, unsupported};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// Sizes of a group normalisation of `x [n, c, spatial…]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct NormGeom {
    pub n: usize,
    pub c: usize,
    pub groups: usize,
    /// Voxels per channel.
    pub spatial: usize,
    pub eps: f64,
    /// The 5-D shape of x.
    pub dims: [usize; 5],
}

impl NormGeom {
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Elements of one (sample, group) block, contiguous in NCDHW.
    pub fn block(&self) -> usize {
        self.cg() * self.spatial
    }
    fn shape(&self) -> Shape {
        Shape::from(self.dims.to_vec())
    }
    /// Shape of the packed backward output `[dx, dγ, dβ]`.
    fn packed_shape(&self) -> Shape {
        Shape::from(self.dims.iter().product::<usize>() + 2 * self.c)
    }
}

/// Σv and Σv² of a slice in f64, over 8 independent lanes (so the loop
/// pipelines) combined in a fixed order: the result does not depend on the
/// thread count.
fn sum_and_squares<T: Elem>(b: &[T]) -> (f64, f64) {
    let (mut s, mut q) = ([0.0f64; 8], [0.0f64; 8]);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            let v = c[j].to_f64();
            s[j] += v;
            q[j] += v * v;
        }
    }
    let (mut s, mut q) = (s.iter().sum::<f64>(), q.iter().sum::<f64>());
    for v in chunks.remainder() {
        let v = v.to_f64();
        s += v;
        q += v * v;
    }
    (s, q)
}

/// Mean and 1/sqrt(var + eps) (biased variance) of every (sample, group)
/// block, in one pass with f64 sums of x and x².
fn stats<T: Elem>(g: &NormGeom, x: &[T]) -> Vec<(f64, f64)> {
    x.par_chunks(g.block().max(1))
        .map(|b| {
            let m = b.len().max(1) as f64;
            let (s, q) = sum_and_squares(b);
            let mean = s / m;
            let var = (q / m - mean * mean).max(0.0);
            (mean, 1.0 / (var + g.eps).sqrt())
        })
        .collect()
}

/// The per-channel affine map `x ↦ a·x + b` that normalises channel `ch` of
/// sample-and-group statistics `(mean, rstd)` and applies `γ`, `β`. Forward
/// and backward both build it here, so the backward's recomputed
/// pre-activation equals the forward's bit for bit (the ReLU mask agrees).
#[inline]
fn channel_affine<T: Elem>((mean, rstd): (f64, f64), gamma: T, beta: T) -> (T, T) {
    let a = rstd * gamma.to_f64();
    (T::from_f64(a), T::from_f64(beta.to_f64() - mean * a))
}

/// The activation fused after the normalisation's affine map `z = a·x + b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Act<T> {
    Identity,
    /// `max(z, 0)`, keeping NaN (as `torch.relu`); zero gradient where
    /// `z ≤ 0` (PyTorch's `threshold_backward` on the output).
    Relu,
    /// `z` where `z > 0`, else `w·z` (`torch.nn.PReLU` with one slope `w`).
    PRelu(T),
}

fn forward<T: Elem>(
    g: &NormGeom,
    st: &[(f64, f64)],
    x: &[T],
    gamma: &[T],
    beta: &[T],
    act: Act<T>,
) -> Vec<T> {
    let sp = g.spatial.max(1);
    let fill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(sp)
            .zip(x.par_chunks(sp))
            .enumerate()
            .for_each(|(nc, (yc, xc))| {
                let ch = nc % g.c;
                let (a, b) = channel_affine(st[nc / g.cg()], gamma[ch], beta[ch]);
                let it = yc.iter_mut().zip(xc);
                match act {
                    Act::Identity => it.for_each(|(y, &x)| {
                        y.write(x * a + b);
                    }),
                    Act::Relu => it.for_each(|(y, &x)| {
                        let z = x * a + b;
                        y.write(if z < T::ZERO { T::ZERO } else { z });
                    }),
                    Act::PRelu(w) => it.for_each(|(y, &x)| {
                        let z = x * a + b;
                        y.write(if z > T::ZERO { z } else { w * z });
                    }),
                }
            });
    };
    // SAFETY: the chunks of `sp` elements cover all of y (x has the same
    // length) and every element of each chunk is written.
    unsafe { written_vec(x.len(), fill) }
}

/// Runs `$body` with `$grad` bound to a closure `(x, gy) → (gz, s)`: `gz` the
/// gradient reaching the pre-activation `z = a·x + b` through `act`, `s` the
/// term of the PReLU slope gradient `Σ_{z ≤ 0} gy·z` (0 for other
/// activations). One closure type per activation, so each loop is
/// specialised.
macro_rules! with_act_grad {
    ($act:expr, $a:expr, $b:expr, $grad:ident => $body:expr) => {{
        let (a, b) = ($a, $b);
        match $act {
            Act::Identity => {
                let $grad = |_x: T, gy: T| (gy, T::ZERO);
                $body
            }
            Act::Relu => {
                let $grad = |x: T, gy: T| {
                    if x * a + b <= T::ZERO {
                        (T::ZERO, T::ZERO)
                    } else {
                        (gy, T::ZERO)
                    }
                };
                $body
            }
            Act::PRelu(w) => {
                let $grad = |x: T, gy: T| {
                    let z = x * a + b;
                    if z > T::ZERO {
                        (gy, T::ZERO)
                    } else {
                        (w * gy, gy * z)
                    }
                };
                $body
            }
        }
    }};
}

/// `(Σ gz·x, Σ gz, Σ s)` of one channel (see [`with_act_grad`]), 8 independent
/// f64 lanes in a fixed order.
fn channel_sums<T: Elem>(grad: impl Fn(T, T) -> (T, T), xc: &[T], gc: &[T]) -> [f64; 3] {
    let mut acc = [[0.0f64; 8]; 3];
    let (mut xs, mut gs) = (xc.chunks_exact(8), gc.chunks_exact(8));
    for (xb, gb) in (&mut xs).zip(&mut gs) {
        for j in 0..8 {
            let (gz, sl) = grad(xb[j], gb[j]);
            let gz = gz.to_f64();
            acc[0][j] += gz * xb[j].to_f64();
            acc[1][j] += gz;
            acc[2][j] += sl.to_f64();
        }
    }
    let mut out = acc.map(|l| l.iter().sum::<f64>());
    for (&xv, &gv) in xs.remainder().iter().zip(gs.remainder()) {
        let (gz, sl) = grad(xv, gv);
        let gz = gz.to_f64();
        out[0] += gz * xv.to_f64();
        out[1] += gz;
        out[2] += sl.to_f64();
    }
    out
}

/// Fused backward, packed as `[dx (N·C·D·H·W), dγ (C), dβ (C)]`, plus `[dw]`
/// for a PReLU: `dx = rstd·(gz·γ − mean(gz·γ) − x̂·mean(gz·γ·x̂))` over each
/// block, `dγ_c = Σ gz·x̂`, `dβ_c = Σ gz`, where `gz` is `gy` taken back
/// through the activation (see [`with_act_grad`]). One pass per channel
/// accumulates `Σ gz·x`, `Σ gz` (and the slope terms), from which every block
/// and parameter sum follows; a second pass writes dx. The statistics come
/// from the forward.
fn backward<T: Elem>(
    g: &NormGeom,
    st: &[(f64, f64)],
    x: &[T],
    gamma: &[T],
    beta: &[T],
    act: Act<T>,
    gy: &[T],
) -> Vec<T> {
    let (blk, sp, cg, len) = (g.block().max(1), g.spatial.max(1), g.cg(), x.len());
    let ab = |nc: usize| {
        let ch = nc % g.c;
        channel_affine(st[nc / cg], gamma[ch], beta[ch])
    };
    // per (sample, channel): [Σ gz·x, Σ gz, Σ slope terms]
    let sums: Vec<[f64; 3]> = x
        .par_chunks(sp)
        .zip(gy.par_chunks(sp))
        .enumerate()
        .map(|(nc, (xc, gc))| {
            let (a, b) = ab(nc);
            with_act_grad!(act, a, b, grad => channel_sums(grad, xc, gc))
        })
        .collect();
    let slope = matches!(act, Act::PRelu(_));
    let mut out = vec![T::ZERO; len + 2 * g.c + usize::from(slope)];
    let (dx, params) = out.split_at_mut(len);
    dx.par_chunks_mut(sp)
        .zip(x.par_chunks(sp))
        .zip(gy.par_chunks(sp))
        .enumerate()
        .for_each(|(nc, ((gxc, xc), gyc))| {
            let ng = nc / cg;
            let (mean, rstd) = st[ng];
            let c0 = (ng % g.groups) * cg;
            let first = (ng / g.groups) * g.c + c0;
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for ci in 0..cg {
                let [a, b, _] = sums[first + ci];
                let gm = gamma[c0 + ci].to_f64();
                s1 += gm * b;
                s2 += gm * rstd * (a - mean * b);
            }
            let m = blk as f64;
            let (m1, m2) = (s1 / m, s2 / m);
            // dx = rstd·γ·gz − rstd·m1 − rstd²·m2·(x − mean) = a·gz + b·x + c
            let a = T::from_f64(rstd * gamma[nc % g.c].to_f64());
            let b = T::from_f64(-rstd * rstd * m2);
            let c = T::from_f64(-rstd * m1 + mean * rstd * rstd * m2);
            let (za, zb) = ab(nc);
            with_act_grad!(act, za, zb, grad => {
                for ((o, &xv), &gv) in gxc.iter_mut().zip(xc).zip(gyc) {
                    *o = a * grad(xv, gv).0 + b * xv + c;
                }
            })
        });
    for ch in 0..g.c {
        let (mut dg, mut db) = (0.0, 0.0);
        for s in 0..g.n {
            let [a, b, _] = sums[s * g.c + ch];
            let (mean, rstd) = st[(s * g.c + ch) / cg];
            dg += rstd * (a - mean * b);
            db += b;
        }
        params[ch] = T::from_f64(dg);
        params[g.c + ch] = T::from_f64(db);
    }
    if slope {
        params[2 * g.c] = T::from_f64(sums.iter().map(|s| s[2]).sum());
    }
    out
}

/// The CUDA kernels have no fused ReLU: the wrapper composes it there, so an
/// op that asks for it on CUDA is a bug of this crate, reported as such.
#[cfg(feature = "cuda")]
fn refuse_cuda_relu(op: &'static str, relu: bool) -> Result<()> {
    if relu {
        return Err(unsupported(
            op,
            "the fused ReLU on CUDA (the wrapper composes it)",
        ));
    }
    Ok(())
}

/// `(x, γ, β) → y` (optionally `relu(y)`), with backward through [`NormBwdOp`].
#[derive(Debug)]
pub(crate) struct GroupNormOp {
    pub geom: NormGeom,
    /// Fuse a ReLU after the affine map (CPU only; the wrapper composes it on
    /// other devices).
    relu: bool,
    /// The CPU forward's statistics, reused by the backward (one pass over x less).
    stats: OnceLock<Vec<(f64, f64)>>,
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        if self.relu {
            "group_norm_relu"
        } else {
            "group_norm"
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
                same_dtype(self.name(), &[s1, s2, s3])?;
                let st = dispatch_float!(self.name(), s1, T => {
                    let n = self.name();
                    let (x, gamma, beta) = (contiguous::<T>(n, s1, l1)?, contiguous::<T>(n, s2, l2)?, contiguous::<T>(n, s3, l3)?);
                    let st = self.stats.get_or_init(|| stats(&self.geom, x));
                    let act = if self.relu { Act::Relu } else { Act::Identity };
                    Ok(storage(forward(&self.geom, st, x, gamma, beta, act)))
                })?;
                Ok((st, self.geom.shape()))
            },
        )
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        through_f32(
            [(s1, l1), (s2, l2), (s3, l3)],
            None,
            |[(s1, l1), (s2, l2), (s3, l3)]| {
                refuse_cuda_relu(self.name(), self.relu)?;
                let st = crate::cuda::norm::forward(&self.geom, s1, l1, s2, l2, s3, l3)?;
                Ok((st, self.geom.shape()))
            },
        )
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        // With the ReLU the backward also needs β (to rebuild the mask), packed after γ.
        let params = if self.relu {
            Tensor::cat(&[gamma, beta], 0)?
        } else {
            gamma.clone()
        };
        let op = NormBwdOp {
            geom: self.geom,
            relu: self.relu,
            stats: self.stats.get().cloned(),
        };
        let packed = x.apply_op3_no_bwd(&params, &grad, &op)?;
        let (len, c) = (x.elem_count(), self.geom.c);
        // the packed gradients are in the parameters' dtype (f32 for a
        // half-precision x); each goes back in its argument's dtype
        let gx = packed.narrow(0, 0, len)?.reshape(self.geom.shape())?;
        Ok((
            Some(gx.to_dtype(x.dtype())?),
            Some(packed.narrow(0, len, c)?.to_dtype(gamma.dtype())?),
            Some(packed.narrow(0, len + c, c)?.to_dtype(beta.dtype())?),
        ))
    }
}

/// `(x, γ or [γ, β], gy) → [dx, dγ, dβ]` packed in one 1-D tensor (see
/// [`backward`]); `[γ, β]` when the ReLU is fused.
#[derive(Clone, Debug)]
pub(crate) struct NormBwdOp {
    pub geom: NormGeom,
    relu: bool,
    /// The forward's statistics when it ran on the CPU.
    stats: Option<Vec<(f64, f64)>>,
}

impl CustomOp3 for NormBwdOp {
    fn name(&self) -> &'static str {
        "group_norm-backward"
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
            Some(s2.dtype()),
            |[(s1, l1), (s2, l2), (s3, l3)]| {
                same_dtype(self.name(), &[s1, s2, s3])?;
                let st = dispatch_float!(self.name(), s1, T => {
                    let n = self.name();
                    let (x, params, gy) = (contiguous::<T>(n, s1, l1)?, contiguous::<T>(n, s2, l2)?, contiguous::<T>(n, s3, l3)?);
                    let c = self.geom.c;
                    let (gamma, beta, act) = if self.relu { (&params[..c], &params[c..2 * c], Act::Relu) } else { (params, params, Act::Identity) };
                    let computed;
                    let st = match &self.stats {
                        Some(st) => st,
                        None => {
                            computed = stats(&self.geom, x);
                            &computed
                        }
                    };
                    Ok(storage(backward(&self.geom, st, x, gamma, beta, act, gy)))
                })?;
                Ok((st, self.geom.packed_shape()))
            },
        )
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        through_f32(
            [(s1, l1), (s2, l2), (s3, l3)],
            Some(s2.dtype()),
            |[(s1, l1), (s2, l2), (s3, l3)]| {
                refuse_cuda_relu(self.name(), self.relu)?;
                let st = crate::cuda::norm::backward(&self.geom, s1, l1, s2, l2, s3, l3)?;
                Ok((st, self.geom.packed_shape()))
            },
        )
    }
}

/// Checks the input and `eps` of a norm and returns its geometry.
fn geometry(op: &'static str, x: &Tensor, num_groups: usize, eps: f64) -> Result<NormGeom> {
    let dims = dims5(op, "input x", x)?;
    let [n, c, d, h, w] = dims;
    if num_groups == 0 || c % num_groups != 0 {
        return Err(config_err(
            op,
            format!("num_groups = {num_groups} must be ≥ 1 and divide the channels C = {c}"),
        ));
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(config_err(
            op,
            format!("eps = {eps} must be finite and ≥ 0"),
        ));
    }
    Ok(NormGeom {
        n,
        c,
        groups: num_groups,
        spatial: d * h * w,
        eps,
        dims,
    })
}

/// The shared body of the public norms: checks, parameter defaults, the op.
fn norm(
    op: &'static str,
    x: &Tensor,
    num_groups: usize,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let geom = geometry(op, x, num_groups, eps)?;
    let c = geom.c;
    let dt = compute_dtype(x);
    let param = |p: Option<&Tensor>, name: &str, fill: f64| -> Result<Tensor> {
        match p {
            Some(p) if p.dims() != [c] => Err(shape_err(
                op,
                format!(
                    "{name} must have shape [{c}] (one value per channel), got {:?}",
                    p.dims()
                ),
            )),
            Some(p) => prepare(p, param_dtype(dt)),
            None => Tensor::full(fill, c, x.device())?.to_dtype(param_dtype(dt)),
        }
    };
    let (gamma, beta) = (param(gamma, "gamma", 1.0)?, param(beta, "beta", 0.0)?);
    // The fused ReLU has a CPU kernel only; elsewhere it is composed.
    let fused = relu && x.device().is_cpu();
    let y = prepare(x, dt)?.apply_op3(
        &gamma,
        &beta,
        GroupNormOp {
            geom,
            relu: fused,
            stats: OnceLock::new(),
        },
    )?;
    let y = if relu && !fused { y.relu()? } else { y };
    y.to_dtype(x.dtype())
}

/// Group normalisation of `x [N, C, D, H, W]` like `F.group_norm`: each
/// (sample, group of C/num_groups channels) is normalised by its own mean and
/// biased variance, then scaled by `gamma [C]` and shifted by `beta [C]`
/// (identity when `None`). Autograd for x, gamma and beta.
pub fn group_norm(
    x: &Tensor,
    num_groups: usize,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    norm("group_norm", x, num_groups, gamma, beta, eps, false)
}

/// `relu(group_norm(x, …))` in one op: on the CPU the ReLU is applied in the
/// normalisation pass and its mask rebuilt in the fused backward, so the
/// graph holds one tensor (the output) instead of two and skips candle's
/// ReLU passes forward and backward. Same arguments and gradients as the
/// composition (PyTorch's convention: zero gradient where the output is 0).
pub fn group_norm_relu(
    x: &Tensor,
    num_groups: usize,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    norm("group_norm_relu", x, num_groups, gamma, beta, eps, true)
}

/// Instance normalisation of `x [N, C, D, H, W]` (`F.instance_norm` without
/// running statistics): [`group_norm`] with one group per channel. MONAI's
/// default `affine = False` corresponds to `gamma = beta = None`.
pub fn instance_norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let c = dims5("instance_norm", "input x", x)?[1];
    group_norm(x, c.max(1), gamma, beta, eps)
}

/// `(x, w) → prelu(instance_norm(x), w)` without affine parameters, with
/// backward through [`InstanceNormPReluBwdOp`] (CPU only).
#[derive(Debug)]
pub(crate) struct InstanceNormPReluOp {
    geom: NormGeom,
    /// The forward's statistics, reused by the backward.
    stats: OnceLock<Vec<(f64, f64)>>,
}

/// The first element of a CPU storage as `T` (the PReLU slope).
fn first<T: Elem>(op: &'static str, s: &CpuStorage, l: &Layout) -> Result<T> {
    contiguous::<T>(op, s, l)?
        .first()
        .copied()
        .ok_or_else(|| unsupported(op, "empty PReLU slope"))
}

impl CustomOp2 for InstanceNormPReluOp {
    fn name(&self) -> &'static str {
        "instance_norm_prelu"
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
            let st = dispatch_float!(self.name(), s1, T => {
                let x = contiguous::<T>(self.name(), s1, l1)?;
                let w = first::<T>(self.name(), s2, l2)?;
                let st = self.stats.get_or_init(|| stats(&self.geom, x));
                let (ones, zeros) = (vec![<T as candle_core::WithDType>::from_f64(1.0); self.geom.c], vec![<T as Elem>::ZERO; self.geom.c]);
                Ok(storage(forward(&self.geom, st, x, &ones, &zeros, Act::PRelu(w))))
            })?;
            Ok((st, self.geom.shape()))
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = InstanceNormPReluBwdOp {
            geom: self.geom,
            stats: self.stats.get().cloned(),
        };
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &op)?;
        let (len, c) = (x.elem_count(), self.geom.c);
        // packed in the slope's dtype; each gradient in its argument's dtype
        Ok((
            Some(
                packed
                    .narrow(0, 0, len)?
                    .reshape(self.geom.shape())?
                    .to_dtype(x.dtype())?,
            ),
            Some(packed.narrow(0, len + 2 * c, 1)?.to_dtype(w.dtype())?),
        ))
    }
}

/// `(x, w, gy) → [dx, (dγ, dβ: unused), dw]` packed (see [`backward`]).
#[derive(Clone, Debug)]
pub(crate) struct InstanceNormPReluBwdOp {
    geom: NormGeom,
    stats: Option<Vec<(f64, f64)>>,
}

impl CustomOp3 for InstanceNormPReluBwdOp {
    fn name(&self) -> &'static str {
        "instance_norm_prelu-backward"
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
            Some(s2.dtype()),
            |[(s1, l1), (s2, l2), (s3, l3)]| {
                same_dtype(self.name(), &[s1, s2, s3])?;
                let st = dispatch_float!(self.name(), s1, T => {
                    let n = self.name();
                    let (x, gy) = (contiguous::<T>(n, s1, l1)?, contiguous::<T>(n, s3, l3)?);
                    let w = first::<T>(n, s2, l2)?;
                    let computed;
                    let st = match &self.stats {
                        Some(st) => st,
                        None => {
                            computed = stats(&self.geom, x);
                            &computed
                        }
                    };
                    let (ones, zeros) = (vec![<T as candle_core::WithDType>::from_f64(1.0); self.geom.c], vec![<T as Elem>::ZERO; self.geom.c]);
                    Ok(storage(backward(&self.geom, st, x, &ones, &zeros, Act::PRelu(w), gy)))
                })?;
                Ok((st, Shape::from(self.geom.packed_shape().elem_count() + 1)))
            },
        )
    }
}

/// `prelu(instance_norm(x), slope)` as one op: MONAI's default
/// `InstanceNorm3d` (no affine parameters, no running statistics) followed by
/// `torch.nn.PReLU()` with one shared slope `slope [1]`. On the CPU the graph
/// keeps only `x` and the output (the composition also keeps the normalised
/// tensor, a mask and `slope·z`), and the backward is one fused pass that
/// also gives the slope gradient; on other devices it is composed from
/// [`instance_norm`] and candle ops. Gradients for x and slope.
pub fn instance_norm_prelu(x: &Tensor, slope: &Tensor, eps: f64) -> Result<Tensor> {
    const OP: &str = "instance_norm_prelu";
    let c = dims5(OP, "input x", x)?[1];
    let geom = geometry(OP, x, c.max(1), eps)?;
    if slope.elem_count() != 1 {
        return Err(shape_err(
            OP,
            format!(
                "slope must hold one value (PReLU with one shared parameter), got shape {:?}",
                slope.dims()
            ),
        ));
    }
    let dt = compute_dtype(x);
    if !x.device().is_cpu() {
        let z = instance_norm(x, None, None, eps)?;
        let w = slope.to_dtype(z.dtype())?.reshape((1, 1, 1, 1, 1))?;
        return z.gt(0.0)?.where_cond(&z, &z.broadcast_mul(&w)?);
    }
    let op = InstanceNormPReluOp {
        geom,
        stats: OnceLock::new(),
    };
    prepare(x, dt)?
        .apply_op2(&prepare(&slope.flatten_all()?, param_dtype(dt))?, op)?
        .to_dtype(x.dtype())
}
