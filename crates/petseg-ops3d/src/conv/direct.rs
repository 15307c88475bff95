//! Direct f32 convolution with register-blocked SIMD micro-kernels (x86-64
//! AVX-512 or AVX2 + FMA, chosen at run time), for the forward and the weight
//! gradient of every non-pointwise convolution (the stride-1 input gradient is
//! a forward convolution, see `cpu::flipped_adjoint`).
//!
//! Layout of a tile of output rows `[r0, r1)` (of one depth plane) of one
//! sample and group: for every input block `(ci, kz)` the input rows read by
//! the tile are copied, zero-padded along W and split into `sh` phases along
//! H and `sw` phases along W (the strides), into
//! `buf [(ci, kz)][H phase][W phase][blk]`, one row every
//! `op = ⌈(W + 2·pw)/sw⌉` elements. Output column `ow` of tile row `t` then
//! reads tap `(ky, kx)` in run `(ky·dh mod sh, kx·dw mod sw)` at
//! `(t + ⌊ky·dh/sh⌋)·op + ow + ⌊kx·dw/sw⌋`: every tap is a contiguous run at a
//! fixed offset whatever the stride, padding or dilation, and each input row
//! is copied once per `kz`. Stride-1 convolutions skip the copy: they read
//! the same layout from an input padded once per call (`padded.rs`, one
//! phase, `op = E_w`). The column-vector forward computes the tile's output
//! with row pitch `op` (the `op − wo` extra columns per row are computed and
//! dropped) unless it can write whole rows straight into `y` (rows of whole
//! vectors, whole channel blocks). The channel-vector forward and the weight
//! gradient work on the output voxels only (`wo` columns per row, the
//! broadcast input addresses jumping over the padding between rows), except
//! for rows shorter than one block or of odd length ([`OcColumns`],
//! [`WgradColumns`]): at 12³–16³ the padding columns were 11–14 % of the work.
//!
//! * Forward micro-kernel: `OB` output channels × `NV` vectors of columns of
//!   accumulators; per tap, `NV` loads, `OB` broadcasts of the weights and
//!   `OB·NV` FMAs.
//! * Weight-gradient micro-kernel: `WG_NR` taps × 1–2 vectors of output
//!   channels of accumulators, summed over all columns of the tile; per
//!   column, 1–2 loads of the (transposed) output gradient, `WG_NR`
//!   broadcasts of the input and up to `2·WG_NR` FMAs.
//!
//! Machines without AVX2/FMA (and f64) use the im2col/shifted-row + `gemm`
//! kernels of `cpu.rs`, which also serve as the reference in the tests below.

use super::geom::ConvGeom;
use super::out_map::OutMap;
pub(super) use super::padded::Padded;
use super::transpose::{row_segments, transpose, transpose_strided, BLOCK};
use rayon::prelude::*;
use std::sync::OnceLock;

/// The SIMD instruction set the micro-kernels run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    /// 16-lane f32 vectors, 32 registers (AVX-512F with VL, so that the
    /// 256-bit steps of the lane sums may use all 32 registers too).
    Avx512,
    /// 8-lane f32 vectors with FMA, 16 registers.
    Avx2,
}

impl Isa {
    /// Lanes of one f32 vector.
    fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
        }
    }
    /// Columns computed by one forward micro-kernel call (`NV` vectors).
    fn col_block(self) -> usize {
        self.lanes() * FWD_NV
    }
    /// Output channels per forward micro-kernel call of the column-vector
    /// kernel: as many as the vector registers allow (`ob·3` accumulators).
    fn ob(self) -> usize {
        match self {
            Isa::Avx512 => 8,
            Isa::Avx2 => 4,
        }
    }
    /// The widest run of columns one micro-kernel call reads from a tap
    /// offset (sizes the slack of [`Padded`]).
    pub(super) fn widest_block(self) -> usize {
        self.col_block().max(self.oc_cols())
    }
    /// Columns per call of the channel-vector forward kernel (`OC_V` vectors
    /// of channels × this many columns of accumulators).
    fn oc_cols(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Avx2 => 6,
        }
    }
}

/// Channel vectors per call of the channel-vector forward kernel.
const OC_V: usize = 2;

/// Taps per pass of the channel-vector forward kernel.
const OC_CHUNK: usize = 96;

/// True when the forward of `g` runs the channel-vector kernel: at least
/// [`OC_V`] vectors of output channels per group (the column-vector kernel
/// then needs more broadcasts per FMA than this one needs loads).
fn channel_vectors(isa: Isa, g: &ConvGeom) -> bool {
    g.og() >= OC_V * isa.lanes()
}

/// Output channels per block of packed forward weights.
fn fwd_block(isa: Isa, g: &ConvGeom) -> usize {
    if channel_vectors(isa, g) {
        OC_V * isa.lanes()
    } else {
        isa.ob()
    }
}

/// Column vectors per forward micro-kernel call.
const FWD_NV: usize = 3;
/// Taps per weight-gradient micro-kernel call.
const WG_NR: usize = 12;

/// Largest `WG_NR × vectors × lanes` of one weight-gradient call (its result block).
const WG_OUT: usize = WG_NR * 2 * 16;

/// The best instruction set of this CPU, detected once; `None` when neither
/// AVX-512F/VL nor AVX2 + FMA is present (or off x86-64), in which case the
/// `gemm` kernels run.
pub(super) fn isa() -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    *ISA.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Option<Isa> {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
        Some(Isa::Avx512)
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Some(Isa::Avx2)
    } else {
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Option<Isa> {
    None
}

/// True when the environment variable `PETSEG_OPS3D_CONV` is `gemm`: the
/// `gemm` kernels then run everywhere (to compare both in one benchmark run).
pub(super) fn forced_gemm() -> bool {
    static GEMM: OnceLock<bool> = OnceLock::new();
    *GEMM.get_or_init(|| std::env::var("PETSEG_OPS3D_CONV").is_ok_and(|v| v == "gemm"))
}

/// True when the environment variable `PETSEG_OPS3D_CONV` is `direct`: the
/// direct kernels then run where the Winograd forward ([`super::winograd`])
/// would (to compare both in one benchmark run).
#[cfg(target_arch = "x86_64")]
pub(super) fn winograd_disabled() -> bool {
    static DIRECT: OnceLock<bool> = OnceLock::new();
    *DIRECT.get_or_init(|| std::env::var("PETSEG_OPS3D_CONV").is_ok_and(|v| v == "direct"))
}

/// `y[q·ystride + o] = Σ_t w[t·OC_V·lanes + o] · x[offs[t] + q]` for the
/// `isa.oc_cols()` columns `q` and `OC_V·lanes` channels `o`: the
/// channel-vector micro-kernel as a plain matrix product (used by the
/// Winograd forward for its 64 products per tile).
///
/// # Safety
/// Every pointer must be valid for the reads and writes above, and the CPU
/// must support `isa`.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn channel_vector_kernel(
    isa: Isa,
    x: *const f32,
    offs: &[usize],
    w: *const f32,
    y: *mut f32,
    ystride: usize,
) {
    // SAFETY: forwarded from the caller (all columns in one row: no split).
    unsafe { kernels::fwd_oc(isa, x, offs, w, y, ystride, false, isa.oc_cols(), 0) }
}

/// Upper bound of one tile's input buffer in bytes (stays in L2).
pub(super) const BUF_BUDGET_BYTES: usize = 384 << 10;

/// Bytes of scratch per output row of a tile (for tile planning): the input
/// rows copied per tile, or, for the channel-vector kernels reading a
/// once-padded input (no copy), the `[column][channel]` output tile, so that
/// those tiles grow to whole planes and each micro-kernel call covers more
/// columns (the deep, small-volume layers, where the per-call accumulator
/// traffic was ~10 % of the weight gradient).
pub(super) fn row_bytes(g: &ConvGeom) -> usize {
    let per_column = if Padded::applies(g) && g.og() >= 32 {
        g.og()
    } else {
        g.cg() * g.kernel[0] * g.stride[1] * g.stride[2]
    };
    per_column * row_pitch(g) * std::mem::size_of::<f32>()
}

/// Row pitch `op` of the buffers: a padded input row per W phase, long enough
/// for the widest read of the last output column (which may lie past the
/// right padding when the geometry's output is given explicitly, as for the
/// sub-pixel phases of a strided input gradient).
fn row_pitch(g: &ConvGeom) -> usize {
    let sw = g.stride[2];
    let reach = (g.output[2] - 1) * sw + (g.kernel[2] - 1) * g.dilation[2] + 1;
    (g.input[2] + 2 * g.padding[2]).max(reach).div_ceil(sw)
}

/// Geometry of the buffers of one tile (output rows `[r0, r1)` of one depth
/// plane).
struct TileLayout {
    /// H and W strides (numbers of phases).
    sh: usize,
    sw: usize,
    /// Row pitch of the buffer and of the output tile.
    op: usize,
    /// Padded column count of the tile: `rows·op` rounded up to whole micro-kernel blocks.
    cols_pad: usize,
    /// Columns the kernels may read from a tap offset: `cols_pad`, or one
    /// channel-vector block past the last row for compact [`OcColumns`].
    read_cols: usize,
    /// Length of one `(block, H phase, W phase)` run: its rows plus slack for
    /// the widest shift.
    blk: usize,
    /// Input blocks `(ci, kz)`.
    blocks: usize,
    /// Input rows per run.
    rows: usize,
}

impl TileLayout {
    /// The layout of rows `[r0, r1)` read from `input` (whose rows set the pitch).
    fn new(g: &ConvGeom, isa: Isa, input: &TileInput, r0: usize, r1: usize) -> Self {
        let [kd, kh, kw] = g.kernel;
        let [_, sh, sw] = g.stride;
        let (dh, dw) = (g.dilation[1], g.dilation[2]);
        debug_assert_eq!(r0 / g.output[1], (r1 - 1) / g.output[1]);
        let op = input.row_pitch(g);
        let cb = isa.col_block();
        let cols_pad = ((r1 - r0) * op).div_ceil(cb) * cb;
        let read_cols = cols_pad.max((r1 - r0) * op + isa.oc_cols());
        let h_shift = (kh - 1) * dh / sh;
        let rows = r1 - r0 + h_shift;
        // rows·op ≤ read_cols + h_shift·op: the rows fit, and so does the widest read
        let blk = read_cols + h_shift * op + (kw - 1) * dw / sw;
        TileLayout {
            sh,
            sw,
            op,
            cols_pad,
            read_cols,
            blk,
            blocks: g.cg() * kd,
            rows,
        }
    }

    /// Offset in the buffer of every tap `(ci, kz, ky, kx)`, in weight order,
    /// into `offs` (kept when it already holds this layout's offsets: they
    /// depend only on the geometry and `blk`).
    fn offsets(&self, g: &ConvGeom, offs: &mut (usize, Vec<usize>)) {
        if offs.0 == self.blk && !offs.1.is_empty() {
            return;
        }
        let [kd, kh, kw] = g.kernel;
        let (sh, sw, op, blk) = (self.sh, self.sw, self.op, self.blk);
        let (dh, dw) = (g.dilation[1], g.dilation[2]);
        offs.1.clear();
        for cz in 0..g.cg() * kd {
            for ky in 0..kh {
                let run = (cz * sh + (ky * dh) % sh) * sw;
                let row = (ky * dh) / sh * op;
                for kx in 0..kw {
                    offs.1
                        .push((run + (kx * dw) % sw) * blk + row + kx * dw / sw);
                }
            }
        }
        offs.0 = blk;
    }
}

/// Fills `buf [(ci, kz)][H phase][W phase][blk]` with the zero-padded,
/// phase-split input rows of the group `xg` read by output rows `[r0, r1)`
/// (one depth plane): run `(ci, kz, hph, wph)` row `j` holds padded input row
/// `(oy0 + j)·sh + hph`, columns `c ≡ wph (mod sw)`.
fn fill(g: &ConvGeom, xg: &[f32], r0: usize, r1: usize, lay: &TileLayout, buf: &mut Vec<f32>) {
    let kd = g.kernel[0];
    let (iw, pw, in_vol, sh, sw, op) =
        (g.input[2], g.padding[2], g.in_vol(), lay.sh, lay.sw, lay.op);
    let (id, ih) = (g.input[0] as isize, g.input[1] as isize);
    buf.resize(lay.blocks * sh * sw * lay.blk, 0.0);
    let (oz, oy0) = (r0 / g.output[1], r0 % g.output[1]);
    debug_assert!(r1 > r0);
    // per W phase: the first input column i0 in it (padded column c = i0 + pw ≡
    // ph mod sw), its index in the phase row, and how many input columns follow
    let spans: Vec<(usize, usize, usize)> = (0..sw)
        .map(|ph| {
            let i0 = (ph + sw - pw % sw) % sw;
            let n = if i0 < iw { (iw - i0).div_ceil(sw) } else { 0 };
            (i0, (i0 + pw) / sw, n)
        })
        .collect();
    for ci in 0..g.cg() {
        let xc = &xg[ci * in_vol..(ci + 1) * in_vol];
        for kz in 0..kd {
            let iz = (oz * g.stride[0] + kz * g.dilation[0]) as isize - g.padding[0] as isize;
            for hph in 0..sh {
                let runs = &mut buf[((ci * kd + kz) * sh + hph) * sw * lay.blk..][..sw * lay.blk];
                for j in 0..lay.rows {
                    let iy = ((oy0 + j) * sh + hph) as isize - g.padding[1] as isize;
                    let src = (iz >= 0 && iz < id && iy >= 0 && iy < ih)
                        .then(|| &xc[(iz * ih + iy) as usize * iw..][..iw]);
                    if sw == 2 {
                        // both W phases in one pass over the row
                        let (even, odd) = runs.split_at_mut(lay.blk);
                        let (even, odd) = (&mut even[j * op..][..op], &mut odd[j * op..][..op]);
                        even.fill(0.0);
                        odd.fill(0.0);
                        if let Some(src) = src {
                            deinterleave2(src, pw, even, odd);
                        }
                        continue;
                    }
                    for (wph, &(i0, first, n)) in spans.iter().enumerate() {
                        let row = &mut runs[wph * lay.blk + j * op..][..op];
                        let Some(src) = src else {
                            row.fill(0.0);
                            continue;
                        };
                        if sw == 1 {
                            row[..pw].fill(0.0);
                            row[pw..pw + iw].copy_from_slice(src);
                            row[pw + iw..].fill(0.0);
                            continue;
                        }
                        row.fill(0.0);
                        let src = &src[i0.min(iw)..];
                        for (k, d) in row[first..first + n].iter_mut().enumerate() {
                            *d = src[k * sw];
                        }
                    }
                }
                for wph in 0..sw {
                    runs[wph * lay.blk + lay.rows * op..(wph + 1) * lay.blk].fill(0.0);
                }
            }
        }
    }
}

/// Splits an input row into the two W phases of a stride-2 convolution:
/// padded column `c = i + pw` of `src[i]` goes to phase `c mod 2` at index
/// `c / 2` (`even`, `odd` are zeroed phase rows long enough for them). Written
/// as pairs so that the compiler vectorises the de-interleave.
fn deinterleave2(src: &[f32], pw: usize, even: &mut [f32], odd: &mut [f32]) {
    let pairs = src.len() / 2;
    // src[2m] → first[m + a], src[2m + 1] → second[m + b]
    let (first, second, a, b) = if pw.is_multiple_of(2) {
        (even, odd, pw / 2, pw / 2)
    } else {
        (odd, even, pw / 2, pw / 2 + 1)
    };
    for ((f, s), pair) in first[a..a + pairs]
        .iter_mut()
        .zip(&mut second[b..b + pairs])
        .zip(src.chunks_exact(2))
    {
        *f = pair[0];
        *s = pair[1];
    }
    if let [.., last] = src {
        if src.len() % 2 == 1 {
            first[a + pairs] = *last;
        }
    }
}

/// Weights of one group packed for the forward micro-kernel:
/// `[o-block][tap][ob]` (`ob` from [`fwd_block`]), zero for the channels
/// past `og`. Rayon over `(block, tap)` rows: the transposing copy is a
/// serial step of every convolution call otherwise (~3 % of a 128-channel
/// convolution's wall time at 16³ on two threads).
pub(super) fn pack_weights(isa: Isa, g: &ConvGeom, wg: &[f32]) -> Vec<f32> {
    let (og, taps, ob) = (g.og(), g.krows(), fwd_block(isa, g));
    let nb = og.div_ceil(ob);
    let mut p = vec![0.0; nb * taps * ob];
    p.par_chunks_mut(ob)
        .with_min_len(PACK_ROWS_PER_TASK)
        .enumerate()
        .for_each(|(row, dst)| {
            let (b, t) = (row / taps, row % taps);
            for (oi, d) in dst.iter_mut().enumerate().take(og.saturating_sub(b * ob)) {
                *d = wg[(b * ob + oi) * taps + t];
            }
        });
    p
}

/// Packed `(block, tap)` rows per rayon task of [`pack_weights`].
const PACK_ROWS_PER_TASK: usize = 512;

/// Reusable per-task scratch buffers.
#[derive(Default)]
pub(super) struct Scratch {
    buf: Vec<f32>,
    tile: Vec<f32>,
    /// Tap offsets and the `blk` they were computed for (one geometry per
    /// scratch: scratches live for one kernel call).
    offs: (usize, Vec<usize>),
}

/// Where the micro-kernels of one tile (one sample and group) read the input.
#[derive(Clone, Copy)]
pub(super) enum TileInput<'a> {
    /// The group's channels `[cg, D, H, W]`, copied per tile into the
    /// scratch buffer by [`fill`] (any stride).
    Rows(&'a [f32]),
    /// The whole input padded once ([`Padded`], stride 1), with the index of
    /// the group's first channel in it.
    Padded(&'a Padded, usize),
}

impl TileInput<'_> {
    /// Row pitch of the input the kernels read, which is also the tile's:
    /// the buffer's for per-tile copies, the padded extent along W otherwise
    /// (at least the buffer's; larger when shared with wider geometries).
    fn row_pitch(&self, g: &ConvGeom) -> usize {
        match self {
            TileInput::Rows(_) => row_pitch(g),
            TileInput::Padded(p, _) => p.ext[2],
        }
    }

    /// Makes the input of output rows `[r0, r1)` readable by the
    /// micro-kernels: fills `s.offs` with the tap offsets and returns the
    /// pointer they are relative to, valid for reads of
    /// `max(offs) + lay.read_cols` elements (checked).
    fn prepare(
        &self,
        g: &ConvGeom,
        lay: &TileLayout,
        r0: usize,
        r1: usize,
        s: &mut Scratch,
    ) -> *const f32 {
        match *self {
            TileInput::Rows(xg) => {
                fill(g, xg, r0, r1, lay, &mut s.buf);
                lay.offsets(g, &mut s.offs);
                assert!(s.buf.len() >= lay.blocks * lay.sh * lay.sw * lay.blk);
                s.buf.as_ptr()
            }
            TileInput::Padded(p, first_channel) => {
                // the offsets depend only on the geometry: computed once per scratch
                if s.offs.0 != PADDED_OFFSETS || s.offs.1.is_empty() {
                    p.tap_offsets(g, &mut s.offs.1);
                    s.offs.0 = PADDED_OFFSETS;
                }
                let base = p.tile_base(g, first_channel, r0);
                // tap offsets grow with (ci, kz, ky, kx): the last is the largest
                let reach = s.offs.1.last().copied().unwrap_or(0) + lay.read_cols;
                assert!(
                    base + reach <= p.data().len(),
                    "padded input too short for the tile"
                );
                p.data()[base..].as_ptr()
            }
        }
    }
}

/// Key of [`Scratch::offs`] when it holds [`Padded`] tap offsets (a buffer
/// layout's key is its `blk`, which is never this large).
const PADDED_OFFSETS: usize = usize::MAX;

/// The columns of a channel-vector forward tile and where each block of
/// `oc_cols` of them reads the input.
///
/// Compact when every output row holds at least one block (`wo ≥ oc_cols`):
/// the tile's columns are the output voxels of its rows, `wo` per row, and a
/// block that starts at column `ow` of a row and runs past its end continues
/// at the start of the next row, `op − wo` input columns further (the
/// micro-kernel's `split`). No column is computed and dropped (the padding
/// columns cost `2·pw / wo` of the work otherwise: 11 % at 16³, 14 % at 12³).
/// Otherwise the columns follow the input rows' pitch `op` and the `op − wo`
/// extra columns per row are computed and dropped.
struct OcColumns {
    /// Columns of the tile, a multiple of `oc_cols` (the blocks past the last
    /// row compute dropped values).
    count: usize,
    /// Tile columns per output row (`wo` when compact, else `op`).
    pitch: usize,
    /// Input columns between the end of one output row and the start of the
    /// next (`op − wo`; 0 when not compact).
    skip: usize,
    /// Input row pitch.
    op: usize,
    block: usize,
}

impl OcColumns {
    fn new(isa: Isa, g: &ConvGeom, lay: &TileLayout, rows: usize) -> Self {
        let (wo, block, op) = (g.output[2], isa.oc_cols(), lay.op);
        if wo >= block {
            OcColumns {
                count: (rows * wo).div_ceil(block) * block,
                pitch: wo,
                skip: op - wo,
                op,
                block,
            }
        } else {
            OcColumns {
                count: lay.cols_pad,
                pitch: op,
                skip: 0,
                op,
                block,
            }
        }
    }

    /// Input offset of the block starting at tile column `c0`, and its split:
    /// the number of its columns that lie in that row (`block` when all do,
    /// or when rows follow each other without a gap).
    /// Compact reads end before `rows·op + block ≤ read_cols` (every block
    /// starts within the tile's rows, and its columns past a row's end lie
    /// at the start of the next); the others before `cols_pad`.
    fn block(&self, c0: usize) -> (usize, usize) {
        let (r, ow) = (c0 / self.pitch, c0 % self.pitch);
        let split = if self.skip == 0 {
            self.block
        } else {
            (self.pitch - ow).min(self.block)
        };
        (r * self.op + ow, split)
    }
}

/// Input blocks `(ci, kz, ky)` per pass of the forward micro-kernel over a
/// column block: the accumulators go back to the output tile between passes
/// so that the input window read by one pass stays in L1.
const FWD_KK_CHUNK: usize = 64;

/// Forward of output rows `[r0, r1)` of one sample and group, written
/// where `out` places them.
///
/// # Safety
/// `y_g` must point at the group's first output channel of this sample,
/// valid for writes of rows `[r0, r1)` of its `og` channels as `out` lays
/// them out, and no other thread may write those voxels.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn fwd_tile(
    isa: Isa,
    g: &ConvGeom,
    input: TileInput,
    wpk: &[f32],
    r0: usize,
    r1: usize,
    s: &mut Scratch,
    y_g: *mut f32,
    out: &OutMap,
) {
    let lay = TileLayout::new(g, isa, &input, r0, r1);
    let x0 = input.prepare(g, &lay, r0, r1, s);
    let (og, taps, wo, chan, ob) = (g.og(), g.krows(), g.output[2], out.chan, fwd_block(isa, g));
    let nb = og.div_ceil(ob);
    assert!(wpk.len() >= nb * taps * ob);
    if channel_vectors(isa, g) {
        // tile [column][channel]: each call computes oc_cols columns × ob channels
        let cols = OcColumns::new(isa, g, &lay, r1 - r0);
        let og_pad = nb * ob;
        s.tile.resize(cols.count * og_pad, 0.0);
        // passes over OC_CHUNK taps keep their weights and input lines in L1
        for t0 in (0..taps).step_by(OC_CHUNK) {
            let offs = &s.offs.1[t0..(t0 + OC_CHUNK).min(taps)];
            for b in 0..nb {
                for c0 in (0..cols.count).step_by(isa.oc_cols()) {
                    let (at, split) = cols.block(c0);
                    // SAFETY: reads x0[off + at + q] (+ op − wo past the
                    // split) for q < oc_cols, below off + read_cols (see
                    // `OcColumns::block`), within the reach `prepare` checked;
                    // reads the packed weights of block b from tap t0 (checked
                    // length); reads/writes oc_cols rows of ob channels of the
                    // tile (count × og_pad, count a multiple of oc_cols).
                    unsafe {
                        let x = x0.add(at);
                        let w = wpk.as_ptr().add((b * taps + t0) * ob);
                        let y = s.tile.as_mut_ptr().add(c0 * og_pad + b * ob);
                        kernels::fwd_oc(isa, x, offs, w, y, og_pad, t0 > 0, split, cols.skip);
                    }
                }
            }
        }
        for (tile_col, r, len) in row_segments(r0, r1, wo, cols.pitch, out.is_dense(wo)) {
            let start = out.row_start(r);
            for i0 in (0..len).step_by(BLOCK) {
                let ni = (len - i0).min(BLOCK);
                for o0 in (0..og).step_by(BLOCK) {
                    let no = (og - o0).min(BLOCK);
                    let src = &s.tile[(tile_col + i0) * og_pad + o0..];
                    assert!(src.len() >= (ni - 1) * og_pad + no);
                    // SAFETY: reads ni tile columns of no channels (checked);
                    // writes ni voxels of channels [o0, o0 + no) from column
                    // i0 of row r (of the run of rows, when merged) of this
                    // group's output, within rows [r0, r1), exclusive per contract.
                    unsafe {
                        let dst = y_g.add(o0 * chan + start + i0 * out.col);
                        transpose_strided(src.as_ptr(), og_pad, dst, chan, out.col, ni, no);
                    }
                }
            }
        }
        return;
    }
    let cb = isa.col_block();
    let chunk = FWD_KK_CHUNK * g.kernel[2];
    if og.is_multiple_of(ob) && wo.is_multiple_of(isa.lanes()) && out.col == 1 {
        // every row is whole vectors and every block whole channels: the
        // micro-kernel writes straight into y, row by row (no tile, no copy,
        // no computed-and-dropped columns)
        for r in r0..r1 {
            let xr = x0.wrapping_add((r - r0) * lay.op);
            for c0 in (0..wo).step_by(cb) {
                let nv = (wo - c0).min(cb) / isa.lanes();
                for t0 in (0..taps).step_by(chunk) {
                    let offs = &s.offs.1[t0..(t0 + chunk).min(taps)];
                    for b in 0..nb {
                        // SAFETY: reads x0[(r − r0)·op + c0 + off + j] for j < nv·lanes
                        // ≤ wo − c0, below (rows − 1)·op + wo + max(off) ≤ the reach
                        // `prepare` checked; the packed weights of block b from tap t0
                        // (checked length); reads/writes columns [c0, c0 + nv·lanes) of
                        // row r of channels b·ob.. b·ob + ob ≤ og of this group's output,
                        // exclusive per contract.
                        unsafe {
                            let w = wpk.as_ptr().add((b * taps + t0) * ob);
                            let y = y_g.add(b * ob * chan + out.row_start(r) + c0);
                            kernels::fwd(isa, nv, xr.add(c0), offs, w, y, chan, t0 > 0);
                        }
                    }
                }
            }
        }
        return;
    }
    s.tile.resize(nb * ob * lay.cols_pad, 0.0);
    for c0 in (0..lay.cols_pad).step_by(cb) {
        for t0 in (0..taps).step_by(chunk) {
            let offs = &s.offs.1[t0..(t0 + chunk).min(taps)];
            for b in 0..nb {
                // SAFETY: the kernel reads x0[off + c0 + j] for j < cb with
                // c0 + cb ≤ cols_pad, within the reach `prepare` checked, the packed weights of block b from tap t0
                // (checked length), and reads/writes `ob` rows of cb columns of
                // the tile, which has nb·ob rows of cols_pad.
                unsafe {
                    let x = x0.add(c0);
                    let w = wpk.as_ptr().add((b * taps + t0) * ob);
                    let y = s.tile.as_mut_ptr().add(b * ob * lay.cols_pad + c0);
                    kernels::fwd(isa, FWD_NV, x, offs, w, y, lay.cols_pad, t0 > 0);
                }
            }
        }
    }
    for o in 0..og {
        for r in r0..r1 {
            let src = &s.tile[o * lay.cols_pad + (r - r0) * lay.op..][..wo];
            // SAFETY: row r of channel o lies in this group's output, exclusive per contract.
            let dst = unsafe { y_g.add(o * chan + out.row_start(r)) };
            if out.col == 1 {
                // SAFETY: as above, wo contiguous voxels.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, wo) };
            } else {
                for (i, &v) in src.iter().enumerate() {
                    // SAFETY: as above, wo voxels `col` apart.
                    unsafe { *dst.add(i * out.col) = v };
                }
            }
        }
    }
}

/// Weight gradient of output rows `[r0, r1)` of one sample and group, added
/// to `acc_g [cg·kd·kh·kw][og]` (tap-major: the caller transposes the sum). `gy_g` is the group's output gradient of this
/// sample (`og` channels).
///
/// The micro-kernel runs along the tile's columns (the reduction) with
/// vectors over output channels: the output gradient is transposed to
/// slabs of `[column][channel]` ([`WgradSlabs`]; zero in the dropped columns
/// and padded channels), and
/// each column adds `gy[column, o-vector] · x[tap, column]` (one broadcast
/// per tap) into `WG_NR` taps × 1–2 channel vectors of accumulators. No lane
/// sums are needed and each call covers the whole tile.
#[allow(clippy::too_many_arguments)]
pub(super) fn wgrad_tile(
    isa: Isa,
    g: &ConvGeom,
    input: TileInput,
    gy_g: &[f32],
    r0: usize,
    r1: usize,
    s: &mut Scratch,
    acc_g: &mut [f32],
) {
    let lay = TileLayout::new(g, isa, &input, r0, r1);
    let x0 = input.prepare(g, &lay, r0, r1, s);
    let (og, taps, wo, lanes) = (g.og(), g.krows(), g.output[2], isa.lanes());
    let cols = WgradColumns::new(g, &lay, r1 - r0);
    let slabs = WgradSlabs::new(og, lanes, cols.count());
    transpose_output_gradient(g, gy_g, r0, r1, cols.pitch(), &slabs, &mut s.tile);
    assert!(acc_g.len() >= og * taps);
    let mut out = [0.0f32; WG_OUT];
    let mut offs = [0usize; WG_NR];
    // taps (ci, kz, ky, 0..3) at consecutive offsets, in whole triples per call
    let triples = g.kernel[2] == 3 && g.stride[2] == 1 && g.dilation[2] == 1;
    const _: () = assert!(WG_NR.is_multiple_of(3));
    debug_assert!(wo <= lay.op);
    for v0 in (0..slabs.nvec).step_by(2) {
        let (base, width) = slabs.slab(v0);
        let nv = width / lanes;
        for t0 in (0..taps).step_by(WG_NR) {
            let nt = (taps - t0).min(WG_NR);
            // taps past the end repeat the first one; their sums are dropped
            for (j, off) in offs.iter_mut().enumerate() {
                *off = s.offs.1[t0 + if j < nt { j } else { 0 }];
            }
            // SAFETY: reads tile[base + c·width + l] for c < cols.count()
            // and l < width (the slab lies in the tile, see
            // `WgradSlabs::slab`), and x0[off + r·x_pitch + c] for r < rows,
            // c < ncols, below off + cols_pad (see `WgradColumns`), within
            // the reach `prepare` checked; writes out[..WG_NR·nv·lanes] ≤ WG_OUT.
            unsafe {
                let gy = s.tile.as_ptr().add(base);
                kernels::wgrad(isa, triples, nv, gy, width, x0, &offs, cols, &mut out);
            }
            let n = width.min(og - v0 * lanes);
            for j in 0..nt {
                let dst = &mut acc_g[(t0 + j) * og + v0 * lanes..][..n];
                for (a, &v) in dst.iter_mut().zip(&out[j * width..][..n]) {
                    *a += v;
                }
            }
        }
    }
}

/// The columns a weight-gradient tile sums over.
///
/// `Rows` (when `wo` is even, as the paired-column kernel needs): the output
/// voxels of the tile's rows, `ncols = wo` per row, row `r` reading the input
/// `x_pitch = op` columns after row `r − 1`; no padding column is summed
/// (they are `2·pw / wo` of the columns otherwise). `Padded`: the `cols_pad`
/// columns of the rows at pitch `op`, whose `op − wo` padding columns per row
/// carry a zero output gradient.
#[derive(Clone, Copy)]
pub(super) enum WgradColumns {
    Rows {
        rows: usize,
        ncols: usize,
        x_pitch: usize,
    },
    Padded {
        cols_pad: usize,
        op: usize,
    },
}

impl WgradColumns {
    fn new(g: &ConvGeom, lay: &TileLayout, rows: usize) -> Self {
        let wo = g.output[2];
        if wo.is_multiple_of(2) {
            WgradColumns::Rows {
                rows,
                ncols: wo,
                x_pitch: lay.op,
            }
        } else {
            WgradColumns::Padded {
                cols_pad: lay.cols_pad,
                op: lay.op,
            }
        }
    }

    /// Columns of the transposed output gradient.
    fn count(self) -> usize {
        match self {
            WgradColumns::Rows { rows, ncols, .. } => rows * ncols,
            WgradColumns::Padded { cols_pad, .. } => cols_pad,
        }
    }

    /// Tile columns per output row.
    fn pitch(self) -> usize {
        match self {
            WgradColumns::Rows { ncols, .. } => ncols,
            WgradColumns::Padded { op, .. } => op,
        }
    }
}

/// Layout of the transposed output gradient of a weight-gradient tile:
/// slabs of two channel vectors (the last may hold one), each
/// `[column][channel]` over the tile's `cols_pad` columns, so that a
/// micro-kernel call (one slab) reads one contiguous run instead of a strided
/// part of every `[column][all channels]` row.
struct WgradSlabs {
    /// Channel vectors (`⌈og / lanes⌉`).
    nvec: usize,
    lanes: usize,
    cols_pad: usize,
}

impl WgradSlabs {
    fn new(og: usize, lanes: usize, cols_pad: usize) -> Self {
        WgradSlabs {
            nvec: og.div_ceil(lanes),
            lanes,
            cols_pad,
        }
    }

    /// Elements of the whole tile.
    fn len(&self) -> usize {
        self.nvec * self.lanes * self.cols_pad
    }

    /// Offset and width (channels per column) of the slab starting at
    /// channel vector `v0` (even).
    fn slab(&self, v0: usize) -> (usize, usize) {
        let width = (self.nvec - v0).min(2) * self.lanes;
        (v0 * self.lanes * self.cols_pad, width)
    }

    /// Index of channel `o` of column `c`.
    fn index(&self, o: usize, c: usize) -> usize {
        let v0 = o / self.lanes / 2 * 2;
        let (base, width) = self.slab(v0);
        base + c * width + o - v0 * self.lanes
    }
}

/// Writes the output gradient of rows `[r0, r1)` (one depth plane) of the
/// group `gy_g` into `tile` in the layout of `slabs`: column
/// `(r − r0)·pitch + ow` holds `gy[o, r, ow]`; the other columns (`ow ≥ wo`,
/// and past the last row) and the padded channels are zero, so they add
/// nothing to the sums.
fn transpose_output_gradient(
    g: &ConvGeom,
    gy_g: &[f32],
    r0: usize,
    r1: usize,
    pitch: usize,
    slabs: &WgradSlabs,
    tile: &mut Vec<f32>,
) {
    let (og, wo, out_vol, lanes) = (g.og(), g.output[2], g.out_vol(), slabs.lanes);
    tile.resize(slabs.len(), 0.0);
    // every element is written below when the columns are exactly the rows'
    // voxels and the channels whole vectors; otherwise the padding columns,
    // the columns past the last row or the padded channels must read zero
    let covered = pitch == wo && slabs.cols_pad == (r1 - r0) * wo && og.is_multiple_of(lanes);
    if !covered {
        tile.fill(0.0);
    }
    // 16 × 16 blocks (channels × columns): read as channel rows, written as
    // column rows; 16 channels never straddle a slab (slabs start at
    // multiples of 2·lanes ≥ 16)
    for (tile_col, r, len) in row_segments(r0, r1, wo, pitch, true) {
        let voxel = r * wo;
        for o0 in (0..og).step_by(BLOCK) {
            let no = (og - o0).min(BLOCK);
            for i0 in (0..len).step_by(BLOCK) {
                let ni = (len - i0).min(BLOCK);
                let src = &gy_g[o0 * out_vol + voxel + i0..];
                assert!(src.len() >= (no - 1) * out_vol + ni);
                let at = slabs.index(o0, tile_col + i0);
                let (_, width) = slabs.slab(o0 / lanes / 2 * 2);
                assert!(at + (ni - 1) * width + no <= tile.len());
                // SAFETY: reads no channel rows of ni voxels (checked), writes
                // ni tile columns of no channels, within one slab (checked).
                unsafe {
                    transpose(
                        src.as_ptr(),
                        out_vol,
                        tile[at..].as_mut_ptr(),
                        width,
                        no,
                        ni,
                    );
                }
            }
        }
    }
}

/// The micro-kernels, one instance per instruction set.
mod kernels {
    use super::{Isa, WgradColumns, FWD_NV, OC_V, WG_NR, WG_OUT};

    /// `y[o·ystride + j] (+)= Σ_t w[t·ob + o] · x[offs[t] + j]` for
    /// `o < isa.ob()`, `j < nv·lanes` (`nv` = 1, 2 or [`FWD_NV`] vectors);
    /// `+=` when `accumulate`.
    ///
    /// # Safety
    /// Every pointer must be valid for the reads and writes above, and the
    /// CPU must support `isa`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn fwd(
        isa: Isa,
        nv: usize,
        x: *const f32,
        offs: &[usize],
        w: *const f32,
        y: *mut f32,
        ystride: usize,
        accumulate: bool,
    ) {
        debug_assert!((1..=FWD_NV).contains(&nv));
        // SAFETY: forwarded from the caller; `isa` was detected on this CPU.
        unsafe {
            match (isa, nv) {
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, 1) => avx512::fwd::<8, 1>(x, offs, w, y, ystride, accumulate),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, 2) => avx512::fwd::<8, 2>(x, offs, w, y, ystride, accumulate),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, _) => avx512::fwd::<8, FWD_NV>(x, offs, w, y, ystride, accumulate),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, 1) => avx2::fwd::<4, 1>(x, offs, w, y, ystride, accumulate),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, 2) => avx2::fwd::<4, 2>(x, offs, w, y, ystride, accumulate),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, _) => avx2::fwd::<4, FWD_NV>(x, offs, w, y, ystride, accumulate),
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!("no SIMD kernels off x86-64"),
            }
        }
    }

    /// `y[q·ystride + o] (+)= Σ_t w[t·OC_V·lanes + o] · x[offs[t] + q + s_q]`
    /// for `q < isa.oc_cols()`, `o < OC_V·lanes`, where `s_q` is 0 for
    /// `q < split` and `skip` after (the block continues on the next row);
    /// `+=` when `accumulate`. `1 ≤ split ≤ oc_cols`.
    ///
    /// # Safety
    /// As for [`fwd`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn fwd_oc(
        isa: Isa,
        x: *const f32,
        offs: &[usize],
        w: *const f32,
        y: *mut f32,
        ystride: usize,
        accumulate: bool,
        split: usize,
        skip: usize,
    ) {
        /// One instance per split (a constant, so that each column's base
        /// register is chosen at compile time).
        macro_rules! by_split {
            ($module:ident, $cols:literal, [$($s:literal)*]) => {
                match split {
                    $($s => $module::fwd_oc::<OC_V, $cols, $s>(x, offs, w, y, ystride, accumulate, skip),)*
                    _ => unreachable!("split {split} outside 1..={}", $cols),
                }
            };
        }
        // SAFETY: forwarded from the caller; `isa` was detected on this CPU.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => by_split!(avx512, 12, [1 2 3 4 5 6 7 8 9 10 11 12]),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => by_split!(avx2, 6, [1 2 3 4 5 6]),
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!("no SIMD kernels off x86-64"),
            }
        }
    }

    /// `out[(j·nv + v)·lanes + l] = Σ_{r < rows, c < ncols}
    /// gy[(r·ncols + c)·gstride + v·lanes + l] · x[offs[j] + r·x_pitch + c]`
    /// for the `WG_NR` taps `j`, `nv ∈ {1, 2}` channel vectors `v` and lanes
    /// `l` (`rows = 1`, `ncols = cols_pad` for [`WgradColumns::Padded`]).
    /// With `triples`, the taps come in runs of three consecutive offsets
    /// (`offs[3q + k] = offs[3q] + k`, a 3-wide kernel along W with stride and
    /// dilation 1) and `ncols` is even: two columns per step then share
    /// their broadcasts between the three taps (4 broadcasts for 6 products).
    ///
    /// # Safety
    /// As for [`fwd`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn wgrad(
        isa: Isa,
        triples: bool,
        nv: usize,
        gy: *const f32,
        gstride: usize,
        x: *const f32,
        offs: &[usize; WG_NR],
        cols: WgradColumns,
        out: &mut [f32; WG_OUT],
    ) {
        let (rows, ncols, x_pitch) = match cols {
            WgradColumns::Rows {
                rows,
                ncols,
                x_pitch,
            } => (rows, ncols, x_pitch),
            WgradColumns::Padded { cols_pad, .. } => (1, cols_pad, 0),
        };
        let cols = [rows, ncols, x_pitch];
        // SAFETY: forwarded from the caller; `isa` was detected on this CPU.
        unsafe {
            match (isa, nv) {
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, 1) if triples => avx512::wgrad3::<1>(gy, gstride, x, offs, cols, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, _) if triples => avx512::wgrad3::<2>(gy, gstride, x, offs, cols, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, 1) => avx512::wgrad::<1>(gy, gstride, x, offs, cols, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, _) => avx512::wgrad::<2>(gy, gstride, x, offs, cols, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, 1) if triples => avx2::wgrad3::<1>(gy, gstride, x, offs, cols, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, _) if triples => avx2::wgrad3::<2>(gy, gstride, x, offs, cols, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, 1) => avx2::wgrad::<1>(gy, gstride, x, offs, cols, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, _) => avx2::wgrad::<2>(gy, gstride, x, offs, cols, out),
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!("no SIMD kernels off x86-64"),
            }
        }
    }

    /// One module of micro-kernels per instruction set, from the same source.
    #[cfg(target_arch = "x86_64")]
    macro_rules! simd_kernels {
        ($name:ident, $feat:literal, $lanes:expr, $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident) => {
            pub(super) mod $name {
                use super::{WG_NR, WG_OUT};
                use std::arch::x86_64::*;

                const L: usize = $lanes;

                /// See `kernels::fwd`.
                #[target_feature(enable = $feat)]
                pub(in super::super) unsafe fn fwd<const O: usize, const NV: usize>(
                    x: *const f32,
                    offs: &[usize],
                    w: *const f32,
                    y: *mut f32,
                    ystride: usize,
                    accumulate: bool,
                ) {
                    // SAFETY: see the caller.
                    unsafe {
                        let mut acc = [[$zero(); NV]; O];
                        if accumulate {
                            for (o, row) in acc.iter_mut().enumerate() {
                                for (j, a) in row.iter_mut().enumerate() {
                                    *a = $load(y.add(o * ystride + j * L));
                                }
                            }
                        }
                        let mut wp = w;
                        for &off in offs {
                            let p = x.add(off);
                            let mut xv = [$zero(); NV];
                            for (j, v) in xv.iter_mut().enumerate() {
                                *v = $load(p.add(j * L));
                            }
                            for (o, row) in acc.iter_mut().enumerate() {
                                let wv = $set1(*wp.add(o));
                                for (a, &v) in row.iter_mut().zip(&xv) {
                                    *a = $fma(wv, v, *a);
                                }
                            }
                            wp = wp.add(O);
                        }
                        for (o, row) in acc.iter().enumerate() {
                            for (j, &a) in row.iter().enumerate() {
                                $store(y.add(o * ystride + j * L), a);
                            }
                        }
                    }
                }

                /// See `kernels::fwd_oc`.
                #[target_feature(enable = $feat)]
                pub(in super::super) unsafe fn fwd_oc<
                    const V: usize,
                    const P: usize,
                    const S: usize,
                >(
                    x: *const f32,
                    offs: &[usize],
                    w: *const f32,
                    y: *mut f32,
                    ystride: usize,
                    accumulate: bool,
                    skip: usize,
                ) {
                    // SAFETY: see the caller.
                    unsafe {
                        let mut acc = [[$zero(); V]; P];
                        if accumulate {
                            for q in 0..P {
                                for v in 0..V {
                                    acc[q][v] = $load(y.add(q * ystride + v * L));
                                }
                            }
                        }
                        let mut wp = w;
                        for &off in offs {
                            let p = x.add(off);
                            // columns from S on continue on the next row
                            let p_next = p.wrapping_add(skip);
                            let mut wv = [$zero(); V];
                            for v in 0..V {
                                wv[v] = $load(wp.add(v * L));
                            }
                            for q in 0..P {
                                let xb = $set1(*if q < S { p } else { p_next }.add(q));
                                for v in 0..V {
                                    acc[q][v] = $fma(wv[v], xb, acc[q][v]);
                                }
                            }
                            wp = wp.add(V * L);
                        }
                        for q in 0..P {
                            for v in 0..V {
                                $store(y.add(q * ystride + v * L), acc[q][v]);
                            }
                        }
                    }
                }

                /// See `kernels::wgrad`.
                #[target_feature(enable = $feat)]
                pub(in super::super) unsafe fn wgrad<const V: usize>(
                    gy: *const f32,
                    gstride: usize,
                    x: *const f32,
                    offs: &[usize; WG_NR],
                    [rows, ncols, x_pitch]: [usize; 3],
                    out: &mut [f32; WG_OUT],
                ) {
                    // SAFETY: see the caller.
                    unsafe {
                        let mut acc = [[$zero(); V]; WG_NR];
                        for r in 0..rows {
                            let gy = gy.add(r * ncols * gstride);
                            let mut xp = [x; WG_NR];
                            for (p, &off) in xp.iter_mut().zip(offs) {
                                *p = x.add(off + r * x_pitch);
                            }
                            for c in 0..ncols {
                                let gp = gy.add(c * gstride);
                                let mut gv = [$zero(); V];
                                for v in 0..V {
                                    gv[v] = $load(gp.add(v * L));
                                }
                                for j in 0..WG_NR {
                                    let xb = $set1(*xp[j].add(c));
                                    for v in 0..V {
                                        acc[j][v] = $fma(gv[v], xb, acc[j][v]);
                                    }
                                }
                            }
                        }
                        for j in 0..WG_NR {
                            for v in 0..V {
                                $store(out.as_mut_ptr().add((j * V + v) * L), acc[j][v]);
                            }
                        }
                    }
                }

                /// See `kernels::wgrad` with `triples`.
                #[target_feature(enable = $feat)]
                pub(in super::super) unsafe fn wgrad3<const V: usize>(
                    gy: *const f32,
                    gstride: usize,
                    x: *const f32,
                    offs: &[usize; WG_NR],
                    [rows, ncols, x_pitch]: [usize; 3],
                    out: &mut [f32; WG_OUT],
                ) {
                    // SAFETY: see the caller.
                    unsafe {
                        let mut acc = [[[$zero(); V]; 3]; WG_NR / 3];
                        for r in 0..rows {
                            let gy = gy.add(r * ncols * gstride);
                            let mut xp = [x; WG_NR / 3];
                            for (q, p) in xp.iter_mut().enumerate() {
                                *p = x.add(offs[3 * q] + r * x_pitch);
                            }
                            for c in (0..ncols).step_by(2) {
                                let (p0, p1) = (gy.add(c * gstride), gy.add((c + 1) * gstride));
                                let mut g0 = [$zero(); V];
                                let mut g1 = [$zero(); V];
                                for v in 0..V {
                                    g0[v] = $load(p0.add(v * L));
                                    g1[v] = $load(p1.add(v * L));
                                }
                                for q in 0..WG_NR / 3 {
                                    let p = xp[q].add(c);
                                    let b0 = $set1(*p);
                                    let b1 = $set1(*p.add(1));
                                    let b2 = $set1(*p.add(2));
                                    let b3 = $set1(*p.add(3));
                                    for v in 0..V {
                                        let a = &mut acc[q];
                                        a[0][v] = $fma(g1[v], b1, $fma(g0[v], b0, a[0][v]));
                                        a[1][v] = $fma(g1[v], b2, $fma(g0[v], b1, a[1][v]));
                                        a[2][v] = $fma(g1[v], b3, $fma(g0[v], b2, a[2][v]));
                                    }
                                }
                            }
                        }
                        for q in 0..WG_NR / 3 {
                            for k in 0..3 {
                                for v in 0..V {
                                    let j = 3 * q + k;
                                    $store(out.as_mut_ptr().add((j * V + v) * L), acc[q][k][v]);
                                }
                            }
                        }
                    }
                }
            }
        };
    }

    #[cfg(target_arch = "x86_64")]
    simd_kernels!(
        avx512,
        "avx512f,avx512vl",
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps
    );
    #[cfg(target_arch = "x86_64")]
    simd_kernels!(
        avx2,
        "avx2,fma",
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps
    );
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::cpu::{
        conv_dgrad, direct_fwd, direct_wgrad, gemm_dgrad, gemm_fwd, gemm_wgrad,
    };
    use super::*;

    /// Deterministic pseudo-random values in [−1, 1).
    pub(in super::super) fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub(in super::super) fn geom(
        n: usize,
        c: usize,
        o: usize,
        groups: usize,
        input: [usize; 3],
        kernel: [usize; 3],
        stride: [usize; 3],
        padding: [usize; 3],
        dilation: [usize; 3],
    ) -> ConvGeom {
        let output = std::array::from_fn(|a| {
            super::super::geom::conv_out_len(
                input[a],
                kernel[a],
                stride[a],
                padding[a],
                dilation[a],
            )
            .expect("valid test geometry")
        });
        ConvGeom {
            n,
            c,
            o,
            groups,
            input,
            kernel,
            stride,
            padding,
            dilation,
            output,
        }
    }

    /// Odd shapes (both input routes: the once-padded input and the per-tile
    /// copies): strides, paddings, dilations, groups, channel counts that
    /// are not multiples of the micro-kernel blocks (and more than two vectors
    /// of them), W shorter than a vector or a multiple of one, multi-row
    /// tiles, batch > 1.
    fn cases() -> Vec<ConvGeom> {
        vec![
            geom(1, 3, 5, 1, [5, 6, 7], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
            geom(2, 4, 6, 2, [7, 9, 11], [3, 3, 3], [2, 2, 2], [1; 3], [1; 3]),
            geom(
                1,
                5,
                9,
                1,
                [6, 8, 21],
                [2, 3, 5],
                [1, 2, 3],
                [0, 2, 1],
                [2, 1, 2],
            ),
            geom(
                1,
                2,
                17,
                1,
                [9, 5, 40],
                [3, 1, 3],
                [1, 1, 2],
                [1, 0, 2],
                [1, 1, 3],
            ),
            geom(
                1,
                16,
                16,
                1,
                [12, 13, 14],
                [3, 3, 3],
                [1; 3],
                [1; 3],
                [1; 3],
            ),
            geom(
                2,
                6,
                4,
                2,
                [4, 5, 3],
                [1, 1, 3],
                [1, 1, 1],
                [0, 0, 0],
                [1; 3],
            ),
            geom(1, 3, 4, 1, [6, 6, 6], [2, 2, 2], [2, 2, 2], [0; 3], [1; 3]),
            geom(1, 4, 3, 1, [5, 7, 9], [3, 3, 3], [1; 3], [3, 2, 4], [1; 3]),
            geom(1, 8, 40, 1, [3, 5, 48], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
            geom(
                1,
                6,
                34,
                2,
                [4, 6, 50],
                [3, 3, 3],
                [2, 1, 2],
                [1; 3],
                [1; 3],
            ),
            geom(1, 4, 33, 1, [5, 6, 21], [3, 3, 3], [2; 3], [1; 3], [1; 3]),
            geom(1, 36, 5, 1, [5, 7, 9], [3, 3, 3], [2; 3], [1; 3], [1; 3]),
            // stride 1 with more than twice as many input as output channels:
            // copied rows instead of the once-padded input
            geom(2, 9, 2, 1, [5, 6, 7], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
            // whole vectors per row and whole channel blocks: the forward
            // writes straight into y (rows of 1, 2, 3 + 1 and 3 + 2 vectors)
            geom(1, 5, 16, 1, [4, 5, 32], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
            geom(2, 3, 8, 1, [3, 4, 64], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
            geom(1, 4, 24, 1, [5, 6, 80], [3, 3, 3], [1; 3], [2; 3], [2; 3]),
            geom(1, 3, 16, 1, [4, 3, 16], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
            // channel-vector forward with rows that are not whole column
            // blocks (blocks straddle rows, splits 1–9 of 12 columns and
            // several of 6), over the padded input and over per-tile copies
            geom(1, 5, 35, 1, [4, 5, 16], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
            geom(1, 3, 40, 1, [3, 7, 13], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
            geom(
                1,
                3,
                36,
                1,
                [5, 7, 29],
                [3, 3, 3],
                [1, 2, 2],
                [1; 3],
                [1; 3],
            ),
            // kernel 1 with stride 2 along D: odd input planes get no tap
            geom(
                1,
                3,
                4,
                1,
                [7, 6, 9],
                [1, 3, 3],
                [2, 1, 2],
                [0, 1, 1],
                [1; 3],
            ),
        ]
    }

    /// Largest absolute difference relative to the largest magnitude of `b`.
    pub(in super::super) fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    #[test]
    fn direct_kernels_match_gemm_kernels() {
        let Some(isa) = isa() else {
            eprintln!("skipped: this CPU has neither AVX-512F nor AVX2 + FMA");
            return;
        };
        for (i, g) in cases().into_iter().enumerate() {
            let x = values(g.x_len(), 3 * i as u64);
            let w = values(g.w_len(), 3 * i as u64 + 1);
            let gy = values(g.y_len(), 3 * i as u64 + 2);
            let (yd, yr) = (direct_fwd(isa, &g, &x, &w), gemm_fwd(&g, &x, &w));
            assert!(max_rel(&yd, &yr) < 1e-5, "case {i} forward: {g:?}");
            let (wd, wr) = (direct_wgrad(isa, &g, &x, &gy), gemm_wgrad(&g, &x, &gy));
            assert!(max_rel(&wd, &wr) < 1e-5, "case {i} weight gradient: {g:?}");
        }
    }

    /// The AVX2 kernels, also on AVX-512 machines.
    #[test]
    fn avx2_kernels_match_gemm_kernels() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            for (i, g) in cases().into_iter().enumerate() {
                let x = values(g.x_len(), 7 * i as u64);
                let w = values(g.w_len(), 7 * i as u64 + 1);
                let gy = values(g.y_len(), 7 * i as u64 + 2);
                let (yd, yr) = (direct_fwd(Isa::Avx2, &g, &x, &w), gemm_fwd(&g, &x, &w));
                assert!(max_rel(&yd, &yr) < 1e-5, "case {i} forward: {g:?}");
                let (wd, wr) = (
                    direct_wgrad(Isa::Avx2, &g, &x, &gy),
                    gemm_wgrad(&g, &x, &gy),
                );
                assert!(max_rel(&wd, &wr) < 1e-5, "case {i} weight gradient: {g:?}");
            }
            return;
        }
        eprintln!("skipped: this CPU has no AVX2 + FMA");
    }

    /// The strided input gradient (sub-pixel phases of direct convolutions)
    /// matches the col2im kernel.
    #[test]
    fn subpixel_input_gradient_matches_col2im() {
        let Some(isa) = isa() else {
            eprintln!("skipped: this CPU has neither AVX-512F nor AVX2 + FMA");
            return;
        };
        let mut n = 0;
        for (i, g) in cases().into_iter().enumerate() {
            let w = values(g.w_len(), 11 * i as u64);
            let gy = values(g.y_len(), 11 * i as u64 + 1);
            let Some(gd) = super::super::subpixel::dgrad(isa, &g, &gy, &w) else {
                continue;
            };
            let gr = gemm_dgrad(&g, &gy, &w);
            assert!(max_rel(&gd, &gr) < 1e-5, "case {i}: {g:?}");
            n += 1;
        }
        assert!(n >= 3, "only {n} strided cases took the sub-pixel route");
    }

    /// The input gradient (through whichever kernels it dispatches to) is the
    /// adjoint of the forward: ⟨conv(x), gy⟩ = ⟨x, dgrad(gy)⟩.
    #[test]
    fn input_gradient_is_adjoint_of_direct_forward() {
        for (i, g) in cases().into_iter().enumerate() {
            let x = values(g.x_len(), 5 * i as u64);
            let w = values(g.w_len(), 5 * i as u64 + 1);
            let gy = values(g.y_len(), 5 * i as u64 + 2);
            let y = super::super::cpu::conv_fwd(&g, &x, &w);
            let gx = conv_dgrad(&g, &gy, &w);
            let dot =
                |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p * q) as f64).sum::<f64>();
            let (l, r) = (dot(&y, &gy), dot(&x, &gx));
            assert!(
                (l - r).abs() <= 1e-4 * l.abs().max(1.0),
                "case {i}: {l} vs {r}"
            );
        }
    }
}
