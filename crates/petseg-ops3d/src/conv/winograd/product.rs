//! The weight gradient's products `P[ξ][c][o] += Σ_tile Γ[ξ][tile][o] ·
//! V[ξ][c][tile]` (AVX-512).
//!
//! The direct weight-gradient micro-kernel reads its 12 taps through 12
//! pointers, which with the accumulators and the loop state exceed the 16
//! general registers here and spill in the inner loop (a fifth of its time
//! at 128 channels). The rows of `V` lie at one stride, so this kernel takes
//! [`CHANNELS`] rows at a time through one base pointer and that stride.

use std::arch::x86_64::*;

/// Input channels per call.
pub(super) const CHANNELS: usize = 8;
/// Output channels per call (two vectors).
pub(super) const OUTPUTS: usize = 32;

/// `out[j·32 + o] += Σ_{t < ncols} gamma[t·gstride + o] · v[j·vstride + t]`
/// for `j < CHANNELS`, `o < 32`.
///
/// # Safety
/// `gamma` must be valid for reads of 32 values at each `t·gstride`, `v` for
/// reads of `ncols` values at each `j·vstride`, `out` for reads and writes of
/// `CHANNELS·32` values; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn accumulate_products(
    gamma: *const f32,
    gstride: usize,
    v: *const f32,
    vstride: usize,
    ncols: usize,
    out: *mut f32,
) {
    // SAFETY: within the ranges the caller vouches for.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; CHANNELS];
        for (j, a) in acc.iter_mut().enumerate() {
            for (h, x) in a.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(out.add(j * OUTPUTS + h * 16));
            }
        }
        let mut g = gamma;
        let mut x = v;
        for _ in 0..ncols {
            let g0 = _mm512_loadu_ps(g);
            let g1 = _mm512_loadu_ps(g.add(16));
            for (j, a) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*x.add(j * vstride));
                a[0] = _mm512_fmadd_ps(g0, b, a[0]);
                a[1] = _mm512_fmadd_ps(g1, b, a[1]);
            }
            g = g.add(gstride);
            x = x.add(1);
        }
        for (j, a) in acc.iter().enumerate() {
            for (h, x) in a.iter().enumerate() {
                _mm512_storeu_ps(out.add(j * OUTPUTS + h * 16), *x);
            }
        }
    }
}
