//! PET point-spread blur (separable gaussian) and Poisson-like noise.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// FWHM (mm) → gaussian σ (mm).
pub(crate) fn fwhm_to_sigma(fwhm_mm: f64) -> f64 {
    fwhm_mm / (8.0 * std::f64::consts::LN_2).sqrt()
}

/// Normalised 1-D gaussian taps for σ in voxels (radius ⌈3σ⌉, at least 1).
pub(crate) fn kernel(sigma_vox: f64) -> Vec<f32> {
    let radius = (3.0 * sigma_vox).ceil().max(1.0) as i64;
    let w: Vec<f64> = (-radius..=radius)
        .map(|t| (-(t as f64).powi(2) / (2.0 * sigma_vox * sigma_vox)).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|v| (v / sum) as f32).collect()
}

/// Blurs a raster-order (i fastest) volume of `shape` with a separable
/// gaussian of `sigma_vox` voxels per axis. Voxels beyond the edge repeat
/// the edge value (the body continues beyond a crop). Parallel over
/// k-slabs; every output voxel is a fixed-order sum, so the result does not
/// depend on the number of threads.
pub(crate) fn gaussian_blur(data: &mut Vec<f32>, shape: [usize; 3], sigma_vox: [f64; 3]) {
    let [ni, nj, nk] = shape;
    let slab = ni * nj;
    for axis in 0..3 {
        if sigma_vox[axis] <= 0.0 || shape[axis] < 2 {
            continue;
        }
        let taps = kernel(sigma_vox[axis]);
        let radius = (taps.len() / 2) as i64;
        let src = std::mem::take(data);
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(slab)
            .enumerate()
            .for_each(|(k, out_slab)| match axis {
                0 => {
                    // Each row padded by edge replication, then a plain
                    // correlation over the taps (no index clamping inside).
                    let r = radius as usize;
                    let mut pad = vec![0f32; ni + 2 * r];
                    for j in 0..nj {
                        let row = &src[k * slab + j * ni..k * slab + (j + 1) * ni];
                        pad[..r].fill(row[0]);
                        pad[r..r + ni].copy_from_slice(row);
                        pad[r + ni..].fill(row[ni - 1]);
                        let o = &mut out_slab[j * ni..(j + 1) * ni];
                        for (t, w) in taps.iter().enumerate() {
                            for (ov, v) in o.iter_mut().zip(&pad[t..t + ni]) {
                                *ov += w * v;
                            }
                        }
                    }
                }
                1 => {
                    for j in 0..nj {
                        let o = &mut out_slab[j * ni..(j + 1) * ni];
                        for (t, w) in taps.iter().enumerate() {
                            let jj =
                                (j as i64 + t as i64 - radius).clamp(0, nj as i64 - 1) as usize;
                            let row = &src[k * slab + jj * ni..k * slab + (jj + 1) * ni];
                            for (ov, v) in o.iter_mut().zip(row) {
                                *ov += w * v;
                            }
                        }
                    }
                }
                _ => {
                    for (t, w) in taps.iter().enumerate() {
                        let kk = (k as i64 + t as i64 - radius).clamp(0, nk as i64 - 1) as usize;
                        let s = &src[kk * slab..(kk + 1) * slab];
                        for (ov, v) in out_slab.iter_mut().zip(s) {
                            *ov += w * v;
                        }
                    }
                }
            });
        *data = out;
    }
}

/// Σ w² of the separable kernel: the factor by which blurring scales the
/// variance of white noise.
pub(crate) fn variance_gain(sigma_vox: [f64; 3]) -> f64 {
    sigma_vox
        .iter()
        .map(|&s| {
            if s <= 0.0 {
                1.0
            } else {
                kernel(s).iter().map(|&w| (w as f64).powi(2)).sum::<f64>()
            }
        })
        .product()
}

/// A generator for stream `stream` of `key`: independent of how work is
/// split over threads.
pub(crate) fn stream_rng(key: [u8; 32], stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

/// Adds Poisson-like noise: each voxel `x ≥ 0` gets `x + sqrt(k·x)·N(0,1)`.
/// One random stream per k-slab (`stream_base + k`).
pub(crate) fn add_poisson_like_noise(
    data: &mut [f32],
    slab: usize,
    k_var: f64,
    key: [u8; 32],
    stream_base: u64,
) {
    data.par_chunks_mut(slab).enumerate().for_each(|(k, s)| {
        let mut rng = stream_rng(key, stream_base + k as u64);
        for v in s.iter_mut() {
            let n: f64 = StandardNormal.sample(&mut rng);
            if *v > 0.0 {
                *v += ((k_var * *v as f64).sqrt() * n) as f32;
            }
        }
    });
}

/// Standard-normal quantiles at the 65 536 mid-points `(n + ½) / 65536`:
/// two table look-ups per 32 random bits give fast, deterministic
/// gaussian texture (tails cut at ±4.3 σ), used for CT noise on grids of
/// tens of millions of voxels.
pub(crate) fn normal_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..65536)
            .map(|n| inverse_normal_cdf((n as f64 + 0.5) / 65536.0) as f32)
            .collect()
    })
}

/// Φ⁻¹(p) by Acklam's rational approximation (relative error < 1.15e-9).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_preserves_a_constant_and_the_mass_of_an_impulse() {
        let shape = [9, 8, 7];
        let mut c = vec![2.5f32; 9 * 8 * 7];
        gaussian_blur(&mut c, shape, [1.0, 0.7, 1.3]);
        assert!(c.iter().all(|v| (v - 2.5).abs() < 1e-5));
        // An impulse far from the edges keeps its mass.
        let big = [21, 21, 21];
        let centre = 10 + 21 * (10 + 21 * 10);
        let mut d = vec![0f32; 21 * 21 * 21];
        d[centre] = 1.0;
        gaussian_blur(&mut d, big, [1.0, 0.7, 1.3]);
        let sum: f32 = d.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "sum {sum}");
        // Symmetric about the impulse along i.
        let at = |i: usize| d[centre - 10 + i];
        assert!((at(9) - at(11)).abs() < 1e-7 && at(10) > at(9));
    }

    #[test]
    fn blur_matches_the_fwhm() {
        // A line source along j, k blurred along i: the profile's FWHM.
        let n = 101;
        let shape = [n, 1, 1];
        let mut d = vec![0f32; n];
        d[50] = 1.0;
        let sigma = fwhm_to_sigma(6.0) / 0.5; // 0.5 mm voxels
        gaussian_blur(&mut d, shape, [sigma, 0.0, 0.0]);
        let peak = d[50];
        let above = d.iter().filter(|&&v| v >= peak / 2.0).count() as f64 * 0.5;
        assert!((above - 6.0).abs() <= 0.5, "FWHM {above}");
    }

    #[test]
    fn normal_table_is_a_standard_normal() {
        let t = normal_table();
        let m = t.iter().map(|&v| v as f64).sum::<f64>() / t.len() as f64;
        let var = t.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / t.len() as f64;
        assert!(
            m.abs() < 1e-6 && (var - 1.0).abs() < 2e-3,
            "mean {m} var {var}"
        );
        assert!((t[32768 + 32768 / 2] as f64 - 0.6745).abs() < 1e-3); // upper quartile
        assert!(t.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn noise_variance_scales_with_the_value() {
        let mut d = vec![4.0f32; 100_000];
        add_poisson_like_noise(&mut d, 1000, 0.5, [1; 32], 0);
        let m = d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64;
        let var = d.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / d.len() as f64;
        assert!(
            (m - 4.0).abs() < 0.02 && (var - 2.0).abs() < 0.05,
            "mean {m} var {var}"
        );
    }
}
