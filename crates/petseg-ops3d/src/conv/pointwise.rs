//! 1×1×1 convolutions without stride or padding (f32, AVX-512): per sample,
//! `y[o][p] = Σ_c w[o][c] · x[c][p]`, a matrix product with few rows and
//! columns and a volume-long inner dimension. The stride-1 input gradient is
//! the same product with the transposed weight (the forward of the flipped
//! adjoint, see `cpu::conv_dgrad`).
//!
//! The `gemm` crate packs `x` into panels first and runs 256-bit kernels
//! here; the product is bound by memory (each `x` value is used `o` times,
//! each `y` value written once), so this kernel reads `x` in place: blocks
//! of 48 voxels × 8 output channels of accumulators, over runs of up to 1536
//! voxels of every input channel, packed together (see [`pack_chunk`]) so
//! that they stay in L2 across the output-channel blocks. Tails are masked;
//! rayon over (sample, run of voxels).
//!
//! The weight gradient stays with the `gemm` crate: a kernel of the same
//! kind (packed runs, 4 × 6 or 8 × 2 channel pairs per call, vectors over
//! voxels) was no faster here, as that product is bound by the memory reads
//! and candle's materialised output gradient either way.

use super::direct::{self, Isa};
use super::geom::ConvGeom;
use crate::elem::{written_vec, SharedMut};
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Output channels per micro-kernel call.
const ROWS: usize = 8;
/// Voxel vectors per micro-kernel call.
const VECTORS: usize = 3;
/// Voxels per micro-kernel call.
const BLOCK: usize = VECTORS * 16;
/// Bytes of the packed input of one chunk (a chunk is up to 32 blocks):
/// the first output-channel block streams each input channel's run from
/// memory (long runs, which the prefetchers follow), the others find it in
/// L2. Measured at 32 → 16 channels, 48³, one thread: 4.8 ms for 4 blocks
/// per chunk, 3.7 ms for 32 or 64, against 5.5 ms for the `gemm` crate.
const PACK_BYTES: usize = 256 << 10;
/// Most blocks per chunk.
const CHUNK_BLOCKS: usize = 32;
/// Voxels per rayon task.
const TASK_VOXELS: usize = 2 * CHUNK_BLOCKS * BLOCK;

/// True when the convolution `g` runs here: f32 with AVX-512, 1×1×1 without
/// stride or padding, one group (and not forced onto the `gemm` kernels).
pub(super) fn applies(isa: Option<Isa>, g: &ConvGeom) -> bool {
    isa == Some(Isa::Avx512) && g.is_pointwise() && g.groups == 1 && !direct::forced_gemm()
}

/// `y [n, o, vol]` of `x [n, c, vol]` and `w [o, c]` for a geometry
/// [`applies`] accepts.
pub(super) fn fwd(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (c, o, vol) = (g.c, g.o, g.in_vol());
    assert!(x.len() >= g.n * c * vol && w.len() >= o * c);
    let chunk =
        (PACK_BYTES / (c * BLOCK * std::mem::size_of::<f32>())).clamp(1, CHUNK_BLOCKS) * BLOCK;
    let tasks: Vec<(usize, usize)> = (0..g.n)
        .flat_map(|b| (0..vol).step_by(TASK_VOXELS).map(move |p0| (b, p0)))
        .collect();
    let compute = |y: &mut [std::mem::MaybeUninit<f32>]| {
        let yp = SharedMut(y.as_mut_ptr().cast::<f32>());
        tasks
            .par_iter()
            .for_each_init(Vec::new, |pack: &mut Vec<f32>, &(b, p0)| {
                let p1 = (p0 + TASK_VOXELS).min(vol);
                for q0 in (p0..p1).step_by(chunk) {
                    let len = p1.min(q0 + chunk) - q0;
                    pack_chunk(x, b * c * vol + q0, vol, c, len, chunk, pack);
                    for r0 in (0..o).step_by(ROWS) {
                        for q in (0..len).step_by(BLOCK) {
                            // SAFETY: reads w rows [r0, r0 + nr) (o·c values,
                            // checked) and n voxels from q of each of the c
                            // packed channels (c·chunk values); writes n voxels
                            // from q0 + q of output rows [r0, r0 + nr) of
                            // sample b, which only this task writes; AVX-512
                            // per `applies`.
                            unsafe {
                                block(
                                    w.as_ptr().add(r0 * c),
                                    c,
                                    (o - r0).min(ROWS),
                                    pack.as_ptr().add(q),
                                    chunk,
                                    yp.ptr().add((b * o + r0) * vol + q0 + q),
                                    vol,
                                    (len - q).min(BLOCK),
                                );
                            }
                        }
                    }
                }
            });
    };
    // SAFETY: the tasks cover every voxel of every sample, and each writes
    // all `o` output channels of its voxels.
    unsafe { written_vec(g.y_len(), compute) }
}

/// `x[from + ci·vol..][..len]` for the `c` channels `ci` into `pack`
/// (`[c][chunk]`): the kernel then reads short rows at a small stride. Read
/// in place, the rows of one block lie a multiple of 4 KiB apart at the
/// network's volumes (48³·4 bytes = 108 pages) and evict each other from L1
/// and L2.
fn pack_chunk(
    x: &[f32],
    from: usize,
    vol: usize,
    c: usize,
    len: usize,
    chunk: usize,
    pack: &mut Vec<f32>,
) {
    pack.resize(c * chunk, 0.0);
    for (ci, dst) in pack.chunks_exact_mut(chunk).enumerate() {
        dst[..len].copy_from_slice(&x[from + ci * vol..][..len]);
    }
}

/// One block: `nr ≤ ROWS` output channels × `n ≤ BLOCK` voxels.
///
/// # Safety
/// `a` must be valid for reads of `nr` rows of `cols` values, `x` for reads
/// of `n` values at each `c·x_stride` (`c < cols`), `y` for writes of `n`
/// values at each `r·y_stride` (`r < nr`); the CPU must support AVX-512F.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn block(
    a: *const f32,
    cols: usize,
    nr: usize,
    x: *const f32,
    x_stride: usize,
    y: *mut f32,
    y_stride: usize,
    n: usize,
) {
    let s = [x_stride, y_stride];
    // SAFETY: forwarded from the caller.
    unsafe {
        match nr {
            1 => block_rows::<1>(a, cols, x, s, y, n),
            2 => block_rows::<2>(a, cols, x, s, y, n),
            3 => block_rows::<3>(a, cols, x, s, y, n),
            4 => block_rows::<4>(a, cols, x, s, y, n),
            5 => block_rows::<5>(a, cols, x, s, y, n),
            6 => block_rows::<6>(a, cols, x, s, y, n),
            7 => block_rows::<7>(a, cols, x, s, y, n),
            _ => block_rows::<ROWS>(a, cols, x, s, y, n),
        }
    }
}

/// [`block`] for `R` rows.
///
/// # Safety
/// As for [`block`] with `nr = R`.
#[target_feature(enable = "avx512f")]
unsafe fn block_rows<const R: usize>(
    a: *const f32,
    cols: usize,
    x: *const f32,
    [x_stride, y_stride]: [usize; 2],
    y: *mut f32,
    n: usize,
) {
    let mask: [__mmask16; VECTORS] = {
        let mut m = [0; VECTORS];
        for (v, mv) in m.iter_mut().enumerate() {
            let lanes = n.saturating_sub(16 * v).min(16);
            *mv = ((1u32 << lanes) - 1) as __mmask16;
        }
        m
    };
    let mut acc = [[_mm512_setzero_ps(); VECTORS]; R];
    for c in 0..cols {
        // SAFETY: masked lanes are not read; the others are within the
        // reads the caller vouches for.
        let xv = unsafe {
            let p = x.add(c * x_stride);
            [
                _mm512_maskz_loadu_ps(mask[0], p),
                _mm512_maskz_loadu_ps(mask[1], p.add(16)),
                _mm512_maskz_loadu_ps(mask[2], p.add(32)),
            ]
        };
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: a[r·cols + c] with r < R, c < cols.
            let b = _mm512_set1_ps(unsafe { *a.add(r * cols + c) });
            for (v, accv) in row.iter_mut().enumerate() {
                *accv = _mm512_fmadd_ps(xv[v], b, *accv);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, &val) in row.iter().enumerate() {
            // SAFETY: masked lanes are not written; the others are within the
            // writes the caller vouches for.
            unsafe { _mm512_mask_storeu_ps(y.add(r * y_stride + 16 * v), mask[v], val) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu::{conv_dgrad, gemm_dgrad, gemm_fwd};
    use super::super::direct::tests::{geom, max_rel, values};
    use super::*;

    /// Channel counts off the 8-row blocks, volumes off the 48-voxel blocks
    /// and the task runs, batch 2; forward and input gradient against the
    /// gemm reference (im2col and col2im).
    #[test]
    fn pointwise_matches_gemm() {
        if direct::isa() != Some(Isa::Avx512) {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let cases = [
            geom(1, 32, 16, 1, [5, 6, 7], [1; 3], [1; 3], [0; 3], [1; 3]),
            geom(2, 3, 13, 1, [7, 9, 11], [1; 3], [1; 3], [0; 3], [1; 3]),
            geom(1, 17, 1, 1, [16, 16, 13], [1; 3], [1; 3], [0; 3], [1; 3]),
        ];
        for (i, g) in cases.into_iter().enumerate() {
            assert!(
                g.is_pointwise() && g.groups == 1,
                "case {i} must be a 1×1×1 geometry"
            );
            let x = values(g.x_len(), 7 * i as u64);
            let w = values(g.w_len(), 7 * i as u64 + 1);
            let err = max_rel(&fwd(&g, &x, &w), &gemm_fwd(&g, &x, &w));
            assert!(err < 1e-5, "case {i}: relative error {err:e} for {g:?}");
            // the input gradient: this kernel through the flipped adjoint
            let gy = values(g.y_len(), 7 * i as u64 + 2);
            let err = max_rel(&conv_dgrad(&g, &gy, &w), &gemm_dgrad(&g, &gy, &w));
            assert!(
                err < 1e-5,
                "case {i}: input gradient error {err:e} for {g:?}"
            );
        }
    }
}
