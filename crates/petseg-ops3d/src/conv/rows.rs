//! Faster convolution tiles for kernels wider than 1 along W: instead of an
//! im2col matrix with one row per tap `(ci, kz, ky, kx)`, build one
//! zero-padded copy of the input rows per `(ci, kz, ky)` and read the `kw`
//! taps as shifted views of it. Buffer rows are padded to a pitch `Wp`
//! (≥ `W + 2·pw`, a multiple of the W stride `sw`) and the output columns use
//! the pitch `Wp/sw` (the extra columns per row are computed and dropped), so
//! every shifted view has a uniform stride (`sw`) and feeds `gemm` directly:
//! `kw` gemms with `K = cg·kd·kh` replace one with `K = cg·kd·kh·kw`, and the
//! buffer to fill is `kw/sw` times smaller than an im2col matrix.

use super::cpu::{input_row, matmul};
use super::geom::ConvGeom;
use crate::elem::Elem;

/// True when the shifted-row tiles apply: a kernel wider than 1 along W
/// (1-wide kernels gain nothing from shifting).
pub(super) fn applies(g: &ConvGeom) -> bool {
    g.kernel[2] > 1
}

/// Sizes of the row buffer of a tile of output rows `[r0, r1)`.
struct RowLayout {
    /// Padded input row pitch: `W + 2·pw` rounded up to a multiple of `sw`.
    wp: usize,
    /// Output row pitch `wp / sw`.
    op: usize,
    /// W stride.
    sw: usize,
    /// Columns of the tile in output pitch, `rows·op`.
    cols: usize,
    /// Length of one `(ci, kz, ky)` block: `cols` plus slack for the widest shift.
    blk: usize,
    /// Number of blocks, `cg·kd·kh`.
    kk: usize,
}

impl RowLayout {
    fn new(g: &ConvGeom, r0: usize, r1: usize) -> Self {
        let sw = g.stride[2];
        let wp = (g.input[2] + 2 * g.padding[2]).div_ceil(sw) * sw;
        let op = wp / sw;
        let cols = (r1 - r0) * op;
        RowLayout {
            wp,
            op,
            sw,
            cols,
            blk: (r1 - r0) * wp + (g.kernel[2] - 1) * g.dilation[2],
            kk: g.cg() * g.kernel[0] * g.kernel[1],
        }
    }
}

/// Fills `buf [kk × blk]` with the zero-padded input rows of the group `xg`
/// read by output rows `[r0, r1)`.
fn fill_rows<T: Elem>(
    g: &ConvGeom,
    xg: &[T],
    r0: usize,
    r1: usize,
    lay: &RowLayout,
    buf: &mut Vec<T>,
) {
    let [kd, kh, _] = g.kernel;
    let (iw, pw, in_vol) = (g.input[2], g.padding[2], g.in_vol());
    buf.clear();
    buf.resize(lay.kk * lay.blk, T::from_f64(0.0));
    for ci in 0..g.cg() {
        let xc = &xg[ci * in_vol..(ci + 1) * in_vol];
        for kz in 0..kd {
            for ky in 0..kh {
                let block = &mut buf[((ci * kd + kz) * kh + ky) * lay.blk..][..lay.blk];
                for r in r0..r1 {
                    if let Some(irow) = input_row(g, r, kz, ky) {
                        block[(r - r0) * lay.wp + pw..][..iw]
                            .copy_from_slice(&xc[irow * iw..(irow + 1) * iw]);
                    }
                }
            }
        }
    }
}

/// Forward of one tile and group: `y_g[:, rows r0..r1] = Σ_kx W_g[:, ·, kx] · shift_kx(rows)`.
///
/// # Safety
/// `y_g` must point at the group's first output channel of this sample (row
/// stride `out_vol`), and no other thread may write rows `[r0, r1)` of it.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn fwd_tile<T: Elem>(
    g: &ConvGeom,
    xg: &[T],
    wg: &[T],
    r0: usize,
    r1: usize,
    buf: &mut Vec<T>,
    ytile: &mut Vec<T>,
    y_g: *mut T,
) {
    let lay = RowLayout::new(g, r0, r1);
    fill_rows(g, xg, r0, r1, &lay, buf);
    let (og, krows, kw, dw, wo) = (g.og(), g.krows(), g.kernel[2], g.dilation[2], g.output[2]);
    ytile.resize(og * lay.cols, T::from_f64(0.0));
    for kx in 0..kw {
        // SAFETY: lhs reads w_g[o·krows + kk·kw + kx] (kk < kk_count), rhs reads
        // buf[kk·blk + kx·dw + t·sw] with t·sw < rows·wp ≤ blk − kx·dw.
        unsafe {
            matmul(
                og,
                lay.cols,
                lay.kk,
                (ytile.as_mut_ptr(), 1, lay.cols as isize),
                kx > 0,
                (wg.as_ptr().add(kx), kw as isize, krows as isize),
                (buf.as_ptr().add(kx * dw), lay.sw as isize, lay.blk as isize),
            );
        }
    }
    let out_vol = g.out_vol();
    for o in 0..og {
        for r in r0..r1 {
            let src = &ytile[o * lay.cols + (r - r0) * lay.op..][..wo];
            // SAFETY: row r of channel o lies inside this group's output; exclusive per contract.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), y_g.add(o * out_vol + r * wo), wo)
            };
        }
    }
}

/// Weight gradient of one tile and group:
/// `acc_g[:, ·, kx] += gy_tile · shift_kx(rows)ᵀ` for every tap `kx`.
/// `gy_g` is the group's first output-gradient channel of this sample.
#[allow(clippy::too_many_arguments)]
pub(super) fn wgrad_tile<T: Elem>(
    g: &ConvGeom,
    xg: &[T],
    gy_g: &[T],
    r0: usize,
    r1: usize,
    buf: &mut Vec<T>,
    gytile: &mut Vec<T>,
    acc_g: &mut [T],
) {
    let lay = RowLayout::new(g, r0, r1);
    fill_rows(g, xg, r0, r1, &lay, buf);
    let (og, krows, kw, dw, wo, out_vol) = (
        g.og(),
        g.krows(),
        g.kernel[2],
        g.dilation[2],
        g.output[2],
        g.out_vol(),
    );
    // gy in padded pitch, zeros in the dropped columns so they contribute nothing
    gytile.clear();
    gytile.resize(og * lay.cols, T::from_f64(0.0));
    for o in 0..og {
        for r in r0..r1 {
            gytile[o * lay.cols + (r - r0) * lay.op..][..wo]
                .copy_from_slice(&gy_g[o * out_vol + r * wo..][..wo]);
        }
    }
    assert!(acc_g.len() >= og * krows);
    for kx in 0..kw {
        // SAFETY: dst acc_g[o·krows + kk·kw + kx] is in bounds (checked above);
        // lhs is og × cols; rhs reads buf[kk·blk + kx·dw + t·sw], t·sw < rows·wp.
        unsafe {
            matmul(
                og,
                lay.kk,
                lay.cols,
                (acc_g.as_mut_ptr().add(kx), kw as isize, krows as isize),
                true,
                (gytile.as_ptr(), 1, lay.cols as isize),
                (buf.as_ptr().add(kx * dw), lay.blk as isize, lay.sw as isize),
            );
        }
    }
}
