//! CPU kernels of the convolution family (forward, input gradient, weight
//! gradient): the dispatch between the direct SIMD kernels ([`direct`],
//! [`subpixel`]), Winograd (`winograd`), the 1×1×1 kernel (`pointwise`) and
//! the im2col/shifted-row + `gemm` kernels written here (single-threaded
//! `gemm` inside each tile; rayon across tiles), plus the tiling and the
//! ordered weight-gradient reduction the direct and gemm kernels share.
//!
//! Memory: each rayon task owns one buffer of at most [`COL_BUDGET_BYTES`]
//! (gemm) or [`direct::BUF_BUDGET_BYTES`] (direct; Winograd's are bounded in
//! its module); nothing proportional to the volume is allocated apart from
//! the result itself and the once-padded input of stride-1 convolutions.

use super::direct;
use super::geom::ConvGeom;
use super::out_map::OutMap;
#[cfg(target_arch = "x86_64")]
use super::pointwise;
use super::rows;
use super::subpixel;
use crate::elem::{written_vec, Elem, SharedMut};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;
use std::any::{Any, TypeId};

/// Upper bound of one im2col tile (rows `krows` × columns) in bytes: large
/// enough for efficient gemm panels, small enough to stay in L2/L3.
const COL_BUDGET_BYTES: usize = 1 << 20;

/// How the `do·ho` output rows (each `wo` voxels long) are cut into tiles.
#[derive(Clone, Copy, Debug)]
struct TilePlan {
    rows: usize,
    rows_per_tile: usize,
    /// `Some(oh)` when tiles must not cross depth planes (of `oh` rows each).
    plane: Option<usize>,
}

impl TilePlan {
    /// Tiles whose buffer (`row_bytes` per output row) stays within `budget`
    /// bytes, at least `min_tiles` of them when there are enough rows.
    fn new(g: &ConvGeom, row_bytes: usize, budget: usize, min_tiles: usize) -> Self {
        let rows = g.output[0] * g.output[1];
        let by_budget = (budget / row_bytes.max(1)).max(1);
        // keep enough tiles so that every thread has work
        let by_parallelism = rows.div_ceil(min_tiles.max(1)).max(1);
        TilePlan {
            rows,
            rows_per_tile: by_budget.min(by_parallelism),
            plane: None,
        }
    }
    /// The same plan with tiles cut at depth-plane boundaries (for the direct
    /// kernels' shared-row buffers), balanced within each plane.
    fn within_planes(self, g: &ConvGeom) -> Self {
        let oh = g.output[1];
        let per_plane = oh.div_ceil(self.rows_per_tile.min(oh));
        TilePlan {
            rows_per_tile: oh.div_ceil(per_plane),
            plane: Some(oh),
            ..self
        }
    }
    /// The plan of the direct kernels (buffer ≤ [`direct::BUF_BUDGET_BYTES`]).
    fn direct(g: &ConvGeom, min_tiles: usize) -> Self {
        Self::new(g, direct::row_bytes(g), direct::BUF_BUDGET_BYTES, min_tiles).within_planes(g)
    }
    /// The plan of the im2col + `gemm` kernels (column buffer ≤ [`COL_BUDGET_BYTES`]).
    fn gemm(g: &ConvGeom, elem_bytes: usize, min_tiles: usize) -> Self {
        let row_bytes = g.krows() * g.output[2] * elem_bytes;
        Self::new(g, row_bytes, COL_BUDGET_BYTES, min_tiles)
    }
    fn count(&self) -> usize {
        match self.plane {
            None => self.rows.div_ceil(self.rows_per_tile),
            Some(oh) => self.rows / oh * oh.div_ceil(self.rows_per_tile),
        }
    }
    /// Output rows `[r0, r1)` of tile `i`.
    fn tile(&self, i: usize) -> (usize, usize) {
        match self.plane {
            None => {
                let r0 = i * self.rows_per_tile;
                (r0, (r0 + self.rows_per_tile).min(self.rows))
            }
            Some(oh) => {
                let per_plane = oh.div_ceil(self.rows_per_tile);
                let (p, j) = (i / per_plane, i % per_plane);
                let r0 = p * oh + j * self.rows_per_tile;
                (r0, (r0 + self.rows_per_tile).min((p + 1) * oh))
            }
        }
    }
    /// Every (sample, tile) pair, sample-major.
    fn tasks(&self, n: usize) -> Vec<(usize, usize)> {
        (0..n)
            .flat_map(|b| (0..self.count()).map(move |t| (b, t)))
            .collect()
    }
}

/// Tiles each batch item is cut into, aiming at a few tasks per thread.
fn min_tiles_per_item(g: &ConvGeom) -> usize {
    (4 * rayon::current_num_threads()).div_ceil(g.n.max(1))
}

/// Valid output-column range `[lo, hi)` along W for each kernel tap `kx`:
/// those `ow` whose input column `ow·sw + kx·dw − pw` lies inside `[0, iw)`.
fn w_ranges(g: &ConvGeom) -> Vec<(usize, usize)> {
    let (iw, ow, sw, pw, dw) = (
        g.input[2],
        g.output[2],
        g.stride[2],
        g.padding[2],
        g.dilation[2],
    );
    (0..g.kernel[2])
        .map(|kx| {
            let off = (kx * dw) as isize - pw as isize;
            let lo = if off >= 0 {
                0
            } else {
                ((-off) as usize).div_ceil(sw)
            };
            let last = iw as isize - 1 - off;
            let hi = if last < 0 {
                0
            } else {
                ow.min(last as usize / sw + 1)
            };
            (lo.min(hi), hi)
        })
        .collect()
}

/// Input row index `(iz, iy)` read by output row `r` at taps `(kz, ky)`, or
/// `None` if it falls into the padding.
#[inline]
pub(super) fn input_row(g: &ConvGeom, r: usize, kz: usize, ky: usize) -> Option<usize> {
    let oh_n = g.output[1];
    let (od, oh) = (r / oh_n, r % oh_n);
    let iz = (od * g.stride[0] + kz * g.dilation[0]) as isize - g.padding[0] as isize;
    let iy = (oh * g.stride[1] + ky * g.dilation[1]) as isize - g.padding[1] as isize;
    let (id, ih) = (g.input[0] as isize, g.input[1] as isize);
    (iz >= 0 && iz < id && iy >= 0 && iy < ih).then(|| (iz * ih + iy) as usize)
}

/// Fills `col [krows, (r1−r0)·wo]` (row = (ci, kz, ky, kx), column = output
/// voxel) from the channels of one group, `xg [cg, in_vol]`.
fn im2col<T: Elem>(
    g: &ConvGeom,
    xg: &[T],
    r0: usize,
    r1: usize,
    wr: &[(usize, usize)],
    col: &mut [T],
) {
    let zero = T::from_f64(0.0);
    let [kd, kh, kw] = g.kernel;
    let (iw, wo, sw) = (g.input[2], g.output[2], g.stride[2]);
    let t = (r1 - r0) * wo;
    let in_vol = g.in_vol();
    for ci in 0..g.cg() {
        let xc = &xg[ci * in_vol..(ci + 1) * in_vol];
        for kz in 0..kd {
            for ky in 0..kh {
                for (kx, &(lo, hi)) in wr.iter().enumerate() {
                    let row = ((ci * kd + kz) * kh + ky) * kw + kx;
                    let dst = &mut col[row * t..(row + 1) * t];
                    let off = (kx * g.dilation[2]) as isize - g.padding[2] as isize;
                    for r in r0..r1 {
                        let drow = &mut dst[(r - r0) * wo..(r - r0 + 1) * wo];
                        let Some(irow) = input_row(g, r, kz, ky) else {
                            drow.fill(zero);
                            continue;
                        };
                        let xrow = &xc[irow * iw..(irow + 1) * iw];
                        drow[..lo].fill(zero);
                        drow[hi..].fill(zero);
                        if hi > lo {
                            let s0 = (lo as isize * sw as isize + off) as usize;
                            if sw == 1 {
                                drow[lo..hi].copy_from_slice(&xrow[s0..s0 + hi - lo]);
                            } else {
                                for (j, d) in drow[lo..hi].iter_mut().enumerate() {
                                    *d = xrow[s0 + j * sw];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adjoint of [`im2col`]: adds `col` into the channels of one group starting
/// at `gxg`.
///
/// # Safety
/// `gxg` must point to `cg·in_vol` writable elements, and no other thread may
/// touch the input rows read by output rows `[r0, r1)` at the same time.
unsafe fn col2im<T: Elem>(
    g: &ConvGeom,
    col: &[T],
    r0: usize,
    r1: usize,
    wr: &[(usize, usize)],
    gxg: *mut T,
) {
    let [kd, kh, kw] = g.kernel;
    let (iw, wo, sw) = (g.input[2], g.output[2], g.stride[2]);
    let t = (r1 - r0) * wo;
    let in_vol = g.in_vol();
    for ci in 0..g.cg() {
        for kz in 0..kd {
            for ky in 0..kh {
                for (kx, &(lo, hi)) in wr.iter().enumerate() {
                    if hi <= lo {
                        continue;
                    }
                    let row = ((ci * kd + kz) * kh + ky) * kw + kx;
                    let src = &col[row * t..(row + 1) * t];
                    let off = (kx * g.dilation[2]) as isize - g.padding[2] as isize;
                    for r in r0..r1 {
                        let Some(irow) = input_row(g, r, kz, ky) else {
                            continue;
                        };
                        let srow = &src[(r - r0) * wo + lo..(r - r0) * wo + hi];
                        let s0 = (lo as isize * sw as isize + off) as usize;
                        // SAFETY: in bounds of channel ci (irow < id·ih, s0 + j·sw < iw);
                        // exclusive per the function contract.
                        unsafe {
                            let base = gxg.add(ci * in_vol + irow * iw + s0);
                            for (j, &v) in srow.iter().enumerate() {
                                *base.add(j * sw) += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` with explicit (column, row) strides,
/// single-threaded (we parallelise across tiles).
///
/// # Safety
/// All pointers must be valid for the given shapes and strides.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut T, isize, isize),
    accumulate: bool,
    lhs: (*const T, isize, isize),
    rhs: (*const T, isize, isize),
) {
    let (zero, one) = (T::from_f64(0.0), T::from_f64(1.0));
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            accumulate,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            if accumulate { one } else { zero },
            one,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Forward convolution: `y [n, o, out]` from `x [n, c, in]` and `w [o, cg, k]`.
/// f32 runs the direct SIMD kernels where the CPU has them (see
/// [`direct`]; with AVX-512 also Winograd and the 1×1×1 kernel,
/// `pointwise`); everything else the im2col/shifted-row + `gemm` kernels.
pub(crate) fn conv_fwd<T: Elem>(g: &ConvGeom, x: &[T], w: &[T]) -> Vec<T> {
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(x), Some(w)) = (pointwise::applies(direct::isa(), g), as_f32(x), as_f32(w)) {
        return from_f32(pointwise::fwd(g, x, w));
    }
    if let (Some(isa), Some(x), Some(w)) = (fast_isa(g), as_f32(x), as_f32(w)) {
        #[cfg(target_arch = "x86_64")]
        if super::winograd::applies(isa, g) {
            return from_f32(super::winograd::fwd(
                g,
                x,
                super::winograd::Weights::Plain(w),
            ));
        }
        return from_f32(direct_fwd(isa, g, x, w));
    }
    gemm_fwd(g, x, w)
}

/// The SIMD instruction set for the direct kernels of `g`, or `None` to use
/// the `gemm` kernels (1×1×1 convolutions without stride and padding are a
/// plain matrix product; `PETSEG_OPS3D_CONV=gemm` forces them everywhere, for
/// benchmarks).
fn fast_isa(g: &ConvGeom) -> Option<direct::Isa> {
    if g.is_pointwise() || direct::forced_gemm() {
        return None;
    }
    direct::isa()
}

/// `s` as an f32 slice when `T` is f32.
fn as_f32<T: Elem>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: T and f32 are the same type when their TypeIds match.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) })
}

/// An f32 result as `Vec<T>`; only called when `T` is f32 (see [`as_f32`]).
fn from_f32<T: Elem>(v: Vec<f32>) -> Vec<T> {
    let any: Box<dyn Any> = Box::new(v);
    *any.downcast::<Vec<T>>()
        .expect("from_f32 is only called with T = f32")
}

/// Direct SIMD forward (f32): rayon over (sample, tile of output rows).
pub(super) fn direct_fwd(isa: direct::Isa, g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let padded = direct::Padded::applies(g).then(|| direct::Padded::new(g, x, isa.widest_block()));
    direct_fwd_on(isa, g, x, padded.as_ref(), w)
}

/// [`direct_fwd`] reading `x` through `padded` when given (a copy of `x`
/// padded for `g`, possibly shared with other geometries), else through
/// per-tile copies.
pub(super) fn direct_fwd_on(
    isa: direct::Isa,
    g: &ConvGeom,
    x: &[f32],
    padded: Option<&direct::Padded>,
    w: &[f32],
) -> Vec<f32> {
    let compute = |y: &mut [std::mem::MaybeUninit<f32>]| {
        let yp = SharedMut(y.as_mut_ptr().cast::<f32>());
        // SAFETY: y is the dense output of g.
        unsafe { direct_fwd_into(isa, g, x, padded, w, yp, &OutMap::dense(g)) };
    };
    // SAFETY: the tiles cover every output row of every sample, and fwd_tile
    // writes all `wo` columns of each of its rows for every channel of the group.
    unsafe { written_vec(g.y_len(), compute) }
}

/// The direct SIMD forward of `g` (f32), rayon over (sample, tile of output
/// rows), written into `y` where `out` places each output row: channel
/// `b·o + grp·og + oi` starts at `y + (b·o + grp·og + oi)·out.chan`.
///
/// # Safety
/// `y` must be valid for writes of every voxel `out` places, and no other
/// thread may write them during the call.
pub(super) unsafe fn direct_fwd_into(
    isa: direct::Isa,
    g: &ConvGeom,
    x: &[f32],
    padded: Option<&direct::Padded>,
    w: &[f32],
    y: SharedMut<f32>,
    out: &OutMap,
) {
    let plan = TilePlan::direct(g, min_tiles_per_item(g));
    let (krows, og) = (g.krows(), g.og());
    let packed: Vec<Vec<f32>> = (0..g.groups)
        .map(|grp| direct::pack_weights(isa, g, &w[grp * og * krows..][..og * krows]))
        .collect();
    plan.tasks(g.n).par_iter().for_each_init(
        direct::Scratch::default,
        |s: &mut direct::Scratch, &(b, ti)| {
            let (r0, r1) = plan.tile(ti);
            for (grp, wpk) in packed.iter().enumerate() {
                let input = tile_input(g, x, padded, b, grp);
                // SAFETY: tile (b, ti) writes only rows [r0, r1) of its
                // sample's output, which the caller vouches for.
                unsafe {
                    let y_g = y.ptr().add((b * g.o + grp * og) * out.chan);
                    direct::fwd_tile(isa, g, input, wpk, r0, r1, s, y_g, out);
                }
            }
        },
    );
}

/// The input of sample `b`, group `grp` for the direct kernels: the
/// once-padded copy when there is one, else the raw channels (copied per tile).
fn tile_input<'a>(
    g: &ConvGeom,
    x: &'a [f32],
    padded: Option<&'a direct::Padded>,
    b: usize,
    grp: usize,
) -> direct::TileInput<'a> {
    let first_channel = b * g.c + grp * g.cg();
    match padded {
        Some(p) => direct::TileInput::Padded(p, first_channel),
        None => direct::TileInput::Rows(&x[first_channel * g.in_vol()..][..g.cg() * g.in_vol()]),
    }
}

/// Forward convolution with the im2col/shifted-row + `gemm` kernels (any
/// element type; the reference of the direct kernels).
pub(super) fn gemm_fwd<T: Elem>(g: &ConvGeom, x: &[T], w: &[T]) -> Vec<T> {
    let plan = TilePlan::gemm(g, std::mem::size_of::<T>(), min_tiles_per_item(g));
    let wr = w_ranges(g);
    let (in_vol, out_vol, krows, cg, og, wo) = (
        g.in_vol(),
        g.out_vol(),
        g.krows(),
        g.cg(),
        g.og(),
        g.output[2],
    );
    let compute = |y: &mut [std::mem::MaybeUninit<T>]| {
        let yp = SharedMut(y.as_mut_ptr().cast::<T>());
        plan.tasks(g.n).par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |(col, ytile): &mut (Vec<T>, Vec<T>), &(b, ti)| {
                let (r0, r1) = plan.tile(ti);
                let (p0, cols) = (r0 * wo, (r1 - r0) * wo);
                for grp in 0..g.groups {
                    let xg = &x[(b * g.c + grp * cg) * in_vol..][..cg * in_vol];
                    if rows::applies(g) {
                        // SAFETY: tile (b, ti) writes only rows [r0, r1) of its sample's output.
                        unsafe {
                            let y_g = yp.ptr().add((b * g.o + grp * og) * out_vol);
                            rows::fwd_tile(
                                g,
                                xg,
                                &w[grp * og * krows..][..og * krows],
                                r0,
                                r1,
                                col,
                                ytile,
                                y_g,
                            );
                        }
                        continue;
                    }
                    let rhs = if g.is_pointwise() {
                        (xg[p0..].as_ptr(), 1, in_vol as isize)
                    } else {
                        col.resize(krows * cols, T::from_f64(0.0));
                        im2col(g, xg, r0, r1, &wr, col);
                        (col.as_ptr(), 1, cols as isize)
                    };
                    // SAFETY: tile (b, ti) writes columns [p0, p0+cols) of its own rows
                    // of y; tiles are disjoint.
                    unsafe {
                        let dst = yp.ptr().add((b * g.o + grp * og) * out_vol + p0);
                        matmul(
                            og,
                            cols,
                            krows,
                            (dst, 1, out_vol as isize),
                            false,
                            (w[grp * og * krows..].as_ptr(), 1, krows as isize),
                            rhs,
                        );
                    }
                }
            },
        );
    };
    // SAFETY: the tiles cover every output row of every sample and group;
    // rows::fwd_tile copies all `wo` columns of its rows and `matmul` (not
    // accumulating) writes every column of its tile, for all `og` channels.
    unsafe { written_vec(g.y_len(), compute) }
}

/// Input gradient (also the transposed-convolution forward):
/// `gx [n, c, in]` from `gy [n, o, out]` and `w [o, cg, k]`.
///
/// Stride-1 convolutions (unless the padding exceeds the dilated kernel reach)
/// take the route of [`flipped_adjoint`]: a forward convolution of `gy`.
/// Strided ones in f32 on a CPU with the direct kernels are split into
/// stride-1 sub-pixel phases ([`subpixel`]); the rest use [`gemm_dgrad`].
pub(crate) fn conv_dgrad<T: Elem>(g: &ConvGeom, gy: &[T], w: &[T]) -> Vec<T> {
    if let Some(g2) = flipped_adjoint(g) {
        #[cfg(target_arch = "x86_64")]
        if let (Some(isa), Some(gy), Some(w)) = (fast_isa(&g2), as_f32(gy), as_f32(w)) {
            if super::winograd::applies(isa, &g2) {
                let w = super::winograd::Weights::Flipped(w);
                return from_f32(super::winograd::fwd(&g2, gy, w));
            }
        }
        return conv_fwd(&g2, gy, &flipped_weights(g, w));
    }
    if let (Some(isa), Some(gy), Some(w)) = (fast_isa(g), as_f32(gy), as_f32(w)) {
        if let Some(gx) = subpixel::dgrad(isa, g, gy, w) {
            return from_f32(gx);
        }
    }
    gemm_dgrad(g, gy, w)
}

/// Input gradient with `gemm` + col2im (any element type and geometry; the
/// reference of the other routes).
///
/// Per tile `col = W_gᵀ · gy_tile`, then col2im. Tiles are slabs of output
/// depth planes thick enough that slabs two apart never touch the same input
/// plane, so all even slabs run in parallel, then all odd ones.
pub(super) fn gemm_dgrad<T: Elem>(g: &ConvGeom, gy: &[T], w: &[T]) -> Vec<T> {
    let mut gx = vec![T::from_f64(0.0); g.x_len()];
    let (in_vol, out_vol, krows, cg, og, wo, oh) = (
        g.in_vol(),
        g.out_vol(),
        g.krows(),
        g.cg(),
        g.og(),
        g.output[2],
        g.output[1],
    );
    let gxp = SharedMut(gx.as_mut_ptr());
    let lhs_t = |grp: usize| (w[grp * og * krows..].as_ptr(), krows as isize, 1isize);
    let slab = ((g.kernel[0] - 1) * g.dilation[0] / g.stride[0]).max(1);
    let nslabs = g.output[0].div_ceil(slab);
    let plan = TilePlan::gemm(g, std::mem::size_of::<T>(), 1);
    let wr = w_ranges(g);
    for phase in 0..2 {
        let tasks: Vec<(usize, usize)> = (0..g.n)
            .flat_map(|b| (phase..nslabs).step_by(2).map(move |s| (b, s)))
            .collect();
        tasks
            .par_iter()
            .for_each_init(Vec::new, |col: &mut Vec<T>, &(b, s)| {
                let row_end = ((s + 1) * slab).min(g.output[0]) * oh;
                let mut r0 = s * slab * oh;
                while r0 < row_end {
                    let r1 = (r0 + plan.rows_per_tile).min(row_end);
                    let (p0, cols) = (r0 * wo, (r1 - r0) * wo);
                    col.resize(krows * cols, T::from_f64(0.0));
                    for grp in 0..g.groups {
                        // SAFETY: col is krows×cols; gy/w ranges in bounds. col2im:
                        // slabs of one phase read disjoint input planes (see above).
                        unsafe {
                            let rhs = gy[(b * g.o + grp * og) * out_vol + p0..].as_ptr();
                            matmul(
                                krows,
                                cols,
                                og,
                                (col.as_mut_ptr(), 1, cols as isize),
                                false,
                                lhs_t(grp),
                                (rhs, 1, out_vol as isize),
                            );
                            col2im(
                                g,
                                col,
                                r0,
                                r1,
                                &wr,
                                gxp.ptr().add((b * g.c + grp * cg) * in_vol),
                            );
                        }
                    }
                    r0 = r1;
                }
            });
    }
    gx
}

/// Most partial weight-gradient sums.
const WGRAD_PARTS: usize = 16;

/// Number of partial weight-gradient sums: [`WGRAD_PARTS`], fewer for small
/// volumes (at least 32 output rows per part, so that each tile is long
/// enough for the kernels). It depends only on the geometry (not on the thread
/// count), so the summation order, hence the rounding, is the same on every
/// machine and every run.
fn wgrad_parts(g: &ConvGeom) -> usize {
    (g.n * g.output[0] * g.output[1] / 32).clamp(1, WGRAD_PARTS)
}

/// Weight gradient: `gw [o, cg, k] = Σ_tiles gy_tile · x_tileᵀ`, with the
/// direct SIMD kernels for f32 where available (see [`conv_fwd`]).
pub(crate) fn conv_wgrad<T: Elem>(g: &ConvGeom, x: &[T], gy: &[T]) -> Vec<T> {
    if let (Some(isa), Some(x), Some(gy)) = (fast_isa(g), as_f32(x), as_f32(gy)) {
        #[cfg(target_arch = "x86_64")]
        if super::winograd::applies_wgrad(isa, g) {
            let acc_t = super::winograd::wgrad(g, x, gy);
            return from_f32(tap_major_to_weights(g, &acc_t));
        }
        return from_f32(direct_wgrad(isa, g, x, gy));
    }
    gemm_wgrad(g, x, gy)
}

/// Sums `tile(scratch, acc, b, r0, r1, grp)` over every (sample, tile, group)
/// into a weight-gradient buffer. The tiles are cut into [`wgrad_parts`]
/// consecutive runs, each summed into its own accumulator in parallel; the
/// partial sums are then added in order, so the result does not depend on the
/// number of threads.
fn wgrad_reduce<T: Elem, S: Default>(
    g: &ConvGeom,
    plan: &TilePlan,
    tile: impl Fn(&mut S, &mut [T], usize, usize, usize, usize) + Sync,
) -> Vec<T> {
    let zero = T::from_f64(0.0);
    let tasks = plan.tasks(g.n);
    let partials: Vec<Vec<T>> = tasks
        .par_chunks(tasks.len().div_ceil(wgrad_parts(g)).max(1))
        .map(|run| {
            let (mut acc, mut scratch) = (vec![zero; g.w_len()], S::default());
            for &(b, ti) in run {
                let (r0, r1) = plan.tile(ti);
                for grp in 0..g.groups {
                    tile(&mut scratch, &mut acc, b, r0, r1, grp);
                }
            }
            acc
        })
        .collect();
    let mut gw = vec![zero; g.w_len()];
    for part in &partials {
        gw.iter_mut().zip(part).for_each(|(a, &b)| *a += b);
    }
    gw
}

/// Direct SIMD weight gradient (f32).
pub(super) fn direct_wgrad(isa: direct::Isa, g: &ConvGeom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let plan = TilePlan::direct(g, wgrad_parts(g).div_ceil(g.n.max(1)));
    let (out_vol, krows, og) = (g.out_vol(), g.krows(), g.og());
    let padded = direct::Padded::applies(g).then(|| direct::Padded::new(g, x, isa.widest_block()));
    let acc_t = wgrad_reduce(
        g,
        &plan,
        |s: &mut direct::Scratch, acc: &mut [f32], b, r0, r1, grp| {
            let input = tile_input(g, x, padded.as_ref(), b, grp);
            let gy_g = &gy[(b * g.o + grp * og) * out_vol..][..og * out_vol];
            let acc_g = &mut acc[grp * og * krows..][..og * krows];
            direct::wgrad_tile(isa, g, input, gy_g, r0, r1, s, acc_g);
        },
    );
    tap_major_to_weights(g, &acc_t)
}

/// The weight gradient `[o, cg, k]` from its tap-major form: per group
/// `[cg·k][og]` → `[og][cg·k]`.
pub(super) fn tap_major_to_weights(g: &ConvGeom, acc_t: &[f32]) -> Vec<f32> {
    let (og, krows) = (g.og(), g.krows());
    let mut gw = vec![0.0; g.w_len()];
    for (src, dst) in acc_t
        .chunks_exact(og * krows)
        .zip(gw.chunks_exact_mut(og * krows))
    {
        for (t, row) in src.chunks_exact(og).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                dst[o * krows + t] = v;
            }
        }
    }
    gw
}

/// Weight gradient with the im2col/shifted-row + `gemm` kernels (any element
/// type; the reference of the direct kernels).
pub(super) fn gemm_wgrad<T: Elem>(g: &ConvGeom, x: &[T], gy: &[T]) -> Vec<T> {
    let zero = T::from_f64(0.0);
    let plan = TilePlan::gemm(
        g,
        std::mem::size_of::<T>(),
        wgrad_parts(g).div_ceil(g.n.max(1)),
    );
    let wr = w_ranges(g);
    let (in_vol, out_vol, krows, cg, og, wo) = (
        g.in_vol(),
        g.out_vol(),
        g.krows(),
        g.cg(),
        g.og(),
        g.output[2],
    );
    wgrad_reduce(
        g,
        &plan,
        |(col, gytile): &mut (Vec<T>, Vec<T>), acc: &mut [T], b, r0, r1, grp| {
            let (p0, cols) = (r0 * wo, (r1 - r0) * wo);
            let xg = &x[(b * g.c + grp * cg) * in_vol..][..cg * in_vol];
            if rows::applies(g) {
                let gy_g = &gy[(b * g.o + grp * og) * out_vol..][..og * out_vol];
                let acc_g = &mut acc[grp * og * krows..][..og * krows];
                rows::wgrad_tile(g, xg, gy_g, r0, r1, col, gytile, acc_g);
                return;
            }
            // rhs = colᵀ [cols × krows]
            let rhs = if g.is_pointwise() {
                (xg[p0..].as_ptr(), in_vol as isize, 1)
            } else {
                col.resize(krows * cols, zero);
                im2col(g, xg, r0, r1, &wr, col);
                (col.as_ptr(), cols as isize, 1)
            };
            assert!(acc.len() >= g.w_len());
            // SAFETY: acc is o×krows (checked), owned by this run; gy tile in bounds.
            unsafe {
                let lhs = gy[(b * g.o + grp * og) * out_vol + p0..].as_ptr();
                let dst = acc.as_mut_ptr().add(grp * og * krows);
                matmul(
                    og,
                    krows,
                    cols,
                    (dst, 1, krows as isize),
                    true,
                    (lhs, 1, out_vol as isize),
                    rhs,
                );
            }
        },
    )
}

/// For stride 1 the input gradient is itself a convolution: of `gy` with the
/// kernel flipped in space and transposed in channels (per group,
/// [`flipped_weights`]), padding `dil·(k−1) − p`. Returns that convolution's
/// geometry, or `None` when a stride is not 1 or `p > dil·(k−1)` on some axis.
pub(super) fn flipped_adjoint(g: &ConvGeom) -> Option<ConvGeom> {
    let mut padding = [0; 3];
    for a in 0..3 {
        let reach = g.dilation[a] * (g.kernel[a] - 1);
        if g.stride[a] != 1 || g.padding[a] > reach {
            return None;
        }
        padding[a] = reach - g.padding[a];
    }
    Some(ConvGeom {
        n: g.n,
        c: g.o,
        o: g.c,
        groups: g.groups,
        input: g.output,
        kernel: g.kernel,
        stride: [1; 3],
        padding,
        dilation: g.dilation,
        output: g.input,
    })
}

/// The weight of [`flipped_adjoint`]'s convolution: `w` flipped in space and
/// with input and output channels swapped within each group.
fn flipped_weights<T: Elem>(g: &ConvGeom, w: &[T]) -> Vec<T> {
    let (cg, og, kvol) = (g.cg(), g.og(), g.kvol());
    let mut w2 = vec![T::from_f64(0.0); w.len()];
    for grp in 0..g.groups {
        for oi in 0..og {
            for ci in 0..cg {
                let src = &w[((grp * og + oi) * cg + ci) * kvol..][..kvol];
                let dst = &mut w2[((grp * cg + ci) * og + oi) * kvol..][..kvol];
                // reversing the flattened (kd, kh, kw) block flips all three axes
                dst.iter_mut()
                    .zip(src.iter().rev())
                    .for_each(|(d, &s)| *d = s);
            }
        }
    }
    w2
}
