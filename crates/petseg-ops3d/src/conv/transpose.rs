//! Blocked transposes between the direct kernels' `[column][channel]` tiles
//! and the `[channel][voxel]` layout of candle's tensors.
//!
//! The channel-vector forward computes `[column][channel]` tiles and the
//! weight gradient reads the output gradient as one; both sides move the data
//! in 16 × 16 blocks. A full block is transposed in registers with AVX-512
//! (64 shuffles instead of 256 scalar moves; the scalar copies were 7 % of a
//! 64-channel forward at 24³), partial blocks and other CPUs take the scalar
//! path.

/// Side of a block.
pub(super) const BLOCK: usize = 16;

/// `dst[j·dst_stride + i] = src[i·src_stride + j]` for `i < rows`, `j < cols`
/// (both at most [`BLOCK`]).
///
/// # Safety
/// `src` must be valid for reads of `cols` values at each of the `rows`
/// row starts `i·src_stride`, and `dst` for writes of `rows` values at each
/// of the `cols` row starts `j·dst_stride`; the two must not overlap.
pub(super) unsafe fn transpose(
    src: *const f32,
    src_stride: usize,
    dst: *mut f32,
    dst_stride: usize,
    rows: usize,
    cols: usize,
) {
    debug_assert!(rows <= BLOCK && cols <= BLOCK);
    #[cfg(target_arch = "x86_64")]
    if rows == BLOCK && cols == BLOCK && avx512() {
        // SAFETY: forwarded from the caller; AVX-512F was detected.
        unsafe { avx512_16x16(src, src_stride, dst, dst_stride) };
        return;
    }
    for i in 0..rows {
        for j in 0..cols {
            // SAFETY: within the ranges the caller vouches for.
            unsafe { *dst.add(j * dst_stride + i) = *src.add(i * src_stride + j) };
        }
    }
}

/// The runs of a tile's output rows `[r0, r1)` (of `wo` voxels each, stored
/// `pitch` tile columns apart) that are contiguous on both sides, as
/// `(first tile column, first row, length)`: one run when the tile holds the
/// rows back to back (`pitch = wo`) and so does the other side (`merge`),
/// else one per row.
pub(super) fn row_segments(
    r0: usize,
    r1: usize,
    wo: usize,
    pitch: usize,
    merge: bool,
) -> impl Iterator<Item = (usize, usize, usize)> {
    let whole = merge && pitch == wo;
    let runs = if whole { 1 } else { r1 - r0 };
    (0..runs).map(move |k| {
        if whole {
            (0, r0, (r1 - r0) * wo)
        } else {
            (k * pitch, r0 + k, wo)
        }
    })
}

/// [`transpose`] into a destination whose rows are strided:
/// `dst[j·dst_stride + i·dst_col] = src[i·src_stride + j]` (through a block
/// on the stack when `dst_col ≠ 1`).
///
/// # Safety
/// As for [`transpose`], with the destination rows' elements `dst_col` apart.
pub(super) unsafe fn transpose_strided(
    src: *const f32,
    src_stride: usize,
    dst: *mut f32,
    dst_stride: usize,
    dst_col: usize,
    rows: usize,
    cols: usize,
) {
    if dst_col == 1 {
        // SAFETY: forwarded.
        return unsafe { transpose(src, src_stride, dst, dst_stride, rows, cols) };
    }
    let mut block = [0.0f32; BLOCK * BLOCK];
    // SAFETY: the source as the caller vouches; the block holds 16 rows of 16.
    unsafe { transpose(src, src_stride, block.as_mut_ptr(), BLOCK, rows, cols) };
    for (j, run) in block.chunks_exact(BLOCK).take(cols).enumerate() {
        for (i, &v) in run[..rows].iter().enumerate() {
            // SAFETY: within the strided rows the caller vouches for.
            unsafe { *dst.add(j * dst_stride + i * dst_col) = v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// A full 16 × 16 block: pairs of rows interleaved by elements, then by
/// element pairs, then 128-bit lanes are gathered across rows four apart and
/// eight apart.
///
/// # Safety
/// As for [`transpose`] with `rows = cols = 16`; the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_16x16(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    let mut r = [_mm512_setzero_ps(); 16];
    for (i, row) in r.iter_mut().enumerate() {
        // SAFETY: 16 reads at the caller's row start i.
        *row = unsafe { _mm512_loadu_ps(src.add(i * src_stride)) };
    }
    // t[2k], t[2k + 1]: rows 2k and 2k + 1 interleaved by element
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // u: four rows interleaved, by element pairs
    let mut u = [_mm512_setzero_ps(); 16];
    for q in (0..16).step_by(4) {
        for h in 0..2 {
            let a = _mm512_castps_pd(t[q + h]);
            let b = _mm512_castps_pd(t[q + h + 2]);
            u[q + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            u[q + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    }
    // v: 128-bit lanes 0 and 2 (then 1 and 3) of rows four apart
    let mut v = [_mm512_setzero_ps(); 16];
    for q in (0..16).step_by(8) {
        for k in 0..4 {
            v[q + k] = _mm512_shuffle_f32x4::<0x88>(u[q + k], u[q + 4 + k]);
            v[q + 4 + k] = _mm512_shuffle_f32x4::<0xdd>(u[q + k], u[q + 4 + k]);
        }
    }
    for k in 0..8 {
        let lo = _mm512_shuffle_f32x4::<0x88>(v[k], v[8 + k]);
        let hi = _mm512_shuffle_f32x4::<0xdd>(v[k], v[8 + k]);
        // SAFETY: 16 writes at the caller's row starts k and k + 8.
        unsafe {
            _mm512_storeu_ps(dst.add(k * dst_stride), lo);
            _mm512_storeu_ps(dst.add((k + 8) * dst_stride), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strided destination gets the same values at its own spacing.
    #[test]
    fn transposes_into_strided_rows() {
        let src: Vec<f32> = (0..BLOCK * BLOCK).map(|v| v as f32).collect();
        for (rows, cols) in [(16, 16), (5, 16), (16, 3), (7, 9)] {
            let mut dst = vec![-1.0f32; 40 * 16];
            // SAFETY: 16 rows of 40 hold columns 0, 2, .., 30.
            unsafe { transpose_strided(src.as_ptr(), BLOCK, dst.as_mut_ptr(), 40, 2, rows, cols) };
            for j in 0..16 {
                for c in 0..40 {
                    let i = c / 2;
                    let want = if c % 2 == 0 && j < cols && i < rows {
                        src[i * BLOCK + j]
                    } else {
                        -1.0
                    };
                    assert_eq!(dst[j * 40 + c], want, "{rows}×{cols} at ({j}, {c})");
                }
            }
        }
    }

    /// Every block shape, full blocks through the SIMD path where the CPU
    /// has it, against the definition.
    #[test]
    fn transposes_blocks_of_every_shape() {
        let (src_stride, dst_stride) = (19, 23);
        let src: Vec<f32> = (0..BLOCK * src_stride).map(|v| v as f32).collect();
        for rows in 1..=BLOCK {
            for cols in 1..=BLOCK {
                let mut dst = vec![-1.0f32; BLOCK * dst_stride];
                // SAFETY: both buffers hold 16 rows of their strides ≥ 16.
                unsafe {
                    transpose(
                        src.as_ptr(),
                        src_stride,
                        dst.as_mut_ptr(),
                        dst_stride,
                        rows,
                        cols,
                    )
                };
                for j in 0..BLOCK {
                    for i in 0..dst_stride {
                        let want = if j < cols && i < rows {
                            src[i * src_stride + j]
                        } else {
                            -1.0
                        };
                        assert_eq!(dst[j * dst_stride + i], want, "{rows}×{cols} at ({j}, {i})");
                    }
                }
            }
        }
    }
}
