//! Fused `group_norm` / `instance_norm` over 5-D tensors with autograd.
//!
//! candle-nn's GroupNorm is composed of ~10 generic ops and keeps every
//! intermediate for the backward: 2.9 s forward+backward at [1,16,128³] on the
//! development VM (../shared/notes/candle-3d.md §4). Here the forward is one
//! statistics pass plus one normalisation pass per group, and the backward two
//! passes, with statistics accumulated in f64.

use crate::elem::{
    compute_dtype, contiguous, dims5, dispatch_float, dtype_of, prepare, storage, Elem,
};
use crate::error::{config_err, shape_err, unsupported};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
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
}

/// Mean and 1/sqrt(var + eps) (biased variance) of every (sample, group) block.
fn stats<T: Elem>(g: &NormGeom, x: &[T]) -> Vec<(f64, f64)> {
    x.par_chunks(g.block().max(1))
        .map(|b| {
            let m = b.len().max(1) as f64;
            let mean = b.iter().map(|v| v.to_f64()).sum::<f64>() / m;
            let var = b.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / m;
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

/// `dx = rstd·(gy·γ − mean(gy·γ) − x̂·mean(gy·γ·x̂))` over each block.
fn input_grad<T: Elem>(g: &NormGeom, x: &[T], gamma: &[T], gy: &[T]) -> Vec<T> {
    let st = stats(g, x);
    let mut gx = vec![T::from_f64(0.0); x.len()];
    let (blk, sp, cg) = (g.block().max(1), g.spatial, g.cg());
    gx.par_chunks_mut(blk)
        .zip(x.par_chunks(blk))
        .zip(gy.par_chunks(blk))
        .enumerate()
        .for_each(|(ng, ((gxb, xb), gyb))| {
            let (mean, rstd) = st[ng];
            let grp = ng % g.groups;
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for ci in 0..cg {
                let gm = gamma[grp * cg + ci].to_f64();
                for (&xv, &gv) in xb[ci * sp..(ci + 1) * sp]
                    .iter()
                    .zip(&gyb[ci * sp..(ci + 1) * sp])
                {
                    let dyh = gv.to_f64() * gm;
                    s1 += dyh;
                    s2 += dyh * (xv.to_f64() - mean) * rstd;
                }
            }
            let m = blk as f64;
            let (m1, m2) = (s1 / m, s2 / m);
            for ci in 0..cg {
                let gm = gamma[grp * cg + ci].to_f64();
                let r = ci * sp..(ci + 1) * sp;
                for ((o, &xv), &gv) in gxb[r.clone()].iter_mut().zip(&xb[r.clone()]).zip(&gyb[r]) {
                    let xh = (xv.to_f64() - mean) * rstd;
                    *o = T::from_f64(rstd * (gv.to_f64() * gm - m1 - xh * m2));
                }
            }
        });
    gx
}

/// `[dγ; dβ]` as a `[2, C]` buffer: `dγ_c = Σ gy·x̂`, `dβ_c = Σ gy`.
fn param_grad<T: Elem>(g: &NormGeom, x: &[T], gy: &[T]) -> Vec<T> {
    let st = stats(g, x);
    let sp = g.spatial.max(1);
    let per_nc: Vec<(f64, f64)> = x
        .par_chunks(sp)
        .zip(gy.par_chunks(sp))
        .enumerate()
        .map(|(nc, (xc, gc))| {
            let (mean, rstd) = st[nc / g.cg()];
            xc.iter().zip(gc).fold((0.0, 0.0), |(a, b), (&xv, &gv)| {
                let gv = gv.to_f64();
                (a + gv * (xv.to_f64() - mean) * rstd, b + gv)
            })
        })
        .collect();
    let mut out = vec![T::from_f64(0.0); 2 * g.c];
    for ch in 0..g.c {
        let (dg, db) = (0..g.n).fold((0.0, 0.0), |(a, b), s| {
            (a + per_nc[s * g.c + ch].0, b + per_nc[s * g.c + ch].1)
        });
        out[ch] = T::from_f64(dg);
        out[g.c + ch] = T::from_f64(db);
    }
    out
}

fn same_dtype(
    op: &'static str,
    a: &CpuStorage,
    b: &CpuStorage,
    c: Option<&CpuStorage>,
) -> Result<()> {
    if dtype_of(a) != dtype_of(b) || c.is_some_and(|c| dtype_of(c) != dtype_of(a)) {
        return Err(unsupported(op, "mixed dtypes"));
    }
    Ok(())
}

/// `(x, γ, β) → y`, with backward through [`NormInputGradOp`] and [`NormParamGradOp`].
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
        same_dtype(self.name(), s1, s2, Some(s3))?;
        let st = dispatch_float!(self.name(), s1, T => {
            let n = self.name();
            Ok(storage(forward(&self.geom, contiguous::<T>(n, s1, l1)?, contiguous::<T>(n, s2, l2)?, contiguous::<T>(n, s3, l3)?)))
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
        let gx = x.apply_op3_no_bwd(gamma, &grad, &NormInputGradOp { geom: self.geom })?;
        let gp = x.apply_op2_no_bwd(&grad, &NormParamGradOp { geom: self.geom })?;
        Ok((Some(gx), Some(gp.get(0)?), Some(gp.get(1)?)))
    }
}

/// `(x, γ, gy) → gx`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormInputGradOp {
    pub geom: NormGeom,
}

impl CustomOp3 for NormInputGradOp {
    fn name(&self) -> &'static str {
        "group_norm-input-grad"
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
        same_dtype(self.name(), s1, s2, Some(s3))?;
        let st = dispatch_float!(self.name(), s1, T => {
            let n = self.name();
            Ok(storage(input_grad(&self.geom, contiguous::<T>(n, s1, l1)?, contiguous::<T>(n, s2, l2)?, contiguous::<T>(n, s3, l3)?)))
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
        let st = crate::cuda::norm::input_grad(&self.geom, s1, l1, s2, l2, s3, l3)?;
        Ok((st, self.geom.shape()))
    }
}

/// `(x, gy) → [dγ; dβ]` of shape `[2, C]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormParamGradOp {
    pub geom: NormGeom,
}

impl CustomOp2 for NormParamGradOp {
    fn name(&self) -> &'static str {
        "group_norm-param-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_dtype(self.name(), s1, s2, None)?;
        let st = dispatch_float!(self.name(), s1, T => {
            let n = self.name();
            Ok(storage(param_grad(&self.geom, contiguous::<T>(n, s1, l1)?, contiguous::<T>(n, s2, l2)?)))
        })?;
        Ok((st, Shape::from((2, self.geom.c))))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let st = crate::cuda::norm::param_grad(&self.geom, s1, l1, s2, l2)?;
        Ok((st, Shape::from((2, self.geom.c))))
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
