//! The Winograd F(2, 3) transforms, applied along each of the three axes:
//!
//! ```text
//! input        Bᵀ·d = [d0 − d2, d1 + d2, d2 − d1, d1 − d3]
//! kernel       G·w  = [w0, (w0 + w1 + w2)/2, (w0 − w1 + w2)/2, w2]
//! output       Aᵀ·m = [m0 + m1 + m2, m1 − m2 − m3]
//! out. grad.   A·g  = [g0, g0 + g1, g0 − g1, −g1]
//! kernel grad. Gᵀ·p = [p0 + (p1 + p2)/2, (p1 − p2)/2, (p1 + p2)/2 + p3]
//! ```
//!
//! The last two are the adjoints of the middle ones: with `y = Aᵀ[(G·w) ⊙
//! (Bᵀ·d)]`, `∂L/∂w = Gᵀ[(A·∂L/∂y) ⊙ (Bᵀ·d)]`, so the weight gradient sums
//! `(A·gy) ⊙ (Bᵀ·d)` over tiles (a matrix product per `ξ`) and transforms once.
//! The input and output-gradient transforms run on AVX-512 vectors of 16
//! tiles or channels; the kernel transforms on arrays over channels.

use super::{Weights, OB, XI};
use crate::conv::geom::ConvGeom;
use crate::elem::SharedMut;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Tiles per vector of the input transform.
pub(super) const LANES: usize = 16;

/// Transformed weights `U[ξ][o-block][c][OB]` (zero for channels past `o`).
/// Rayon over `(o-block, c)`: each transforms the kernels of one input
/// channel for 32 output channels at once (lanes over `o`) and writes one
/// contiguous run of 32 values per `ξ`.
pub(super) fn transform_weights(g: &ConvGeom, w: Weights, og_pad: usize) -> Vec<f32> {
    let (c, nb) = (g.c, og_pad / OB);
    let mut u = vec![0.0f32; XI * og_pad * c];
    let up = SharedMut(u.as_mut_ptr());
    (0..nb * c).into_par_iter().for_each(|job| {
        let (bo, ci) = (job / c, job % c);
        let mut k = [[0.0f32; OB]; 27];
        for oi in 0..OB.min(g.o - bo * OB) {
            w.kernel(g, bo * OB + oi, ci, &mut k, oi);
        }
        for (xi, v) in transform_kernel(&k).iter().enumerate() {
            let at = ((xi * nb + bo) * c + ci) * OB;
            // SAFETY: `at + OB ≤ XI·nb·c·OB = u.len()`, and each (bo, ci, ξ)
            // writes its own run (bo, ci are this job's alone).
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), up.ptr().add(at), OB) };
        }
    });
    u
}

/// `(G ⊗ G ⊗ G) · k` for 3×3×3 kernels `k[kz·9 + ky·3 + kx]` (lanes: output
/// channels): 64 values `[ξz·16 + ξy·4 + ξx]`.
pub(super) fn transform_kernel(k: &[[f32; OB]; 27]) -> [[f32; OB]; XI] {
    let mut out = [[0.0; OB]; XI];
    separable_3d::<3, 4, OB>(k, &mut out, |[a, b, c]| {
        [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
    });
    out
}

/// `(Gᵀ ⊗ Gᵀ ⊗ Gᵀ) · p` for 16 lanes of 64 values `p[ξz·16 + ξy·4 + ξx]`:
/// 27 values `[kz·9 + ky·3 + kx]`.
pub(super) fn kernel_gradient(p: &[[f32; LANES]; XI]) -> [[f32; LANES]; 27] {
    let mut out = [[0.0; LANES]; 27];
    separable_3d::<4, 3, LANES>(p, &mut out, |[a, b, c, d]| {
        let (sum, diff) = (0.5 * (b + c), 0.5 * (b - c));
        [a + sum, diff, sum + d]
    });
    out
}

/// Applies the 1-D transform `f` (`I` values → `O`) along x, then y, then z
/// of an `I³` block `input[(z·I + y)·I + x]` into the `O³` block `out`, lane
/// by lane (`I`, `O` ≤ 4).
fn separable_3d<const I: usize, const O: usize, const L: usize>(
    input: &[[f32; L]],
    out: &mut [[f32; L]],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    // along one axis: I values `src[at + i·step]` → O values `dst[to + j·step_out]`
    let along = |src: &[[f32; L]],
                 at: usize,
                 step: usize,
                 dst: &mut [[f32; L]],
                 to: usize,
                 step_out: usize| {
        for l in 0..L {
            let v = f(std::array::from_fn(|i: usize| src[at + i * step][l]));
            for (j, &x) in v.iter().enumerate() {
                dst[to + j * step_out][l] = x;
            }
        }
    };
    // [z][y][ξx] (I·I·O), then [z][ξy][ξx] (I·O·O), then [ξz][ξy][ξx]
    let (mut by_x, mut by_y) = ([[0.0; L]; 64], [[0.0; L]; 64]);
    for zy in 0..I * I {
        along(input, zy * I, 1, &mut by_x, zy * O, 1);
    }
    for z in 0..I {
        for x in 0..O {
            along(&by_x, z * I * O + x, O, &mut by_y, z * O * O + x, O);
        }
    }
    for yx in 0..O * O {
        along(&by_y, yx, O * O, out, yx, O * O);
    }
}

/// Prefetches the 4×4 input rows of one tile row (the next channel's while
/// the current one is transformed: the rows come from all over the padded
/// input, ~10 % of the input transform's time otherwise).
pub(super) fn prefetch_window(data: &[f32], at: usize, plane: usize, row: usize, tx: usize) {
    for dz in 0..4 {
        for dy in 0..4 {
            let start = at + dz * plane + dy * row;
            for col in (start..(start + 2 * tx + 2).min(data.len())).step_by(16) {
                // SAFETY: `col < data.len()`; a prefetch does not fault anyway.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(col).cast()) };
            }
        }
    }
}

/// `Bᵀ·[d0, d1, d2, d3]` on vectors.
#[inline(always)]
fn input_1d(d: [__m512; 4]) -> [__m512; 4] {
    // SAFETY (of the intrinsics): only called from AVX-512 functions.
    unsafe {
        [
            _mm512_sub_ps(d[0], d[2]),
            _mm512_add_ps(d[1], d[2]),
            _mm512_sub_ps(d[2], d[1]),
            _mm512_sub_ps(d[1], d[3]),
        ]
    }
}

/// `Aᵀ·[m0, m1, m2, m3]` on vectors.
#[inline(always)]
fn output_1d(m: [__m512; 4]) -> [__m512; 2] {
    // SAFETY (of the intrinsics): only called from AVX-512 functions.
    unsafe {
        [
            _mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]),
            _mm512_sub_ps(_mm512_sub_ps(m[1], m[2]), m[3]),
        ]
    }
}

/// Input transform of the `tx` tiles of one tile row and channel: `src` is
/// the window start of its first tile (tile `t` starts `2t` columns further;
/// depth planes `plane` and rows `row` apart); writes value `ξ` of tile `t` to
/// `v[ξ·xi_stride + t]`.
///
/// # Safety
/// `src` must be valid for reads of `3·plane + 3·row + 2·⌈tx/16⌉·16 + 2`
/// values and `v` for writes of `tx` values at each `ξ·xi_stride`; the CPU
/// must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transform_input_row(
    src: *const f32,
    plane: usize,
    row: usize,
    tx: usize,
    v: *mut f32,
    xi_stride: usize,
) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for t0 in (0..tx).step_by(LANES) {
        let p = src.wrapping_add(2 * t0);
        // SAFETY: within the reads and writes the caller vouches for (the
        // 32 + 2 values from each row start; lanes t0 + l < tx).
        unsafe {
            transform_input_lanes(
                [p, p.add(16)],
                [even, odd],
                plane,
                row,
                lane_mask((tx - t0).min(LANES)),
                v.add(t0),
                xi_stride,
            )
        };
    }
}

/// [`transform_input_row`] for two tile rows of at most 8 tiles at once:
/// lanes `[0, tx)` from the row whose first window starts at `src0`, lanes
/// `[tx, 2·tx)` from `src1`, written to `v[ξ·xi_stride + l]`. The deep,
/// small volumes (8 tiles per row at 16³, 6 at 12³) would fill half a
/// vector otherwise.
///
/// # Safety
/// `src0` and `src1` must each be valid for reads of `3·plane + 3·row + 18`
/// values and `v` for writes of `2·tx` values at each `ξ·xi_stride`; `tx ≤
/// 8`; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transform_input_row_pair(
    src0: *const f32,
    src1: *const f32,
    plane: usize,
    row: usize,
    tx: usize,
    v: *mut f32,
    xi_stride: usize,
) {
    debug_assert!((1..=LANES / 2).contains(&tx));
    // lane l < tx: element 2l of the first row; lane l ≥ tx: element 2(l − tx)
    // of the second (16 + … in the two-register permute); lanes past 2·tx
    // repeat the last one and are not stored
    let mut index = [0i32; LANES];
    for (l, i) in index.iter_mut().enumerate() {
        let l = l.min(2 * tx - 1);
        *i = if l < tx { 2 * l } else { 16 + 2 * (l - tx) } as i32;
    }
    // SAFETY: 16 i32 are 64 readable bytes.
    let even = unsafe { _mm512_loadu_si512(index.as_ptr().cast()) };
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    // SAFETY: within the reads and writes the caller vouches for.
    unsafe {
        transform_input_lanes(
            [src0, src1],
            [even, odd],
            plane,
            row,
            lane_mask(2 * tx),
            v,
            xi_stride,
        )
    };
}

/// The lowest `n ≤ 16` lanes.
#[inline(always)]
fn lane_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// The 3-D input transform of 16 lanes of windows. Row `(dz, dy)` of the
/// windows is read as `lo = src[0] + dz·plane + dy·row` and `hi = src[1] + …`
/// (16 values each, and again 2 further): the columns `d0, d1` are the
/// two-register permutes of `(lo, hi)` by `index[0]`, `index[1]`, and `d2,
/// d3` those of the reads 2 further. Value `ξ` goes to `v[ξ·xi_stride + l]`
/// for the lanes in `mask`.
///
/// # Safety
/// The reads (16 values at each of the four starts per row) and the writes
/// must be valid; only called from AVX-512 functions.
#[inline(always)]
unsafe fn transform_input_lanes(
    src: [*const f32; 2],
    index: [__m512i; 2],
    plane: usize,
    row: usize,
    mask: __mmask16,
    v: *mut f32,
    xi_stride: usize,
) {
    // x-transform of each of the 16 rows: [dz][dy][ξx]
    // SAFETY (of the intrinsic): only called from AVX-512 functions.
    let mut rx = [[[unsafe { _mm512_setzero_ps() }; 4]; 4]; 4];
    for (dz, rz) in rx.iter_mut().enumerate() {
        for (dy, r) in rz.iter_mut().enumerate() {
            let at = dz * plane + dy * row;
            // SAFETY: within the reads the caller vouches for.
            let d = unsafe {
                let (lo, hi) = (
                    _mm512_loadu_ps(src[0].add(at)),
                    _mm512_loadu_ps(src[1].add(at)),
                );
                let (lo2, hi2) = (
                    _mm512_loadu_ps(src[0].add(at + 2)),
                    _mm512_loadu_ps(src[1].add(at + 2)),
                );
                [
                    _mm512_permutex2var_ps(lo, index[0], hi),
                    _mm512_permutex2var_ps(lo, index[1], hi),
                    _mm512_permutex2var_ps(lo2, index[0], hi2),
                    _mm512_permutex2var_ps(lo2, index[1], hi2),
                ]
            };
            *r = input_1d(d);
        }
    }
    for ix in 0..4 {
        // y then z for this ξx
        let mut ry = rx[0];
        for (dz, r) in ry.iter_mut().enumerate() {
            let d = &rx[dz];
            *r = input_1d([d[0][ix], d[1][ix], d[2][ix], d[3][ix]]);
        }
        for iy in 0..4 {
            let rz = input_1d([ry[0][iy], ry[1][iy], ry[2][iy], ry[3][iy]]);
            for (iz, val) in rz.into_iter().enumerate() {
                let xi = (iz * 4 + iy) * 4 + ix;
                // SAFETY: within the writes the caller vouches for.
                unsafe { _mm512_mask_storeu_ps(v.add(xi * xi_stride), mask, val) };
            }
        }
    }
}

/// Output transform of one tile and 16 channels: `m[ξ·xi_stride + l]` for
/// the 64 values `ξ` and lanes `l` → voxel `(oz, oy, ox)` at
/// `out[(oz·2 + oy)·row_stride + ox·voxel + l]`.
///
/// # Safety
/// `m` must be valid for those reads and `out` for those writes; the CPU
/// must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transform_output_tile(
    m: *const f32,
    xi_stride: usize,
    out: *mut f32,
    voxel: usize,
    row_stride: usize,
) {
    // along x: [ξz][ξy][ox]
    let mut ax = [[[_mm512_setzero_ps(); 2]; 4]; 4];
    for (iz, az) in ax.iter_mut().enumerate() {
        for (iy, a) in az.iter_mut().enumerate() {
            // SAFETY: within the reads the caller vouches for.
            let at = (iz * 4 + iy) * 4 * xi_stride;
            // SAFETY: within the reads the caller vouches for.
            let row = unsafe {
                [
                    _mm512_loadu_ps(m.add(at)),
                    _mm512_loadu_ps(m.add(at + xi_stride)),
                    _mm512_loadu_ps(m.add(at + 2 * xi_stride)),
                    _mm512_loadu_ps(m.add(at + 3 * xi_stride)),
                ]
            };
            *a = output_1d(row);
        }
    }
    for ox in 0..2 {
        let mut ay = [ax[0][0]; 4];
        for (iz, a) in ay.iter_mut().enumerate() {
            let m = &ax[iz];
            *a = output_1d([m[0][ox], m[1][ox], m[2][ox], m[3][ox]]);
        }
        for oy in 0..2 {
            let az = output_1d([ay[0][oy], ay[1][oy], ay[2][oy], ay[3][oy]]);
            for (oz, val) in az.into_iter().enumerate() {
                // SAFETY: within the writes the caller vouches for.
                unsafe { _mm512_storeu_ps(out.add((oz * 2 + oy) * row_stride + ox * voxel), val) };
            }
        }
    }
}

/// `A·[g0, g1]` on vectors.
#[inline(always)]
fn gradient_1d(g: [__m512; 2]) -> [__m512; 4] {
    // SAFETY (of the intrinsics): only called from AVX-512 functions.
    unsafe {
        [
            g[0],
            _mm512_add_ps(g[0], g[1]),
            _mm512_sub_ps(g[0], g[1]),
            _mm512_sub_ps(_mm512_setzero_ps(), g[1]),
        ]
    }
}

/// Output-gradient transform of one tile and 16 channels: the voxel
/// `(oz, oy, ox)` at `g[(oz·2 + oy)·row_stride + ox·voxel + l]` → value `ξ`
/// of lane `l` at `out[ξ·xi_stride + l]`.
///
/// # Safety
/// `g` must be valid for those reads and `out` for those writes; the CPU
/// must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transform_gradient_tile(
    g: *const f32,
    voxel: usize,
    row_stride: usize,
    out: *mut f32,
    xi_stride: usize,
) {
    // along x: [oz][oy][ξx]
    let mut gx = [[[_mm512_setzero_ps(); 4]; 2]; 2];
    for (oz, gz) in gx.iter_mut().enumerate() {
        for (oy, r) in gz.iter_mut().enumerate() {
            // SAFETY: within the reads the caller vouches for.
            let at = (oz * 2 + oy) * row_stride;
            // SAFETY: within the reads the caller vouches for.
            let v = unsafe {
                [
                    _mm512_loadu_ps(g.add(at)),
                    _mm512_loadu_ps(g.add(at + voxel)),
                ]
            };
            *r = gradient_1d(v);
        }
    }
    for ix in 0..4 {
        let gy = [
            gradient_1d([gx[0][0][ix], gx[0][1][ix]]),
            gradient_1d([gx[1][0][ix], gx[1][1][ix]]),
        ];
        for iy in 0..4 {
            let gz = gradient_1d([gy[0][iy], gy[1][iy]]);
            for (iz, val) in gz.into_iter().enumerate() {
                // SAFETY: within the writes the caller vouches for.
                unsafe { _mm512_storeu_ps(out.add(((iz * 4 + iy) * 4 + ix) * xi_stride), val) };
            }
        }
    }
}
