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

use super::{OB, XI};
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
pub(super) fn transform_weights(g: &ConvGeom, w: &[f32], og_pad: usize) -> Vec<f32> {
    let (c, nb) = (g.c, og_pad / OB);
    let mut u = vec![0.0f32; XI * og_pad * c];
    let up = SharedMut(u.as_mut_ptr());
    (0..nb * c).into_par_iter().for_each(|job| {
        let (bo, ci) = (job / c, job % c);
        let mut k = [[0.0f32; OB]; 27];
        for oi in 0..OB.min(g.o - bo * OB) {
            let src = &w[((bo * OB + oi) * c + ci) * 27..][..27];
            for (tap, &v) in src.iter().enumerate() {
                k[tap][oi] = v;
            }
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
    // G applied along one axis: 3 taps `k[at + j·step]` → 4 values `out[to + i·ostep]`
    fn g_1d(
        k: &[[f32; OB]],
        at: usize,
        step: usize,
        out: &mut [[f32; OB]],
        to: usize,
        ostep: usize,
    ) {
        let (a, b, c) = (k[at], k[at + step], k[at + 2 * step]);
        for l in 0..OB {
            out[to][l] = a[l];
            out[to + ostep][l] = 0.5 * (a[l] + b[l] + c[l]);
            out[to + 2 * ostep][l] = 0.5 * (a[l] - b[l] + c[l]);
            out[to + 3 * ostep][l] = c[l];
        }
    }
    // along x: [kz][ky][ξx] (3·3·4), along y: [kz][ξy][ξx] (3·4·4), along z
    let mut gx = [[0.0; OB]; 36];
    for zy in 0..9 {
        g_1d(k, zy * 3, 1, &mut gx, zy * 4, 1);
    }
    let mut gy = [[0.0; OB]; 48];
    for z in 0..3 {
        for ix in 0..4 {
            g_1d(&gx, z * 12 + ix, 4, &mut gy, z * 16 + ix, 4);
        }
    }
    let mut out = [[0.0; OB]; XI];
    for yx in 0..16 {
        g_1d(&gy, yx, 16, &mut out, yx, 16);
    }
    out
}

/// `(Gᵀ ⊗ Gᵀ ⊗ Gᵀ) · p` for 16 lanes of 64 values `p[ξz·16 + ξy·4 + ξx]`:
/// 27 values `[kz·9 + ky·3 + kx]`.
pub(super) fn kernel_gradient(p: &[[f32; LANES]; XI]) -> [[f32; LANES]; 27] {
    // Gᵀ along one axis: 4 values `p[at + i·step]` → 3 values `out[to + k·ostep]`
    fn gt_1d(
        p: &[[f32; LANES]],
        at: usize,
        step: usize,
        out: &mut [[f32; LANES]],
        to: usize,
        ostep: usize,
    ) {
        let (a, b, c, d) = (p[at], p[at + step], p[at + 2 * step], p[at + 3 * step]);
        for l in 0..LANES {
            let (sum, diff) = (0.5 * (b[l] + c[l]), 0.5 * (b[l] - c[l]));
            out[to][l] = a[l] + sum;
            out[to + ostep][l] = diff;
            out[to + 2 * ostep][l] = sum + d[l];
        }
    }
    // along x: [ξz][ξy][kx] (16·3), along y: [ξz][ky][kx] (4·9), along z
    let mut px = [[0.0; LANES]; 48];
    for zy in 0..16 {
        gt_1d(p, zy * 4, 1, &mut px, zy * 3, 1);
    }
    let mut py = [[0.0; LANES]; 36];
    for z in 0..4 {
        for kx in 0..3 {
            gt_1d(&px, z * 12 + kx, 3, &mut py, z * 9 + kx, 3);
        }
    }
    let mut out = [[0.0; LANES]; 27];
    for yx in 0..9 {
        gt_1d(&py, yx, 9, &mut out, yx, 9);
    }
    out
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
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for t0 in (0..tx).step_by(LANES) {
        let mask: __mmask16 = (((1u32 << (tx - t0).min(LANES)) - 1) & 0xffff) as __mmask16;
        // x-transform of each of the 16 rows: [dz][dy][ξx]
        let mut rx = [[[_mm512_setzero_ps(); 4]; 4]; 4];
        for (dz, rz) in rx.iter_mut().enumerate() {
            for (dy, r) in rz.iter_mut().enumerate() {
                // SAFETY: within the reads the caller vouches for.
                let d = unsafe {
                    let p = src.add(dz * plane + dy * row + 2 * t0);
                    let (lo, hi) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                    let (lo2, hi2) = (_mm512_loadu_ps(p.add(2)), _mm512_loadu_ps(p.add(18)));
                    [
                        _mm512_permutex2var_ps(lo, even, hi),
                        _mm512_permutex2var_ps(lo, odd, hi),
                        _mm512_permutex2var_ps(lo2, even, hi2),
                        _mm512_permutex2var_ps(lo2, odd, hi2),
                    ]
                };
                *r = input_1d(d);
            }
        }
        for ix in 0..4 {
            // y then z for this ξx
            let ry: [[__m512; 4]; 4] =
                std::array::from_fn(|dz| input_1d(std::array::from_fn(|dy| rx[dz][dy][ix])));
            for iy in 0..4 {
                let rz = input_1d(std::array::from_fn(|dz| ry[dz][iy]));
                for (iz, val) in rz.into_iter().enumerate() {
                    let xi = (iz * 4 + iy) * 4 + ix;
                    // SAFETY: within the writes the caller vouches for (mask
                    // keeps lanes t0 + l < tx).
                    unsafe { _mm512_mask_storeu_ps(v.add(xi * xi_stride + t0), mask, val) };
                }
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
            let row: [__m512; 4] = std::array::from_fn(|ix| unsafe {
                _mm512_loadu_ps(m.add(((iz * 4 + iy) * 4 + ix) * xi_stride))
            });
            *a = output_1d(row);
        }
    }
    for ox in 0..2 {
        let ay: [[__m512; 2]; 4] =
            std::array::from_fn(|iz| output_1d(std::array::from_fn(|iy| ax[iz][iy][ox])));
        for oy in 0..2 {
            let az = output_1d(std::array::from_fn(|iz| ay[iz][oy]));
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
            let v: [__m512; 2] = std::array::from_fn(|ox| unsafe {
                _mm512_loadu_ps(g.add((oz * 2 + oy) * row_stride + ox * voxel))
            });
            *r = gradient_1d(v);
        }
    }
    for ix in 0..4 {
        let gy: [[__m512; 4]; 2] =
            std::array::from_fn(|oz| gradient_1d(std::array::from_fn(|oy| gx[oz][oy][ix])));
        for iy in 0..4 {
            let gz = gradient_1d(std::array::from_fn(|oz| gy[oz][iy]));
            for (iz, val) in gz.into_iter().enumerate() {
                // SAFETY: within the writes the caller vouches for.
                unsafe { _mm512_storeu_ps(out.add(((iz * 4 + iy) * 4 + ix) * xi_stride), val) };
            }
        }
    }
}
