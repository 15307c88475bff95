//! Winograd F(2×2×2, 3×3×3) convolution for stride-1 3×3×3 kernels (f32,
//! AVX-512): the forward (hence also the input gradient, a forward of the
//! flipped kernel) and, at 128 channels, the weight gradient, with 64
//! multiplications per 2×2×2 output tile and channel pair instead of 216
//! (3.375× fewer than the direct kernels).
//!
//! Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016);
//! the transforms and their adjoints are in [`transform`]. Per sample and
//! block of tiles (a run of tile rows):
//! 1. the 4×4×4 input window of every tile and input channel is transformed
//!    to 64 values `V[ξ][c][tile]` (vectorised over 16 tiles of a tile row);
//! 2. forward: for each of the 64 positions `ξ`, `M[tile][ξ][o] =
//!    Σ_c V[ξ][c][tile] · U[ξ][c][o]` with the transformed weight `U`, run by
//!    the direct forward's channel-vector micro-kernel; each tile's 64 `M`
//!    vectors are transformed back to its 2×2×2 outputs and transposed into
//!    the output rows;
//! 3. weight gradient: the output gradient of each tile is transformed to 64
//!    values `Γ[ξ][tile][o]`, `P[ξ][c][o] += Σ_tile Γ[ξ][tile][o] ·
//!    V[ξ][c][tile]` runs on [`product`]'s kernel, and the one sum `P` is
//!    transformed back to 27 taps at the end.
//!
//! The input is zero-padded once ([`Padded`]) for an output rounded up to
//! even sizes; tiles past an odd output's end compute values that are not
//! written (forward) or see a zero output gradient (weight gradient).
//! Nothing volume-sized is allocated besides that copy and the result: `V`
//! and `M`/`Γ` are scratch of at most [`SCRATCH_MAX_BYTES`] per forward task
//! and [`WGRAD_BLOCK_BYTES`] per weight-gradient block (plus one tile row),
//! and `U` and `P` are `64/27` of the weight's size. The transforms only add
//! and halve, so the results stay within a few f32 ulps of the direct sums
//! (tested against the gemm reference and PyTorch).
//!
//! Measured (one thread, this crate's README): forward 1.1–1.4× the direct
//! kernels at 32–128 channels (48³–16³), equal at 128 channels and 12³.

mod product;
mod transform;

use super::direct::{self, Isa};
use super::geom::ConvGeom;
use super::padded::Padded;
use super::transpose::{transpose, BLOCK};
use crate::elem::{written_vec, SharedMut};
use product::{accumulate_products, CHANNELS, OUTPUTS};
use rayon::prelude::*;
use transform::{
    kernel_gradient, prefetch_window, transform_gradient_tile, transform_input_row,
    transform_input_row_pair, transform_output_tile, transform_weights, LANES,
};

/// Transformed values per tile (4³).
const XI: usize = 64;
/// Output channels per block of `U` and per forward micro-kernel call (two
/// vectors).
const OB: usize = 32;
/// Tiles per forward micro-kernel call.
const COLS: usize = 12;
/// Bounds of a task's `V` and `M` in bytes. Each forward task reads all of
/// `U`, so the budget is half of `U`'s size within these bounds: enough tiles
/// per task to reuse `U` (2 MiB for 128 channels, measured best) while `V`
/// and `M` stay near L2 (512 KiB for 32–64 channels).
const SCRATCH_MIN_BYTES: usize = 512 << 10;
const SCRATCH_MAX_BYTES: usize = 2 << 20;
/// Bound of the weight gradient's `V` and `Γ` per block of tiles: the
/// products reduce over a block's tiles, so longer blocks amortise the
/// accumulator loads and stores of each micro-kernel call.
const WGRAD_BLOCK_BYTES: usize = 4 << 20;
/// Fewest input channels for which the transforms pay off: below this the
/// output transform (64 loads per tile and channel vector) weighs too much
/// against the 64·c products it replaces.
const MIN_INPUT_CHANNELS: usize = 16;

/// `n` f32 values rounded up to an odd number of 64-byte lines: rows that
/// far apart fall into different L1 sets (the transforms touch 64 rows at
/// once; at a stride of 3 or 4 KiB they shared 4 sets and ran 3× slower).
fn conflict_free(n: usize) -> usize {
    (n.div_ceil(16) | 1) * 16
}

/// True when the forward and weight gradient of `g` run here: [`fits`],
/// unless `PETSEG_OPS3D_CONV=direct` turns Winograd off.
pub(super) fn applies(isa: Isa, g: &ConvGeom) -> bool {
    fits(isa, g) && !direct::winograd_disabled()
}

/// True when this module can compute `g`: f32 with AVX-512, a 3×3×3 kernel
/// with stride and dilation 1, one group, at least 32 output channels (the
/// micro-kernels' channel vectors) and [`MIN_INPUT_CHANNELS`] input channels.
fn fits(isa: Isa, g: &ConvGeom) -> bool {
    isa == Isa::Avx512
        && g.kernel == [3; 3]
        && g.stride == [1; 3]
        && g.dilation == [1; 3]
        && g.groups == 1
        && g.o >= OB
        && g.c >= MIN_INPUT_CHANNELS
}

/// True when the weight gradient of `g` runs here: [`applies`], with at
/// least [`WGRAD_MIN_CHANNELS`] input and output channels.
pub(super) fn applies_wgrad(isa: Isa, g: &ConvGeom) -> bool {
    applies(isa, g) && g.c >= WGRAD_MIN_CHANNELS && g.o >= WGRAD_MIN_CHANNELS
}

/// Fewest input and output channels for the Winograd weight gradient. Its
/// products shrink 3.375× like the forward's, but it transforms the input
/// and the output gradient of every tile and reduces over tiles in blocks;
/// measured on one core against the direct kernel (2026-11-29): 35 vs 40 ms
/// at 128 channels (16³), 21 vs 20 ms at 128 (12³), 30 vs 29 ms at 64 (24³)
/// and 85 vs 58 ms at 32 channels (48³), where the transforms dominate.
const WGRAD_MIN_CHANNELS: usize = 128;

/// Tiles of the output: `⌈out/2⌉` per axis.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    /// Tile counts along D, H, W.
    n: [usize; 3],
    /// Tile rows (`(tz, ty)` pairs) per task.
    rows_per_task: usize,
}

impl Tiles {
    /// At least `min_tasks` tasks per sample where there are enough tile
    /// rows, each within the scratch budget.
    fn new(g: &ConvGeom, og_pad: usize, min_tasks: usize, budget: usize) -> Self {
        let n = g.output.map(|o| o.div_ceil(2));
        let rows = n[0] * n[1];
        let f32s = std::mem::size_of::<f32>();
        let by_budget = (budget / (XI * (g.c + og_pad) * f32s) / n[2]).max(1);
        let most = by_budget.min(rows.div_ceil(min_tasks.max(1))).max(1);
        // the fewest tiles computed and dropped to fill the last micro-kernel call
        let waste = |r: usize| (r * n[2]).next_multiple_of(COLS) as f64 / (r * n[2]) as f64;
        let rows_per_task = (1..=most)
            .rev()
            .min_by(|&a, &b| waste(a).total_cmp(&waste(b)))
            .unwrap_or(1);
        Tiles { n, rows_per_task }
    }

    /// `(sample, first tile row, end tile row)` of every task.
    fn tasks(&self, samples: usize) -> Vec<(usize, usize, usize)> {
        let rows = self.n[0] * self.n[1];
        (0..samples)
            .flat_map(|b| {
                (0..rows)
                    .step_by(self.rows_per_task)
                    .map(move |r0| (b, r0, (r0 + self.rows_per_task).min(rows)))
            })
            .collect()
    }
}

/// What the tasks of one call share.
struct Call<'a> {
    g: &'a ConvGeom,
    /// `g` with its output rounded up to even sizes (whole tiles).
    even: ConvGeom,
    padded: Padded,
    /// Output channels rounded up to [`OB`].
    og_pad: usize,
    tiles: Tiles,
}

impl<'a> Call<'a> {
    fn new(g: &'a ConvGeom, x: &[f32], min_tasks: usize, budget: usize) -> Self {
        debug_assert!(fits(Isa::Avx512, g));
        let even = ConvGeom {
            output: g.output.map(|o| o.next_multiple_of(2)),
            ..*g
        };
        let og_pad = g.o.next_multiple_of(OB);
        Call {
            g,
            even,
            // loads of the last tile row run up to 2·LANES + 2 columns past its start
            padded: Padded::new(&even, x, 2 * LANES + 2),
            og_pad,
            tiles: Tiles::new(g, og_pad, min_tasks, budget),
        }
    }

    /// Sizes of the scratch for tile rows `[r0, r1)`: `V` and `M`/`Γ` hold
    /// `ntp` tiles (a multiple of [`COLS`]; the ones past the task's are
    /// computed and dropped).
    fn layout(&self, r0: usize, r1: usize) -> Layout {
        let nt = (r1 - r0) * self.tiles.n[2];
        let ntp = nt.next_multiple_of(COLS);
        // V's rows per ξ and M's rows per tile, spread over the cache sets
        Layout {
            nt,
            ntp,
            v_xi: conflict_free(self.g.c * ntp),
            m_tile: conflict_free(XI * self.og_pad),
        }
    }

    /// Offset in the padded input of the window of tile `(tz, ty, 0)` of
    /// sample `b`, channel 0, for each tile row `tz·n_y + ty` in `[r0, r1)`.
    fn window_bases(&self, b: usize, r0: usize, r1: usize) -> Vec<usize> {
        (r0..r1)
            .map(|r| {
                let (tz, ty) = (r / self.tiles.n[1], r % self.tiles.n[1]);
                // the window of tile (tz, ty, 0) starts at output row (2tz, 2ty)
                let row = 2 * tz * self.even.output[1] + 2 * ty;
                self.padded.tile_base(&self.even, b * self.g.c, row)
            })
            .collect()
    }

    /// `V[ξ][ci][tile]` of input channel `ci` for the tile rows whose window
    /// bases are `bases` (tile row `k` at column `k·tx` of the task's tiles).
    ///
    /// # Safety
    /// `v` must be valid for writes of `XI·lay.v_xi` values, and no other
    /// thread may write channel `ci`'s rows of it.
    unsafe fn transform_input_channel(
        &self,
        bases: &[usize],
        ci: usize,
        lay: &Layout,
        v: *mut f32,
    ) {
        let (c, tx, padded) = (self.g.c, self.tiles.n[2], &self.padded);
        let (plane, row) = (padded.ext[1] * padded.ext[2], padded.ext[2]);
        let data = padded.data();
        let reach = 3 * plane + 3 * row + 2 * tx.next_multiple_of(LANES) + 2;
        // rows of at most 8 tiles go two to a vector
        let per_call = if 2 * tx <= LANES { 2 } else { 1 };
        // consecutive tile rows share half their input rows
        for (i, pair) in bases.chunks(per_call).enumerate() {
            let k = i * per_call;
            for &base in pair {
                let src = base + ci * padded.chan();
                if ci + 1 < c {
                    prefetch_window(data, src + padded.chan(), plane, row, tx);
                }
                // the last load of the row ends 2·⌈tx/16⌉·16 + 2 columns past
                // its window start, within the rows, channels and slack that follow
                assert!(src + reach <= data.len());
            }
            assert!(ci * lay.ntp + (k + pair.len()) * tx <= lay.v_xi);
            // SAFETY: reads checked above; writes XI rows of tx values per
            // tile row at column k·tx of channel ci's row of V (checked
            // against the row length; the caller vouches for the rest).
            unsafe {
                let out = v.add(ci * lay.ntp + k * tx);
                let src0 = data.as_ptr().add(pair[0] + ci * padded.chan());
                if let [_, second] = pair {
                    let src1 = data.as_ptr().add(second + ci * padded.chan());
                    transform_input_row_pair(src0, src1, plane, row, tx, out, lay.v_xi);
                } else {
                    transform_input_row(src0, plane, row, tx, out, lay.v_xi);
                }
            }
        }
    }
}

/// Sizes of one task's scratch (see [`Call::layout`]).
struct Layout {
    /// Tiles of the task.
    nt: usize,
    /// Tiles in `V`, `M` and `Γ` (a multiple of [`COLS`]).
    ntp: usize,
    /// Elements between the rows of `V` for consecutive `ξ`.
    v_xi: usize,
    /// Elements between the rows of the forward's `M` for consecutive tiles.
    m_tile: usize,
}

impl Layout {
    /// Elements between the rows of the weight gradient's `Γ [ξ][tile][o]`
    /// for consecutive `ξ` (the products read one `ξ` over all tiles).
    fn gamma_xi(&self, og_pad: usize) -> usize {
        conflict_free(self.ntp * og_pad)
    }
}

/// Per-task buffers of the forward, reused across the tasks of one rayon worker.
#[derive(Default)]
struct Scratch {
    /// Transformed input `[ξ][c][tile]`.
    v: Vec<f32>,
    /// Products `M [tile][ξ][o]` (`og_pad` channels).
    m: Vec<f32>,
    /// One tile row's outputs `[oz·2 + oy][x][o]`.
    stage: Vec<f32>,
}

impl Scratch {
    /// Grows the buffers to `lay` (the stage to one tile row of `call`).
    fn fit(&mut self, call: &Call, lay: &Layout) {
        self.v.resize(XI * lay.v_xi, 0.0);
        self.m.resize(lay.ntp * lay.m_tile, 0.0);
        self.stage.resize(stage_len(call), 0.0);
    }
}

/// Elements of one tile row's stage `[oz·2 + oy][x][o]`.
fn stage_len(call: &Call) -> usize {
    4 * 2 * call.tiles.n[2] * call.og_pad
}

/// The kernel of a forward convolution, as it lies in memory.
#[derive(Clone, Copy)]
pub(super) enum Weights<'a> {
    /// `w [o, c, 3, 3, 3]`.
    Plain(&'a [f32]),
    /// The flipped adjoint of `w [c, o, 3, 3, 3]`: this forward is the input
    /// gradient of the convolution with weight `w`, whose kernel it reads
    /// flipped in space and with the channels swapped, in place (a flipped
    /// copy would be one more weight-sized buffer, the size of a deep
    /// layer's tensors; see `cpu::flipped_adjoint`).
    Flipped(&'a [f32]),
}

impl Weights<'_> {
    /// Writes the 27 taps of output channel `o`, input channel `ci` of the
    /// forward `g` into lane `lane` of `k`.
    fn kernel(self, g: &ConvGeom, o: usize, ci: usize, k: &mut [[f32; OB]; 27], lane: usize) {
        match self {
            Weights::Plain(w) => {
                for (tap, &v) in w[(o * g.c + ci) * 27..][..27].iter().enumerate() {
                    k[tap][lane] = v;
                }
            }
            Weights::Flipped(w) => {
                // reversing the flattened (kz, ky, kx) taps flips all three axes
                for (tap, &v) in w[(ci * g.o + o) * 27..][..27].iter().rev().enumerate() {
                    k[tap][lane] = v;
                }
            }
        }
    }
}

/// Forward convolution `y [n, o, out]` of `x [n, c, in]` and the kernel `w`
/// for a geometry [`fits`] accepts.
pub(super) fn fwd(g: &ConvGeom, x: &[f32], w: Weights) -> Vec<f32> {
    // enough tasks for every thread (as the direct kernels' tile plans)
    let min_tasks = (4 * rayon::current_num_threads()).div_ceil(g.n.max(1));
    // every task streams all of U once: the larger U, the more tiles per task
    let u_bytes = XI * g.c * g.o.next_multiple_of(OB) * std::mem::size_of::<f32>();
    let budget = (u_bytes / 2).clamp(SCRATCH_MIN_BYTES, SCRATCH_MAX_BYTES);
    let call = Call::new(g, x, min_tasks, budget);
    let u = transform_weights(g, w, call.og_pad);
    let tasks = call.tiles.tasks(g.n);
    let compute = |y: &mut [std::mem::MaybeUninit<f32>]| {
        let yp = SharedMut(y.as_mut_ptr().cast::<f32>());
        tasks
            .par_iter()
            .for_each_init(Scratch::default, |s, &(b, r0, r1)| {
                // SAFETY: task (b, r0..r1) writes only the output rows of its
                // tile rows of sample b; tasks are disjoint.
                unsafe { fwd_task(&call, &u, b, r0, r1, s, yp.ptr()) };
            });
    };
    // SAFETY: the tasks cover every tile row of every sample, and each tile
    // row writes all `o` channels of the output rows `2·tz + {0, 1}` ×
    // `2·ty + {0, 1}` that exist, all `wo` voxels of each.
    unsafe { written_vec(g.y_len(), compute) }
}

/// One forward task: tile rows `[r0, r1)` of sample `b`.
///
/// # Safety
/// `y` must be the dense output of the call's geometry, and no other thread
/// may write the output rows of these tile rows.
unsafe fn fwd_task(
    call: &Call,
    u: &[f32],
    b: usize,
    r0: usize,
    r1: usize,
    s: &mut Scratch,
    y: *mut f32,
) {
    let (g, og_pad, tx) = (call.g, call.og_pad, call.tiles.n[2]);
    let lay = call.layout(r0, r1);
    s.fit(call, &lay);
    let bases = call.window_bases(b, r0, r1);
    for ci in 0..g.c {
        // SAFETY: V holds XI·v_xi values (fit); this task owns the scratch.
        unsafe { call.transform_input_channel(&bases, ci, &lay, s.v.as_mut_ptr()) };
    }
    let offs: Vec<usize> = (0..g.c).map(|ci| ci * lay.ntp).collect();
    let nb = og_pad / OB;
    assert!(u.len() >= XI * nb * g.c * OB && s.m.len() >= lay.ntp * lay.m_tile);
    for xi in 0..XI {
        for bo in 0..nb {
            for t0 in (0..lay.ntp).step_by(COLS) {
                // SAFETY: reads V[xi][ci][t0..t0 + COLS] for every ci (rows of
                // ntp within v_xi), U[xi][bo] (c·OB values, checked), and
                // writes COLS tiles' OB channels at ξ of M (checked).
                unsafe {
                    direct::channel_vector_kernel(
                        Isa::Avx512,
                        s.v.as_ptr().add(xi * lay.v_xi + t0),
                        &offs,
                        u.as_ptr().add((xi * nb + bo) * g.c * OB),
                        s.m.as_mut_ptr()
                            .add(t0 * lay.m_tile + xi * og_pad + bo * OB),
                        lay.m_tile,
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
                // SAFETY: reads M[tile][ξ][ov..ov + 16] for all ξ (within the
                // task's tiles); writes 2×2×2 voxels of 16 channels into the
                // stage (4 × 2tx × og_pad).
                unsafe {
                    transform_output_tile(
                        s.m.as_ptr().add(tile * lay.m_tile + ov),
                        og_pad,
                        s.stage.as_mut_ptr().add(2 * t * og_pad + ov),
                        og_pad,
                        2 * tx * og_pad,
                    );
                }
            }
        }
        for (k, (z, yy)) in tile_row_rows(call, r) {
            let row_start = (b * g.o) * out_vol + (z * oh + yy) * wo;
            debug_assert!(z < od);
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

/// The output rows `(z, y)` of tile row `r` that exist, with their index
/// `oz·2 + oy` in the stage.
fn tile_row_rows(call: &Call, r: usize) -> impl Iterator<Item = (usize, (usize, usize))> {
    let (tz, ty) = (r / call.tiles.n[1], r % call.tiles.n[1]);
    let [od, oh, _] = call.g.output;
    [(0, 0), (0, 1), (1, 0), (1, 1)]
        .into_iter()
        .enumerate()
        .map(move |(k, (oz, oy))| (k, (2 * tz + oz, 2 * ty + oy)))
        .filter(move |&(_, (z, y))| z < od && y < oh)
}

/// Weight gradient `[c·27][o]` (tap-major, as the direct kernels' partial
/// sums) of `x [n, c, in]` and `gy [n, o, out]` for a geometry [`fits`]
/// accepts.
///
/// The blocks of tiles run one after the other, each in three parallel
/// steps: the input transform (over channels), the output-gradient transform
/// (over tile rows) and the products (over `ξ`, each adding into its own part
/// of the one sum `P`). Every element of `P` is thus summed in the same
/// order whatever the thread count, and no per-thread partial sums are kept.
pub(super) fn wgrad(g: &ConvGeom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let call = Call::new(g, x, 1, WGRAD_BLOCK_BYTES);
    let sums = PartialSum::new(&call);
    let mut p = vec![0.0f32; sums.len()];
    let (mut v, mut gamma) = (Vec::new(), Vec::new());
    for (b, r0, r1) in call.tiles.tasks(g.n) {
        let lay = call.layout(r0, r1);
        // a partial last block of channels reads whole blocks of V rows
        v.resize(XI * lay.v_xi + CHANNELS * lay.ntp, 0.0);
        gamma.resize(XI * lay.gamma_xi(call.og_pad), 0.0);
        let bases = call.window_bases(b, r0, r1);
        let vp = SharedMut(v.as_mut_ptr());
        (0..g.c).into_par_iter().for_each(|ci| {
            // SAFETY: V holds XI·v_xi values; each channel writes its own rows.
            unsafe { call.transform_input_channel(&bases, ci, &lay, vp.ptr()) };
        });
        transform_output_gradient(&call, gy, b, r0, r1, &lay, &mut gamma);
        p.par_chunks_mut(sums.len() / XI)
            .enumerate()
            .for_each(|(xi, p_xi)| add_products(&call, &sums, &lay, &v, &gamma, xi, p_xi));
    }
    kernel_gradients(&call, &p)
}

/// Adds `Σ_tile Γ[ξ][tile][o] · V[ξ][c][tile]` over the block's tiles to
/// the part `p_xi` of `P` at `ξ`.
fn add_products(
    call: &Call,
    sums: &PartialSum,
    lay: &Layout,
    v: &[f32],
    gamma: &[f32],
    xi: usize,
    p_xi: &mut [f32],
) {
    let (g, og_pad) = (call.g, call.og_pad);
    let g_xi = lay.gamma_xi(og_pad);
    assert!(gamma.len() >= XI * g_xi && v.len() >= XI * lay.v_xi);
    for c0 in (0..g.c).step_by(CHANNELS) {
        // a partial last block reads rows past channel c (the next ξ's, or
        // the slack after V); their sums are never read
        for v0 in (0..og_pad).step_by(OUTPUTS) {
            let at = sums.block(xi, c0, v0) - sums.block(xi, 0, 0);
            let block = &mut p_xi[at..][..CHANNELS * OUTPUTS];
            let v_rows = xi * lay.v_xi + c0 * lay.ntp;
            assert!(v_rows + CHANNELS * lay.ntp <= v.len());
            // SAFETY: reads Γ[xi][tile][v0..v0 + 32] for the ntp tiles
            // (within XI·g_xi, checked above) and CHANNELS rows of ntp values
            // of V from channel c0 at xi; writes the block (bounds-checked
            // slice); AVX-512 per `applies`.
            unsafe {
                accumulate_products(
                    gamma.as_ptr().add(xi * g_xi + v0),
                    og_pad,
                    v.as_ptr().add(v_rows),
                    lay.ntp,
                    lay.ntp,
                    block.as_mut_ptr(),
                );
            }
        }
    }
}

/// Layout of the weight-gradient sum `P`: blocks of [`CHANNELS`] input ×
/// [`OUTPUTS`] output channels, `[ξ][c / CHANNELS][o / 32][c mod CHANNELS][o
/// mod 32]`, so that the micro-kernel accumulates into one contiguous block.
struct PartialSum {
    c_blocks: usize,
    o_blocks: usize,
}

impl PartialSum {
    fn new(call: &Call) -> Self {
        PartialSum {
            c_blocks: call.g.c.div_ceil(CHANNELS),
            o_blocks: call.og_pad / OUTPUTS,
        }
    }

    fn len(&self) -> usize {
        XI * self.c_blocks * self.o_blocks * CHANNELS * OUTPUTS
    }

    /// Offset of the block of input channels from `c0` and output channels
    /// from `v0` (multiples of [`CHANNELS`] and [`OUTPUTS`]) at `ξ`.
    fn block(&self, xi: usize, c0: usize, v0: usize) -> usize {
        ((xi * self.c_blocks + c0 / CHANNELS) * self.o_blocks + v0 / OUTPUTS) * CHANNELS * OUTPUTS
    }

    /// Offset of the value for input channel `c` and output channel `o` at `ξ`.
    fn at(&self, xi: usize, c: usize, o: usize) -> usize {
        self.block(xi, c - c % CHANNELS, o - o % OUTPUTS) + (c % CHANNELS) * OUTPUTS + o % OUTPUTS
    }
}

/// `Γ[ξ][tile][o]` of tile rows `[r0, r1)` of sample `b` into `gamma`: the
/// output gradient of each tile (zero past the output's end) transformed,
/// and zero for the padding tiles past the block's. Rayon over tile rows.
fn transform_output_gradient(
    call: &Call,
    gy: &[f32],
    b: usize,
    r0: usize,
    r1: usize,
    lay: &Layout,
    gamma: &mut [f32],
) {
    let (g, og_pad, tx) = (call.g, call.og_pad, call.tiles.n[2]);
    let [_, oh, wo] = g.output;
    let out_vol = g.out_vol();
    let g_xi = lay.gamma_xi(og_pad);
    assert!(gamma.len() >= XI * g_xi);
    for xi in 0..XI {
        gamma[xi * g_xi + lay.nt * og_pad..][..(lay.ntp - lay.nt) * og_pad].fill(0.0);
    }
    let gp = SharedMut(gamma.as_mut_ptr());
    (r0..r1)
        .into_par_iter()
        .for_each_init(Vec::new, |stage: &mut Vec<f32>, r| {
            stage.clear();
            stage.resize(stage_len(call), 0.0);
            for (k, (z, yy)) in tile_row_rows(call, r) {
                let row_start = (b * g.o) * out_vol + (z * oh + yy) * wo;
                for o0 in (0..g.o).step_by(BLOCK) {
                    let no = (g.o - o0).min(BLOCK);
                    for i0 in (0..wo).step_by(BLOCK) {
                        let ni = (wo - i0).min(BLOCK);
                        let src = &gy[row_start + o0 * out_vol + i0..];
                        assert!(src.len() >= (no - 1) * out_vol + ni);
                        let dst = &mut stage[(k * 2 * tx + i0) * og_pad + o0..];
                        assert!(dst.len() >= (ni - 1) * og_pad + no);
                        // SAFETY: reads ni voxels of no channels of the
                        // output gradient row and writes them transposed into
                        // the stage (both checked).
                        unsafe {
                            transpose(src.as_ptr(), out_vol, dst.as_mut_ptr(), og_pad, no, ni)
                        };
                    }
                }
            }
            for t in 0..tx {
                let tile = (r - r0) * tx + t;
                for ov in (0..og_pad).step_by(LANES) {
                    // SAFETY: reads 2×2×2 voxels of 16 channels from the stage
                    // (4 × 2tx × og_pad); writes Γ[ξ][tile][ov..ov + 16] for
                    // all ξ (tile < nt, within XI·g_xi, checked), which only
                    // this tile row writes.
                    unsafe {
                        transform_gradient_tile(
                            stage.as_ptr().add(2 * t * og_pad + ov),
                            og_pad,
                            2 * tx * og_pad,
                            gp.ptr().add(tile * og_pad + ov),
                            g_xi,
                        );
                    }
                }
            }
        });
}

/// `[c·27][o]` from one partial sum `p` ([`PartialSum`]): `Gᵀ ⊗ Gᵀ ⊗ Gᵀ`
/// per input channel and 16 output channels.
fn kernel_gradients(call: &Call, p: &[f32]) -> Vec<f32> {
    let (g, blocks) = (call.g, PartialSum::new(call));
    let mut out = vec![0.0f32; 27 * g.c * g.o];
    out.par_chunks_mut(27 * g.o)
        .enumerate()
        .for_each(|(ci, dst)| {
            for ov in (0..g.o).step_by(LANES) {
                let n = (g.o - ov).min(LANES);
                let mut lanes = [[0.0f32; LANES]; XI];
                for (xi, l) in lanes.iter_mut().enumerate() {
                    l.copy_from_slice(&p[blocks.at(xi, ci, ov)..][..LANES]);
                }
                for (tap, v) in kernel_gradient(&lanes).iter().enumerate() {
                    dst[tap * g.o + ov..][..n].copy_from_slice(&v[..n]);
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::super::cpu::{
        conv_dgrad, flipped_adjoint, gemm_dgrad, gemm_fwd, gemm_wgrad, tap_major_to_weights,
    };
    use super::super::direct::tests::{geom, max_rel, values};
    use super::*;

    /// Odd output sizes (tiles past the end, down to a single voxel),
    /// paddings 0–2, output channels that are not a multiple of the
    /// 32-channel blocks, rows of more than 16 tiles (two vectors of the
    /// input transform, the second partial) and of at most 8 (two tile rows
    /// per vector, an odd count of rows), batch > 1.
    fn cases() -> Option<[ConvGeom; 6]> {
        if direct::isa() != Some(Isa::Avx512) {
            eprintln!("skipped: this CPU has no AVX-512F");
            return None;
        }
        Some([
            geom(1, 16, 32, 1, [5, 6, 7], [3; 3], [1; 3], [1; 3], [1; 3]),
            geom(2, 20, 40, 1, [9, 8, 17], [3; 3], [1; 3], [1; 3], [1; 3]),
            geom(1, 16, 33, 1, [6, 7, 8], [3; 3], [1; 3], [0; 3], [1; 3]),
            geom(1, 17, 32, 1, [4, 5, 6], [3; 3], [1; 3], [2; 3], [1; 3]),
            geom(1, 24, 64, 1, [3, 4, 37], [3; 3], [1; 3], [1; 3], [1; 3]),
            geom(1, 16, 32, 1, [1, 1, 1], [3; 3], [1; 3], [1; 3], [1; 3]),
        ])
    }

    #[test]
    fn winograd_forward_matches_gemm_forward() {
        for (i, g) in cases().into_iter().flatten().enumerate() {
            assert!(fits(Isa::Avx512, &g), "case {i} must fit this route");
            let x = values(g.x_len(), 5 * i as u64);
            let w = values(g.w_len(), 5 * i as u64 + 1);
            let err = max_rel(&fwd(&g, &x, Weights::Plain(&w)), &gemm_fwd(&g, &x, &w));
            assert!(err < 1e-5, "case {i}: relative error {err:e} for {g:?}");
        }
    }

    /// The input gradient of each case's adjoint (input and output channels
    /// swapped, padding 2 − p) runs this forward on the kernel read flipped
    /// in place ([`Weights::Flipped`]), and matches the col2im kernel.
    #[test]
    fn winograd_input_gradient_matches_col2im() {
        for (i, fwd_g) in cases().into_iter().flatten().enumerate() {
            let g = ConvGeom {
                c: fwd_g.o,
                o: fwd_g.c,
                input: fwd_g.output,
                output: fwd_g.input,
                padding: fwd_g.padding.map(|p| 2 - p),
                ..fwd_g
            };
            let adjoint = flipped_adjoint(&g).expect("stride 1, padding ≤ 2");
            assert!(fits(Isa::Avx512, &adjoint), "case {i} must take this route");
            let w = values(g.w_len(), 5 * i as u64 + 4);
            let gy = values(g.y_len(), 5 * i as u64 + 5);
            let err = max_rel(&conv_dgrad(&g, &gy, &w), &gemm_dgrad(&g, &gy, &w));
            assert!(err < 1e-5, "case {i}: relative error {err:e} for {g:?}");
        }
    }

    /// The same geometries (odd outputs: tiles whose output gradient is
    /// partly outside; input channels that are not a multiple of the
    /// product kernel's 8; batch 2), below the channel count the dispatch
    /// sends here.
    #[test]
    fn winograd_weight_gradient_matches_gemm_weight_gradient() {
        for (i, g) in cases().into_iter().flatten().enumerate() {
            let x = values(g.x_len(), 5 * i as u64 + 2);
            let gy = values(g.y_len(), 5 * i as u64 + 3);
            let ours = tap_major_to_weights(&g, &wgrad(&g, &x, &gy));
            let err = max_rel(&ours, &gemm_wgrad(&g, &x, &gy));
            assert!(err < 1e-5, "case {i}: relative error {err:e} for {g:?}");
        }
    }

    /// Each element of the weight gradient is summed in an order fixed by
    /// the geometry: the same bits on one thread and on three.
    #[test]
    fn winograd_weight_gradient_does_not_depend_on_threads() {
        let Some(cases) = cases() else { return };
        let g = cases[1];
        let x = values(g.x_len(), 11);
        let gy = values(g.y_len(), 12);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| wgrad(&g, &x, &gy))
        };
        assert_eq!(run(1), run(3));
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
        let u = transform::transform_kernel(&k);
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
