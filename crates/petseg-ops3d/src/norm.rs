//! Fused `group_norm` / `instance_norm` over 5-D tensors with autograd.
//!
//! candle-nn's GroupNorm is composed of ~10 generic ops and keeps every
//! intermediate for the backward: 2.9 s forward+backward at [1,16,128³] on the
//! development VM (../shared/notes/candle-3d.md §4). Here the forward is one
//! statistics pass plus one normalisation pass, and the backward one fused op
//! of three passes (statistics, per-channel sums, dx), with sums in f64.

use crate::elem::{
    compute_dtype, contiguous, dims5, dispatch_float, dtype_of, prepare, storage, Elem,
};
use crate::error::{config_err, shape_err, unsupported};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

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

/// Mean and 1/sqrt(var + eps) (biased variance) of every (sample, group)
/// block, in one pass with f64 sums of x and x².
fn stats<T: Elem>(g: &NormGeom, x: &[T]) -> Vec<(f64, f64)> {
    x.par_chunks(g.block().max(1))
        .map(|b| {
            let m = b.len().max(1) as f64;
            let (s, q) = b.iter().fold((0.0f64, 0.0f64), |(s, q), v| {
                let v = v.to_f64();
                (s + v, q + v * v)
            });
            let mean = s / m;
            let var = (q / m - mean * mean).max(0.0);
            (mean, 1.0 / (var + g.eps).sqrt())
        })
        .collect()
}

fn forward<T: Elem>(g: &NormGeom, x: &[T], gamma: &[T], beta: &[T]) -> Vec<T> {
    let st = stats(g, x);
    let mut y = vec![T::from_f64(0.0); x.len()];
    let sp = g.spatial.max(1);
    y.par_chunks_mut(sp)
        .zip(x.par_chunks(sp))
        .enumerate()
        .for_each(|(nc, (yc, xc))| {
            let ch = nc % g.c;
            let (mean, rstd) = st[nc / g.cg()];
            let a = rstd * gamma[ch].to_f64();
            let (a, b) = (T::from_f64(a), T::from_f64(beta[ch].to_f64() - mean * a));
            yc.iter_mut().zip(xc).for_each(|(y, &x)| *y = x * a + b);
        });
    y
}

/// Fused backward, packed as `[dx (N·C·D·H·W), dγ (C), dβ (C)]`:
/// `dx = rstd·(gy·γ − mean(gy·γ) − x̂·mean(gy·γ·x̂))` over each block,
/// `dγ_c = Σ gy·x̂`, `dβ_c = Σ gy`. One pass per channel accumulates `Σ gy·x`
/// and `Σ gy`, from which every block and parameter sum follows; a second
/// pass writes dx (after the statistics pass).
fn backward<T: Elem>(g: &NormGeom, x: &[T], gamma: &[T], gy: &[T]) -> Vec<T> {
    let st = stats(g, x);
    let (blk, sp, cg, len) = (g.block().max(1), g.spatial.max(1), g.cg(), x.len());
    // per (sample, channel): (Σ gy·x, Σ gy)
    let sums: Vec<(f64, f64)> = x
        .par_chunks(sp)
        .zip(gy.par_chunks(sp))
        .map(|(xc, gc)| {
            xc.iter().zip(gc).fold((0.0, 0.0), |(a, b), (&xv, &gv)| {
                let gv = gv.to_f64();
                (a + gv * xv.to_f64(), b + gv)
            })
        })
        .collect();
    let mut out = vec![T::from_f64(0.0); len + 2 * g.c];
    let (dx, params) = out.split_at_mut(len);
    dx.par_chunks_mut(blk)
        .zip(x.par_chunks(blk))
        .zip(gy.par_chunks(blk))
        .enumerate()
        .for_each(|(ng, ((gxb, xb), gyb))| {
            let (mean, rstd) = st[ng];
            let c0 = (ng % g.groups) * cg;
            let first = (ng / g.groups) * g.c + c0;
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for ci in 0..cg {
                let (a, b) = sums[first + ci];
                let gm = gamma[c0 + ci].to_f64();
                s1 += gm * b;
                s2 += gm * rstd * (a - mean * b);
            }
            let m = blk as f64;
            let (m1, m2) = (s1 / m, s2 / m);
            for ci in 0..cg {
                // dx = rstd·γ·gy − rstd·m1 − rstd²·m2·(x − mean) = a·gy + b·x + c
                let a = T::from_f64(rstd * gamma[c0 + ci].to_f64());
                let b = T::from_f64(-rstd * rstd * m2);
                let c = T::from_f64(-rstd * m1 + mean * rstd * rstd * m2);
                let r = ci * sp..(ci + 1) * sp;
                for ((o, &xv), &gv) in gxb[r.clone()].iter_mut().zip(&xb[r.clone()]).zip(&gyb[r]) {
                    *o = a * gv + b * xv + c;
                }
            }
        });
    for ch in 0..g.c {
        let (mut dg, mut db) = (0.0, 0.0);
        for s in 0..g.n {
            let (a, b) = sums[s * g.c + ch];
            let (mean, rstd) = st[(s * g.c + ch) / cg];
            dg += rstd * (a - mean * b);
            db += b;
        }
        params[ch] = T::from_f64(dg);
        params[g.c + ch] = T::from_f64(db);
    }
    out
}

fn same_dtype(op: &'static str, a: &CpuStorage, b: &CpuStorage, c: &CpuStorage) -> Result<()> {
    if dtype_of(a) != dtype_of(b) || dtype_of(c) != dtype_of(a) {
        return Err(unsupported(op, "mixed dtypes"));
    }
    Ok(())
}

/// `(x, γ, β) → y`, with backward through [`NormBwdOp`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupNormOp {
    pub geom: NormGeom,
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "group_norm"
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
        same_dtype(self.name(), s1, s2, s3)?;
        let st = dispatch_float!(self.name(), s1, T => {
            let n = self.name();
            let (x, gamma, beta) = (contiguous::<T>(n, s1, l1)?, contiguous::<T>(n, s2, l2)?, contiguous::<T>(n, s3, l3)?);
            Ok(storage(forward(&self.geom, x, gamma, beta)))
        })?;
        Ok((st, self.geom.shape()))
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
        let st = crate::cuda::norm::forward(&self.geom, s1, l1, s2, l2, s3, l3)?;
        Ok((st, self.geom.shape()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let packed = x.apply_op3_no_bwd(gamma, &grad, &NormBwdOp { geom: self.geom })?;
        let (len, c) = (x.elem_count(), self.geom.c);
        let gx = packed.narrow(0, 0, len)?.reshape(self.geom.shape())?;
        Ok((
            Some(gx),
            Some(packed.narrow(0, len, c)?),
            Some(packed.narrow(0, len + c, c)?),
        ))
    }
}

/// `(x, γ, gy) → [dx, dγ, dβ]` packed in one 1-D tensor (see [`backward`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormBwdOp {
    pub geom: NormGeom,
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
        same_dtype(self.name(), s1, s2, s3)?;
        let st = dispatch_float!(self.name(), s1, T => {
            let n = self.name();
            let (x, gamma, gy) = (contiguous::<T>(n, s1, l1)?, contiguous::<T>(n, s2, l2)?, contiguous::<T>(n, s3, l3)?);
            Ok(storage(backward(&self.geom, x, gamma, gy)))
        })?;
        Ok((st, self.geom.packed_shape()))
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
        let st = crate::cuda::norm::backward(&self.geom, s1, l1, s2, l2, s3, l3)?;
        Ok((st, self.geom.packed_shape()))
    }
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
    const OP: &str = "group_norm";
    let dims = dims5(OP, "input x", x)?;
    let [n, c, d, h, w] = dims;
    if num_groups == 0 || c % num_groups != 0 {
        return Err(config_err(
            OP,
            format!("num_groups = {num_groups} must be ≥ 1 and divide the channels C = {c}"),
        ));
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(config_err(
            OP,
            format!("eps = {eps} must be finite and ≥ 0"),
        ));
    }
    let dt = compute_dtype(x);
    let param = |p: Option<&Tensor>, name: &str, fill: f64| -> Result<Tensor> {
        match p {
            Some(p) if p.dims() != [c] => Err(shape_err(
                OP,
                format!(
                    "{name} must have shape [{c}] (one value per channel), got {:?}",
                    p.dims()
                ),
            )),
            Some(p) => prepare(p, dt),
            None => Tensor::full(fill, c, x.device())?.to_dtype(dt),
        }
    };
    let (gamma, beta) = (param(gamma, "gamma", 1.0)?, param(beta, "beta", 0.0)?);
    let geom = NormGeom {
        n,
        c,
        groups: num_groups,
        spatial: d * h * w,
        eps,
        dims,
    };
    prepare(x, dt)?
        .apply_op3(&gamma, &beta, GroupNormOp { geom })?
        .to_dtype(x.dtype())
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
