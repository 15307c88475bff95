//! Convolution kernels on CUDA: im2col / col2im (kernels.cu) + cuBLAS sgemm,
//! tile by tile so that the column buffer stays below [`COL_BUDGET_BYTES`].

use super::{device_repr, grid, input, launch};
use crate::conv::geom::ConvGeom;
use crate::conv::ConvKind;
use candle_core::cuda_backend::cudarc::cublas::{
    sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig,
};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, CudaViewMut};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{Layout, Result};

/// Largest im2col tile on the GPU.
const COL_BUDGET_BYTES: usize = 256 << 20;

/// Mirror of `ConvP` in kernels.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ConvP {
    p0: i64,
    cols: i64,
    z0: i64,
    nz: i64,
    cg: i32,
    krows: i32,
    dims: [i32; 18], // id ih iw kd kh kw sd sh sw pd ph pw dd dh dw od oh ow
}
device_repr!(ConvP);

impl ConvP {
    fn new(g: &ConvGeom, p0: usize, cols: usize) -> Self {
        let mut dims = [0i32; 18];
        let parts = [g.input, g.kernel, g.stride, g.padding, g.dilation, g.output];
        for (i, v) in parts.iter().flatten().enumerate() {
            dims[i] = *v as i32;
        }
        ConvP {
            p0: p0 as i64,
            cols: cols as i64,
            z0: 0,
            nz: 0,
            cg: g.cg() as i32,
            krows: g.krows() as i32,
            dims,
        }
    }
}

/// Row-major `C[m×n] = op(A)·op(B) + beta·C` (op = transpose when the flag is
/// set; `lda`, `ldb`, `ldc` are row strides) on cuBLAS's column-major API.
#[allow(clippy::too_many_arguments)]
fn gemm_rm(
    blas: &CudaBlas,
    (m, n, k): (usize, usize, usize),
    a: &CudaView<f32>,
    lda: usize,
    ta: bool,
    b: &CudaView<f32>,
    ldb: usize,
    tb: bool,
    c: &mut CudaViewMut<f32>,
    ldc: usize,
    beta: f32,
) -> Result<()> {
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    let cfg = GemmConfig {
        transa: op(tb),
        transb: op(ta),
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: ldb as i32,
        ldb: lda as i32,
        beta,
        ldc: ldc as i32,
    };
    // SAFETY: the callers pass views that hold the strided matrices.
    unsafe { blas.gemm(cfg, b, a, c) }.w()
}

/// Output columns per tile.
fn tile_cols(g: &ConvGeom) -> usize {
    (COL_BUDGET_BYTES / (4 * g.krows().max(1))).clamp(1, g.out_vol().max(1))
}

fn im2col(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &CudaView<f32>,
    x_off: usize,
    col: &mut CudaSlice<f32>,
    p: ConvP,
) -> Result<()> {
    let off = x_off as i64;
    launch!(dev, "im2col3d", grid(g.krows() * p.cols as usize); x, &off, col, &p);
    Ok(())
}

fn forward(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &CudaView<f32>,
    w: &CudaView<f32>,
) -> Result<CudaSlice<f32>> {
    let mut y = dev.alloc_zeros::<f32>(g.y_len())?;
    let blas = dev.cublas_handle();
    let (in_vol, out_vol, krows, cg, og, tile) = (
        g.in_vol(),
        g.out_vol(),
        g.krows(),
        g.cg(),
        g.og(),
        tile_cols(g),
    );
    let mut col = dev.alloc_zeros::<f32>(if g.is_pointwise() { 1 } else { krows * tile })?;
    for b in 0..g.n {
        for p0 in (0..out_vol).step_by(tile) {
            let cols = tile.min(out_vol - p0);
            for grp in 0..g.groups {
                let x_off = (b * g.c + grp * cg) * in_vol;
                let mut dst = y.slice_mut((b * g.o + grp * og) * out_vol + p0..);
                let wg = w.slice(grp * og * krows..);
                if g.is_pointwise() {
                    gemm_rm(
                        &blas,
                        (og, cols, krows),
                        &wg,
                        krows,
                        false,
                        &x.slice(x_off + p0..),
                        in_vol,
                        false,
                        &mut dst,
                        out_vol,
                        0.0,
                    )?;
                } else {
                    im2col(dev, g, x, x_off, &mut col, ConvP::new(g, p0, cols))?;
                    gemm_rm(
                        &blas,
                        (og, cols, krows),
                        &wg,
                        krows,
                        false,
                        &col.slice(..),
                        cols,
                        false,
                        &mut dst,
                        out_vol,
                        0.0,
                    )?;
                }
            }
        }
    }
    Ok(y)
}

fn dgrad(
    dev: &CudaDevice,
    g: &ConvGeom,
    gy: &CudaView<f32>,
    w: &CudaView<f32>,
) -> Result<CudaSlice<f32>> {
    let mut gx = dev.alloc_zeros::<f32>(g.x_len())?;
    let blas = dev.cublas_handle();
    let (in_vol, out_vol, krows, cg, og, tile) = (
        g.in_vol(),
        g.out_vol(),
        g.krows(),
        g.cg(),
        g.og(),
        tile_cols(g),
    );
    let mut col = dev.alloc_zeros::<f32>(if g.is_pointwise() { 1 } else { krows * tile })?;
    let plane_out = g.output[1] * g.output[2];
    for b in 0..g.n {
        for p0 in (0..out_vol).step_by(tile) {
            let cols = tile.min(out_vol - p0);
            for grp in 0..g.groups {
                let gx_off = (b * g.c + grp * cg) * in_vol;
                let wg = w.slice(grp * og * krows..);
                let gyt = gy.slice((b * g.o + grp * og) * out_vol + p0..);
                if g.is_pointwise() {
                    let mut dst = gx.slice_mut(gx_off + p0..);
                    gemm_rm(
                        &blas,
                        (cg, cols, og),
                        &wg,
                        krows,
                        true,
                        &gyt,
                        out_vol,
                        false,
                        &mut dst,
                        in_vol,
                        0.0,
                    )?;
                    continue;
                }
                gemm_rm(
                    &blas,
                    (krows, cols, og),
                    &wg,
                    krows,
                    true,
                    &gyt,
                    out_vol,
                    false,
                    &mut col.slice_mut(..),
                    cols,
                    0.0,
                )?;
                // input planes read by output planes [oz0, oz1]
                let (oz0, oz1) = (p0 / plane_out, (p0 + cols - 1) / plane_out);
                let z0 = (oz0 * g.stride[0]).saturating_sub(g.padding[0]);
                let z1 = (oz1 * g.stride[0] + (g.kernel[0] - 1) * g.dilation[0] + 1)
                    .saturating_sub(g.padding[0])
                    .min(g.input[0]);
                if z1 <= z0 {
                    continue;
                }
                let mut p = ConvP::new(g, p0, cols);
                p.z0 = z0 as i64;
                p.nz = (z1 - z0) as i64;
                let off = gx_off as i64;
                launch!(dev, "col2im3d", grid(cg * (z1 - z0) * g.input[1] * g.input[2]); &col, &mut gx, &off, &p);
            }
        }
    }
    Ok(gx)
}

fn wgrad(
    dev: &CudaDevice,
    g: &ConvGeom,
    x: &CudaView<f32>,
    gy: &CudaView<f32>,
) -> Result<CudaSlice<f32>> {
    let mut gw = dev.alloc_zeros::<f32>(g.w_len())?;
    let blas = dev.cublas_handle();
    let (in_vol, out_vol, krows, cg, og, tile) = (
        g.in_vol(),
        g.out_vol(),
        g.krows(),
        g.cg(),
        g.og(),
        tile_cols(g),
    );
    let mut col = dev.alloc_zeros::<f32>(if g.is_pointwise() { 1 } else { krows * tile })?;
    for b in 0..g.n {
        for p0 in (0..out_vol).step_by(tile) {
            let cols = tile.min(out_vol - p0);
            for grp in 0..g.groups {
                let x_off = (b * g.c + grp * cg) * in_vol;
                let gyt = gy.slice((b * g.o + grp * og) * out_vol + p0..);
                let mut dst = gw.slice_mut(grp * og * krows..);
                if g.is_pointwise() {
                    gemm_rm(
                        &blas,
                        (og, krows, cols),
                        &gyt,
                        out_vol,
                        false,
                        &x.slice(x_off + p0..),
                        in_vol,
                        true,
                        &mut dst,
                        krows,
                        1.0,
                    )?;
                } else {
                    im2col(dev, g, x, x_off, &mut col, ConvP::new(g, p0, cols))?;
                    gemm_rm(
                        &blas,
                        (og, krows, cols),
                        &gyt,
                        out_vol,
                        false,
                        &col.slice(..),
                        cols,
                        true,
                        &mut dst,
                        krows,
                        1.0,
                    )?;
                }
            }
        }
    }
    Ok(gw)
}

/// Runs the kernel of `kind` on two f32 CUDA inputs holding `la` and `lb`
/// elements (see [`ConvKind`] for their meaning).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    op: &'static str,
    kind: ConvKind,
    g: &ConvGeom,
    s1: &CudaStorage,
    l1: &Layout,
    la: usize,
    s2: &CudaStorage,
    l2: &Layout,
    lb: usize,
) -> Result<CudaStorage> {
    let dev = s1.device.clone();
    let (a, b) = (input(op, s1, l1, la)?, input(op, s2, l2, lb)?);
    let out = match kind {
        ConvKind::Conv => forward(&dev, g, &a, &b)?,
        ConvKind::InputGrad | ConvKind::Transposed => dgrad(&dev, g, &a, &b)?,
        ConvKind::WeightGrad => wgrad(&dev, g, &a, &b)?,
    };
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}
