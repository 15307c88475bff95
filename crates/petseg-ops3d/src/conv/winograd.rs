//! Winograd F(2×2×2, 3×3×3) forward of stride-1 3×3×3 convolutions (f32,
//! AVX-512): 64 multiplications per 2×2×2 output tile and channel pair
//! instead of 216, 3.375× fewer than the direct kernels.
//!
//! In one dimension, two outputs of a 3-tap correlation over four inputs
//! `d` are `y = Aᵀ[(G·w) ⊙ (Bᵀ·d)]` with
//!
//! ```text
//! Bᵀ·d = [d0 − d2, d1 + d2, d2 − d1, d1 − d3]
//! G·w  = [w0, (w0 + w1 + w2)/2, (w0 − w1 + w2)/2, w2]
//! Aᵀ·m = [m0 + m1 + m2, m1 − m2 − m3]
//! ```
//!
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//! The 3-D transform is the same along each axis. Per sample and block of
//! tiles:
//! 1. the 4×4×4 input window of every tile and input channel is transformed
//!    to 64 values `V[ξ][c][tile]` (vectorised over 16 tiles of a tile row);
//! 2. for each of the 64 positions `ξ`, `M[ξ][tile][o] = Σ_c V[ξ][c][tile] ·
//!    U[ξ][c][o]` — a matrix product run by the direct forward's
//!    channel-vector micro-kernel (`U` is the transformed weight, packed like
//!    its weights: 32 output channels per block);
//! 3. each tile's 64 `M` vectors are transformed back to its 2×2×2 outputs
//!    and transposed into the output rows.
//!
//! The input is zero-padded once ([`Padded`]) for an output rounded up to
//! even sizes; tiles past an odd output's end compute values that are not
//! written. Nothing volume-sized is allocated besides that copy and the
//! result: `V` and `M` are per-task scratch of at most
//! [`SCRATCH_BUDGET_BYTES`] (plus one tile row), and `U` is `64/27` of the
//! weight. The transforms only add and halve, so the rounding error stays
//! within a few f32 ulps of the direct sum (tested against it).

use super::direct::{self, Isa};
use super::geom::ConvGeom;
use super::padded::Padded;
use super::transpose::{transpose, BLOCK};
use crate::elem::{written_vec, SharedMut};
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Transformed values per tile (4³).
const XI: usize = 64;
/// `n` f32 values rounded up to an odd number of 64-byte lines: rows that
/// far apart fall into different L1 sets (the transforms touch 64 rows at
/// once; at a stride of 3 or 4 KiB they shared 4 sets and ran 3× slower).
fn conflict_free(n: usize) -> usize {
    (n.div_ceil(16) | 1) * 16
}

/// Output channels per block of `U` and per micro-kernel call.
const OB: usize = 32;
/// Tiles per micro-kernel call.
const COLS: usize = 12;
/// Tiles per vector of the input transform.
const LANES: usize = 16;
/// Bounds of a task's `V` and `M` in bytes. Each task reads all of `U`, so
/// the budget is half of `U`'s size within these bounds: enough tiles per
/// task to reuse `U` (2 MiB for 128 channels, measured best) while `V` and
/// `M` stay near L2 (512 KiB for 32–64 channels).
const SCRATCH_MIN_BYTES: usize = 512 << 10;
const SCRATCH_MAX_BYTES: usize = 2 << 20;
/// Fewest input channels for which the transforms pay off: below this the
/// output transform (64 loads per tile and channel vector) weighs too much
/// against the 64·c products it replaces.
const MIN_INPUT_CHANNELS: usize = 16;

/// True when the forward of `g` runs here: f32 with AVX-512, a 3×3×3 kernel
/// with stride and dilation 1, one group, at least 32 output channels (the
/// channel-vector micro-kernel) and [`MIN_INPUT_CHANNELS`] input channels.
pub(super) fn applies(isa: Isa, g: &ConvGeom) -> bool {
    isa == Isa::Avx512
        && g.kernel == [3; 3]
        && g.stride == [1; 3]
        && g.dilation == [1; 3]
        && g.groups == 1
        && g.o >= OB
        && g.c >= MIN_INPUT_CHANNELS
        && !direct::winograd_disabled()
}

/// Tiles of the output: `⌈out/2⌉` per axis.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    /// Tile counts along D, H, W.
    n: [usize; 3],
    /// Tile rows (`(tz, ty)` pairs) per task.
    rows_per_task: usize,
}

impl Tiles {
    fn new(g: &ConvGeom, og_pad: usize) -> Self {
        let n = g.output.map(|o| o.div_ceil(2));
        let rows = n[0] * n[1];
        let f32s = std::mem::size_of::<f32>();
        // every task streams all of U once: the larger U, the more tiles per task
        let budget = (XI * g.c * og_pad * f32s / 2).clamp(SCRATCH_MIN_BYTES, SCRATCH_MAX_BYTES);
        let by_budget = (budget / (XI * (g.c + og_pad) * f32s) / n[2]).max(1);
        // enough tasks for every thread (as the direct kernels' tile plans)
        let min_tasks = (4 * rayon::current_num_threads()).div_ceil(g.n.max(1));
        let most = by_budget.min(rows.div_ceil(min_tasks)).max(1);
        // the fewest tiles computed and dropped to fill the last micro-kernel call
        let waste = |r: usize| (r * n[2]).next_multiple_of(COLS) as f64 / (r * n[2]) as f64;
        let rows_per_task = (1..=most)
            .rev()
            .min_by(|&a, &b| waste(a).total_cmp(&waste(b)))
            .unwrap_or(1);
        Tiles { n, rows_per_task }
    }

    fn rows(&self) -> usize {
        self.n[0] * self.n[1]
    }

    /// `(sample, first tile row, end tile row)` of every task.
    fn tasks(&self, samples: usize) -> Vec<(usize, usize, usize)> {
        let rows = self.rows();
        (0..samples)
            .flat_map(|b| {
                (0..rows)
                    .step_by(self.rows_per_task)
                    .map(move |r0| (b, r0, (r0 + self.rows_per_task).min(rows)))
            })
            .collect()
    }
}

/// Forward convolution `y [n, o, out]` of `x [n, c, in]` and `w [o, c, 3, 3, 3]`
/// for a geometry [`applies`] accepts.
pub(super) fn fwd(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    debug_assert!(applies(Isa::Avx512, g));
    let even = ConvGeom {
        output: g.output.map(|o| o.next_multiple_of(2)),
        ..*g
    };
    // loads of the last tile row run up to 2·LANES + 2 columns past its start
    let padded = Padded::new(&even, x, 2 * LANES + 2);
    let og_pad = g.o.next_multiple_of(OB);
    let u = transform_weights(g, w, og_pad);
    let tiles = Tiles::new(g, og_pad);
    let tasks = tiles.tasks(g.n);
    let compute = |y: &mut [std::mem::MaybeUninit<f32>]| {
        let yp = SharedMut(y.as_mut_ptr().cast::<f32>());
        tasks
            .par_iter()
            .for_each_init(Scratch::default, |s, &(b, r0, r1)| {
                // SAFETY: task (b, r0..r1) writes only the output rows of its
                // tile rows of sample b; tasks are disjoint.
                unsafe { run_task(g, &even, &padded, &u, og_pad, tiles, b, r0, r1, s, yp.ptr()) };
            });
    };
    // SAFETY: the tasks cover every tile row of every sample, and each tile
    // row writes all `o` channels of the output rows `2·tz + {0, 1}` ×
    // `2·ty + {0, 1}` that exist, all `wo` voxels of each.
    unsafe { written_vec(g.y_len(), compute) }
}

/// Per-task buffers, reused across the tasks of one rayon worker.
#[derive(Default)]
struct Scratch {
    /// Transformed input `[ξ][c][tile]`.
    v: Vec<f32>,
    /// Products `[tile][ξ][o]` (`og_pad` channels).
    m: Vec<f32>,
    /// One tile row's outputs `[oz·2 + oy][x][o]`.
    stage: Vec<f32>,
    /// Offsets of the input channels in `v` (`c · tiles`).
    offs: Vec<usize>,
}

/// Transformed weights `U[ξ][o-block][c][OB]` (zero for channels past `o`).
/// Rayon over `(o-block, c)`: each transforms the kernels of one input
/// channel for 32 output channels at once (lanes over `o`) and writes one
/// contiguous run of 32 values per `ξ`.
fn transform_weights(g: &ConvGeom, w: &[f32], og_pad: usize) -> Vec<f32> {
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
fn transform_kernel(k: &[[f32; OB]; 27]) -> [[f32; OB]; XI] {
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

/// One task: tile rows `[r0, r1)` of sample `b`.
///
/// # Safety
/// `y` must be the dense output of `g`, and no other thread may write the
/// output rows of these tile rows.
#[allow(clippy::too_many_arguments)]
unsafe fn run_task(
    g: &ConvGeom,
    even: &ConvGeom,
    padded: &Padded,
    u: &[f32],
    og_pad: usize,
    tiles: Tiles,
    b: usize,
    r0: usize,
    r1: usize,
    s: &mut Scratch,
    y: *mut f32,
) {
    let (c, tx) = (g.c, tiles.n[2]);
    let nt = (r1 - r0) * tx;
    let ntp = nt.next_multiple_of(COLS);
    // V's rows per ξ and M's rows per tile, spread over the cache sets
    let (v_xi, m_tile) = (conflict_free(c * ntp), conflict_free(XI * og_pad));
    s.v.resize(XI * v_xi, 0.0);
    s.m.resize(ntp * m_tile, 0.0);
    s.stage.resize(4 * 2 * tx * og_pad, 0.0);
    s.offs.clear();
    s.offs.extend((0..c).map(|ci| ci * ntp));
    let (plane, row) = (padded.ext[1] * padded.ext[2], padded.ext[2]);
    let data = padded.data();
    let bases: Vec<usize> = (r0..r1)
        .map(|r| {
            let (tz, ty) = (r / tiles.n[1], r % tiles.n[1]);
            // the window of tile (tz, ty, 0) starts at output row (2tz, 2ty)
            padded.tile_base(even, b * c, 2 * tz * even.output[1] + 2 * ty)
        })
        .collect();
    // channel by channel: consecutive tile rows share half their input rows
    for ci in 0..c {
        for (k, &base) in bases.iter().enumerate() {
            let src = base + ci * padded.chan();
            if ci + 1 < c {
                prefetch_window(data, src + padded.chan(), plane, row, tx);
            }
            // the last load of the row ends 2·⌈tx/16⌉·16 + 2 columns past its
            // window start, within the rows, channels and slack that follow
            assert!(src + 3 * plane + 3 * row + 2 * tx.next_multiple_of(LANES) + 2 <= data.len());
            // SAFETY: reads checked above; writes XI rows of tx values at
            // column k·tx of channel ci's row of V (XI·c·ntp long).
            unsafe {
                transform_input_row(
                    data.as_ptr().add(src),
                    plane,
                    row,
                    tx,
                    s.v.as_mut_ptr().add(ci * ntp + k * tx),
                    v_xi,
                );
            }
        }
    }
    let nb = og_pad / OB;
    for xi in 0..XI {
        for bo in 0..nb {
            for t0 in (0..ntp).step_by(COLS) {
                // SAFETY: reads V[xi][ci][t0..t0 + COLS] for every ci (within
                // XI·c·ntp), U[xi][bo] (c·OB values within XI·og_pad·c), and
                // writes COLS rows of OB channels of M[xi] (XI·ntp·og_pad).
                unsafe {
                    direct::channel_vector_kernel(
                        Isa::Avx512,
                        s.v.as_ptr().add(xi * v_xi + t0),
                        &s.offs,
                        u.as_ptr().add((xi * nb + bo) * c * OB),
                        s.m.as_mut_ptr().add(t0 * m_tile + xi * og_pad + bo * OB),
                        m_tile,
                    );
                }
            }
        }
    }
    let [od, oh, wo] = g.output;
    let out_vol = g.out_vol();
    for r in r0..r1 {
        for t in 0..tx {
            for ov in (0..og_pad).step_by(LANES) {
                let tile = (r - r0) * tx + t;
                // SAFETY: reads M[ξ][tile][ov..ov + 16] for all ξ; writes
                // 2×2×2 voxels of 16 channels into the stage
                // (4 × 2tx × og_pad).
                unsafe {
                    transform_output_tile(
                        s.m.as_ptr().add(tile * m_tile + ov),
                        og_pad,
                        s.stage.as_mut_ptr().add(2 * t * og_pad + ov),
                        og_pad,
                        2 * tx * og_pad,
                    );
                }
            }
        }
        let (tz, ty) = (r / tiles.n[1], r % tiles.n[1]);
        for (k, (z, yy)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
            let (z, yy) = (2 * tz + z, 2 * ty + yy);
            if z >= od || yy >= oh {
                continue;
            }
            let row_start = (b * g.o) * out_vol + (z * oh + yy) * wo;
            for i0 in (0..wo).step_by(BLOCK) {
                let ni = (wo - i0).min(BLOCK);
                for o0 in (0..g.o).step_by(BLOCK) {
                    let no = (g.o - o0).min(BLOCK);
                    let src = &s.stage[(k * 2 * tx + i0) * og_pad + o0..];
                    assert!(src.len() >= (ni - 1) * og_pad + no);
                    // SAFETY: reads ni stage voxels of no channels (checked);
                    // writes voxels [i0, i0 + ni) of output row (z, yy) of
                    // channels [o0, o0 + no) of sample b, which only this
                    // task writes (per contract).
                    unsafe {
                        let dst = y.add(row_start + o0 * out_vol + i0);
                        transpose(src.as_ptr(), og_pad, dst, out_vol, ni, no);
                    }
                }
            }
        }
    }
}

/// Prefetches the 4×4 input rows of one tile row (the next channel's while
/// the current one is transformed: the rows come from all over the padded
/// input, ~10 % of the input transform's time otherwise).
fn prefetch_window(data: &[f32], at: usize, plane: usize, row: usize, tx: usize) {
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
unsafe fn transform_input_row(
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
unsafe fn transform_output_tile(
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

#[cfg(test)]
mod tests {
    use super::super::cpu::gemm_fwd;
    use super::super::direct::tests::{geom, max_rel, values};
    use super::*;

    /// Odd output sizes (tiles past the end), paddings 0–2, output channels
    /// that are not a multiple of the 32-channel blocks, rows of more than
    /// 16 tiles (two vectors of the input transform, the second partial),
    /// batch > 1; against the im2col + gemm reference.
    #[test]
    fn winograd_forward_matches_gemm_forward() {
        if direct::isa() != Some(Isa::Avx512) {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let cases = [
            geom(1, 16, 32, 1, [5, 6, 7], [3; 3], [1; 3], [1; 3], [1; 3]),
            geom(2, 20, 40, 1, [9, 8, 17], [3; 3], [1; 3], [1; 3], [1; 3]),
            geom(1, 16, 33, 1, [6, 7, 8], [3; 3], [1; 3], [0; 3], [1; 3]),
            geom(1, 17, 32, 1, [4, 5, 6], [3; 3], [1; 3], [2; 3], [1; 3]),
            geom(1, 24, 64, 1, [3, 4, 37], [3; 3], [1; 3], [1; 3], [1; 3]),
        ];
        for (i, g) in cases.into_iter().enumerate() {
            assert!(applies(Isa::Avx512, &g), "case {i} must take this route");
            let x = values(g.x_len(), 5 * i as u64);
            let w = values(g.w_len(), 5 * i as u64 + 1);
            let err = max_rel(&fwd(&g, &x, &w), &gemm_fwd(&g, &x, &w));
            assert!(err < 1e-5, "case {i}: relative error {err:e} for {g:?}");
        }
    }

    /// The 1-D identities: two outputs of a 3-tap correlation.
    #[test]
    fn kernel_transform_matches_direct_sum_in_1d() {
        // a kernel that varies only along x, applied to a window varying along x
        let w = [0.3f32, -1.2, 0.7];
        let d = [0.5f32, 2.0, -1.0, 4.0];
        let mut k = [[0.0f32; OB]; 27];
        for (tap, &v) in w.iter().enumerate() {
            k[tap] = [v; OB]; // kz = ky = 0
        }
        let u = transform_kernel(&k);
        let bt = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]];
        // ξz = ξy = 0 rows carry G·w along x (G's first row is [1, 0, 0])
        let m: Vec<f32> = (0..4).map(|ix| u[ix][5] * bt[ix]).collect();
        let y = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]];
        let expect = [
            w[0] * d[0] + w[1] * d[1] + w[2] * d[2],
            w[0] * d[1] + w[1] * d[2] + w[2] * d[3],
        ];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
