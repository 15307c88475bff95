//! Group-norm kernels on CUDA: statistics with one block per (sample, group),
//! element-wise normalisation, and block reductions for the gradients.

use super::{blocks, device_repr, grid, input, launch};
use crate::norm::NormGeom;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{Layout, Result};

/// Mirror of `NormP` in kernels.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct NormP {
    spatial: i64,
    n: i32,
    c: i32,
    groups: i32,
    cg: i32,
    eps: f32,
}
device_repr!(NormP);

fn params(g: &NormGeom) -> NormP {
    NormP {
        spatial: g.spatial as i64,
        n: g.n as i32,
        c: g.c as i32,
        groups: g.groups as i32,
        cg: g.cg() as i32,
        eps: g.eps as f32,
    }
}

/// `[mean, rstd]` of every (sample, group).
fn stats(dev: &CudaDevice, g: &NormGeom, x: &CudaView<f32>) -> Result<CudaSlice<f32>> {
    let mut st = dev.alloc_zeros::<f32>(2 * g.n * g.groups)?;
    let p = params(g);
    launch!(dev, "gn_stats", blocks(g.n * g.groups); x, &mut st, &p);
    Ok(st)
}

fn len(g: &NormGeom) -> usize {
    g.n * g.c * g.spatial
}

/// `(x, γ, β) → y`.
pub(crate) fn forward(
    g: &NormGeom,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    const OP: &str = "group_norm";
    let dev = s1.device.clone();
    let (x, gamma, beta) = (
        input(OP, s1, l1, len(g))?,
        input(OP, s2, l2, g.c)?,
        input(OP, s3, l3, g.c)?,
    );
    let st = stats(&dev, g, &x)?;
    let mut y = dev.alloc_zeros::<f32>(len(g))?;
    let p = params(g);
    launch!(dev, "gn_fwd", grid(len(g)); &x, &gamma, &beta, &st, &mut y, &p);
    Ok(CudaStorage::wrap_cuda_slice(y, dev))
}

/// `(x, γ, gy) → [dx, dγ, dβ]` packed (as on the CPU).
pub(crate) fn backward(
    g: &NormGeom,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    const OP: &str = "group_norm-backward";
    let dev = s1.device.clone();
    let (x, gamma, gy) = (
        input(OP, s1, l1, len(g))?,
        input(OP, s2, l2, g.c)?,
        input(OP, s3, l3, len(g))?,
    );
    let st = stats(&dev, g, &x)?;
    let mut out = dev.alloc_zeros::<f32>(len(g) + 2 * g.c)?;
    let p = params(g);
    let param_off = len(g) as i64;
    launch!(dev, "gn_dx", blocks(g.n * g.groups); &x, &gamma, &gy, &st, &mut out, &p);
    launch!(dev, "gn_dparam", blocks(g.c); &x, &gy, &st, &mut out, &param_off, &p);
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}
