//! Fixed-width lane arrays and the branch-free `exp` / `ln` the kernel vectorises.
//!
//! The kernel works on blocks of [`LANES`] neighbouring voxels held in `[f32; LANES]` arrays
//! ([`Lanes`]); every loop over a block has a fixed trip count and no branches, so the compiler
//! turns it into SIMD code. `f32::exp` and `f32::ln` are calls into libm and stop that, hence
//! the polynomial versions here: Cody–Waite range reduction plus a minimax polynomial for
//! `exp` (Cephes `expf`), and the `atanh` series for `ln`. Both are within 1e-6 relative of the
//! exact values on the ranges the kernel uses (see the tests); the loss tolerance is 1e-5.

/// Voxels per block: four AVX2 registers of f32 (measured faster than 8, 16 or 64).
pub(crate) const LANES: usize = 32;

/// One f32 per voxel of a block.
pub(crate) type Lanes = [f32; LANES];

/// `ln 2` split so that `k·LN2_HI` is exact for the exponents used (|k| < 2^9).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x`, within 2 ulp for `x ∈ [−87, 88]`; arguments below are clamped (giving ~1.6e-38
/// instead of a denormal or 0), above to 88 (≈ 1.65e38). NaN stays NaN.
///
/// `x = n·ln 2 + r` with `n = round(x / ln 2)` and `|r| ≤ ln2 / 2`; `e^r` by the Cephes
/// polynomial; `2^n` is built from the exponent bits. The rounding uses the `1.5·2^23` trick:
/// adding it leaves `n` in the low mantissa bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let x = x.clamp(-87.0, 88.0);
    let t = x.mul_add(std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut y = 1.987_569_1e-4f32;
    y = y.mul_add(r, 1.398_199_9e-3);
    y = y.mul_add(r, 8.333_452e-3);
    y = y.mul_add(r, 4.166_579_6e-2);
    y = y.mul_add(r, 1.666_666_5e-1);
    y = y.mul_add(r, 0.5);
    let y = y.mul_add(r * r, r) + 1.0;
    // the low bits of `t` hold n (two's complement); 2^n has exponent field n + 127
    let scale = f32::from_bits(t.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    y * scale
}

/// `ln z` for positive normal `z`, within 1e-7 absolute plus 2 ulp relative.
///
/// `z = 2^k·m` with `m ∈ [√½, √2)` (musl's bit split), then
/// `ln m = 2·atanh(u) = 2(u + u³/3 + u⁵/5 + u⁷/7 + u⁹/9 + …)` with `u = (m − 1)/(m + 1)`,
/// `|u| ≤ 0.172`: the first omitted term is below 1e-9.
#[inline(always)]
pub(crate) fn ln(z: f32) -> f32 {
    const SQRT_HALF_BITS: u32 = 0x3F35_04F3;
    let shifted = z.to_bits().wrapping_sub(SQRT_HALF_BITS);
    let k = (shifted as i32 >> 23) as f32;
    let m = f32::from_bits((shifted & 0x007F_FFFF) + SQRT_HALF_BITS);
    let u = (m - 1.0) / (m + 1.0);
    let u2 = u * u;
    let mut s = 1.0f32 / 9.0;
    s = s.mul_add(u2, 1.0 / 7.0);
    s = s.mul_add(u2, 1.0 / 5.0);
    s = s.mul_add(u2, 1.0 / 3.0);
    s = s.mul_add(u2, 1.0);
    let ln_m = 2.0 * u * s;
    k.mul_add(LN2_HI, k.mul_add(LN2_LO, ln_m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f64) -> f64 {
        ((a as f64 - b) / b).abs()
    }

    #[test]
    fn exp_is_within_1e6_relative() {
        let mut worst: f64 = 0.0;
        let n = 2_000_000;
        for i in 0..=n {
            let x = -87.0 + 175.0 * i as f64 / n as f64;
            let x = x as f32;
            worst = worst.max(rel(exp(x), (x as f64).exp()));
        }
        for x in [0.0f32, -0.0, 1e-30, -1e-8, 1.0, -1.0, 88.0, -87.0] {
            worst = worst.max(rel(exp(x), (x as f64).exp()));
        }
        assert!(worst < 1e-6, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 2e-38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn ln_is_within_1e6_relative_or_1e7_absolute() {
        let mut worst: f64 = 0.0;
        let check = |z: f32, worst: &mut f64| {
            let exact = (z as f64).ln();
            let err = (ln(z) as f64 - exact).abs();
            *worst = worst.max(err / exact.abs().max(0.1));
        };
        // the kernel's range: softmax normalisers in [1, 16], sigmoid's 1 + e in [1, 2]
        let n = 1_000_000;
        for i in 0..=n {
            check(1.0 + 15.0 * i as f32 / n as f32, &mut worst);
        }
        for i in 0..=n {
            check(
                (1e-30f64 * 1e60f64.powf(i as f64 / n as f64)) as f32,
                &mut worst,
            );
        }
        for z in [
            1.0f32,
            1.0f32.next_up(),
            2.0,
            0.5,
            f32::MAX,
            f32::MIN_POSITIVE,
        ] {
            check(z, &mut worst);
        }
        assert!(worst < 1e-6, "worst error {worst:e}");
        assert_eq!(ln(1.0), 0.0);
    }
}
