//! Descriptive statistics and the paired Wilcoxon signed-rank test.
//!
//! [`wilcoxon`] reproduces `scipy.stats.wilcoxon(x, y, alternative=...)`
//! of SciPy 1.17 with its defaults (`zero_method="wilcox"`,
//! `correction=False`, `method="auto"`), including how `"auto"` chooses:
//!
//! * n > 50 (n counts zero differences too): normal approximation;
//! * otherwise, no ties and no zero differences: the exact null
//!   distribution of R+ (counted here by dynamic programming, exact in f64
//!   up to n = 50);
//! * otherwise n ≤ 13: SciPy runs an exact permutation test over all 2ⁿ
//!   sign flips; so do we (same statistic, same `100·eps` tolerance);
//! * otherwise: normal approximation.
//!
//! The normal approximation ranks |d| without the zeros (mid-ranks for
//! ties), with mean n(n+1)/4 and variance (n(n+1)(2n+1) − Σ(t³ − t)/2)/24,
//! and an optional continuity correction of 0.5 towards the mean
//! (`correction`, SciPy's default is off).

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{EvalError, Result};

/// Alternative hypothesis about the differences `x − y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    /// Median difference ≠ 0.
    TwoSided,
    /// Median difference > 0 (x tends to exceed y).
    Greater,
    /// Median difference < 0.
    Less,
}

/// How the p-value of [`wilcoxon`] was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WilcoxonMethod {
    /// Exact null distribution of R+ (no ties, no zeros, n ≤ 50).
    Exact,
    /// All 2ⁿ sign flips enumerated (ties or zeros, n ≤ 13).
    Permutation,
    /// Normal approximation with tie correction.
    Asymptotic,
}

/// Result of [`wilcoxon`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WilcoxonResult {
    /// SciPy's statistic: R+ for one-sided tests, min(R+, R−) for two-sided.
    pub statistic: f64,
    /// p-value.
    pub p_value: f64,
    /// How the p-value was computed.
    pub method: WilcoxonMethod,
    /// Number of pairs (including zero differences).
    pub n: usize,
}

/// Paired Wilcoxon signed-rank test of `x − y` (see module docs).
/// `correction` applies the continuity correction in the normal
/// approximation (SciPy's `correction=`, default false). Returns a NaN
/// p-value when every difference is zero, as SciPy does.
pub fn wilcoxon(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    correction: bool,
) -> Result<WilcoxonResult> {
    if x.len() != y.len() {
        return Err(EvalError::Invalid(format!(
            "wilcoxon: paired samples differ in length ({} vs {})",
            x.len(),
            y.len()
        )));
    }
    if x.is_empty() {
        return Err(EvalError::Invalid("wilcoxon: empty samples".into()));
    }
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    if let Some(i) = d.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::Invalid(format!(
            "wilcoxon: pair {i} gives a non-finite difference ({} − {})",
            x[i], y[i]
        )));
    }
    let n = d.len();
    let n_zero = d.iter().filter(|&&v| v == 0.0).count();
    let nz: Vec<f64> = d.iter().copied().filter(|&v| v != 0.0).collect();
    let (ranks, tie_sizes) = midranks(&nz.iter().map(|v| v.abs()).collect::<Vec<_>>());
    let r_plus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(v, _)| **v > 0.0)
        .map(|(_, r)| r)
        .sum();
    let r_minus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(v, _)| **v < 0.0)
        .map(|(_, r)| r)
        .sum();
    let has_ties = tie_sizes.iter().any(|&t| t > 1);
    let statistic = if alternative == Alternative::TwoSided {
        r_plus.min(r_minus)
    } else {
        r_plus
    };
    let method = if n > 50 {
        WilcoxonMethod::Asymptotic
    } else if !has_ties && n_zero == 0 {
        WilcoxonMethod::Exact
    } else if n <= 13 {
        WilcoxonMethod::Permutation
    } else {
        WilcoxonMethod::Asymptotic
    };
    let p_value = match method {
        WilcoxonMethod::Exact => exact_p(n, r_plus, alternative),
        WilcoxonMethod::Permutation => permutation_p(&nz, &ranks, r_plus, alternative),
        WilcoxonMethod::Asymptotic => {
            asymptotic_p(nz.len(), r_plus, &tie_sizes, alternative, correction)
        }
    };
    Ok(WilcoxonResult {
        statistic,
        p_value,
        method,
        n,
    })
}

/// Mid-ranks (1-based) of `v` and the sizes of its tie groups.
fn midranks(v: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = r;
        }
        ties.push(j - i + 1);
        i = j + 1;
    }
    (ranks, ties)
}

/// Number of sign patterns of ranks 1..=n giving each R+ (exact in f64:
/// every count is below 2^n ≤ 2^50).
fn signed_rank_counts(n: usize) -> Vec<f64> {
    let max = n * (n + 1) / 2;
    let mut c = vec![0.0; max + 1];
    c[0] = 1.0;
    for r in 1..=n {
        for s in (r..=max).rev() {
            c[s] += c[s - r];
        }
    }
    c
}

/// Exact p-value of R+ (integral without ties; SciPy rounds otherwise).
fn exact_p(n: usize, r_plus: f64, alternative: Alternative) -> f64 {
    let c = signed_rank_counts(n);
    let total = 2f64.powi(n as i32);
    let cdf = |k: f64| -> f64 {
        let k = k.ceil() as i64;
        if k < 0 {
            return 0.0;
        }
        c[..=(k as usize).min(c.len() - 1)].iter().sum::<f64>() / total
    };
    let sf = |k: f64| -> f64 {
        let k = k.floor().max(0.0) as usize;
        if k >= c.len() {
            return 0.0;
        }
        c[k..].iter().sum::<f64>() / total
    };
    match alternative {
        Alternative::Less => cdf(r_plus),
        Alternative::Greater => sf(r_plus),
        Alternative::TwoSided => (2.0 * sf(r_plus).min(cdf(r_plus))).clamp(0.0, 1.0),
    }
}

/// Exact permutation p-value over all 2^n sign flips of the non-zero
/// differences (zeros never count in R+, whatever their sign).
fn permutation_p(nz: &[f64], ranks: &[f64], r_plus: f64, alternative: Alternative) -> f64 {
    let m = nz.len();
    // The null distribution over m signs; the zeros of the n − m remaining
    // pairs double every pattern and leave the proportions unchanged.
    let gamma = (100.0 * f64::EPSILON * r_plus).abs();
    let (mut le, mut ge) = (0u64, 0u64);
    for mask in 0u64..(1u64 << m) {
        let s: f64 = (0..m)
            .filter(|b| mask >> b & 1 == 1)
            .map(|b| ranks[b])
            .sum();
        if s <= r_plus + gamma {
            le += 1;
        }
        if s >= r_plus - gamma {
            ge += 1;
        }
    }
    let total = (1u64 << m) as f64;
    let (pl, pg) = (le as f64 / total, ge as f64 / total);
    match alternative {
        Alternative::Less => pl,
        Alternative::Greater => pg,
        Alternative::TwoSided => (2.0 * pl.min(pg)).clamp(0.0, 1.0),
    }
}

/// Normal approximation with tie correction (and optional continuity
/// correction), SciPy's formula.
fn asymptotic_p(
    m: usize,
    r_plus: f64,
    tie_sizes: &[usize],
    alternative: Alternative,
    correction: bool,
) -> f64 {
    let count = m as f64;
    let mean = count * (count + 1.0) * 0.25;
    let tie: f64 = tie_sizes
        .iter()
        .map(|&t| (t as f64).powi(3) - t as f64)
        .sum();
    let se = ((count * (count + 1.0) * (2.0 * count + 1.0) - tie / 2.0) / 24.0).sqrt();
    let mut z = (r_plus - mean) / se;
    if correction {
        let sign = match alternative {
            Alternative::Greater => 1.0,
            Alternative::Less => -1.0,
            Alternative::TwoSided => {
                if z > 0.0 {
                    1.0
                } else if z < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        };
        z -= sign * 0.5 / se;
    }
    if z.is_nan() {
        return f64::NAN;
    }
    let normal = Normal::standard();
    match alternative {
        Alternative::Greater => normal.sf(z),
        Alternative::Less => normal.cdf(z),
        Alternative::TwoSided => (2.0 * normal.sf(z.abs())).clamp(0.0, 1.0),
    }
}

/// Mean, sample SD (ddof = 1), median and quartiles of the finite values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of finite values summarised.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1; NaN for n < 2).
    pub sd: f64,
    /// Median.
    pub median: f64,
    /// 25th percentile (linear interpolation, NumPy's default).
    pub q1: f64,
    /// 75th percentile.
    pub q3: f64,
}

impl Summary {
    /// Summarises the finite values of `v` (NaN ignored: e.g. DSC of
    /// lesion-free cases). All fields NaN when none is finite.
    pub fn of(v: &[f64]) -> Summary {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n == 0 {
            return Summary {
                n,
                mean: f64::NAN,
                sd: f64::NAN,
                median: f64::NAN,
                q1: f64::NAN,
                q3: f64::NAN,
            };
        }
        let mean = s.iter().sum::<f64>() / n as f64;
        let sd = if n < 2 {
            f64::NAN
        } else {
            (s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        Summary {
            n,
            mean,
            sd,
            median: percentile_sorted(&s, 50.0),
            q1: percentile_sorted(&s, 25.0),
            q3: percentile_sorted(&s, 75.0),
        }
    }

    /// "mean ± SD" with `digits` decimals.
    pub fn mean_sd(&self, digits: usize) -> String {
        format!("{:.*} ± {:.*}", digits, self.mean, digits, self.sd)
    }

    /// "median [Q1, Q3]" with `digits` decimals.
    pub fn median_iqr(&self, digits: usize) -> String {
        format!(
            "{:.*} [{:.*}, {:.*}]",
            digits, self.median, digits, self.q1, digits, self.q3
        )
    }
}

/// The `q`-th percentile (0–100) of sorted finite values, with NumPy's
/// default linear interpolation; NaN when empty.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midranks_average_ties() {
        let (r, t) = midranks(&[3.0, 1.0, 3.0, 2.0]);
        assert_eq!(r, vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(t, vec![1, 1, 2]);
    }

    #[test]
    fn counts_sum_to_two_power_n() {
        for n in [1, 5, 20, 50] {
            let s: f64 = signed_rank_counts(n).iter().sum();
            assert_eq!(s, 2f64.powi(n as i32));
        }
    }

    #[test]
    fn exact_smallest_p_is_one_over_two_power_n() {
        let x: Vec<f64> = (1..=8).map(|v| v as f64).collect();
        let y = vec![0.0; 8];
        let r = wilcoxon(&x, &y, Alternative::Greater, false).unwrap();
        assert_eq!(r.method, WilcoxonMethod::Exact);
        assert!((r.p_value - 1.0 / 256.0).abs() < 1e-15);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(wilcoxon(&[1.0], &[1.0, 2.0], Alternative::Less, false).is_err());
        assert!(wilcoxon(&[], &[], Alternative::Less, false).is_err());
        assert!(wilcoxon(&[f64::NAN], &[1.0], Alternative::Less, false).is_err());
    }

    #[test]
    fn summary_matches_numpy_conventions() {
        let s = Summary::of(&[4.0, 1.0, f64::NAN, 3.0, 2.0]);
        assert_eq!(s.n, 4);
        assert_eq!(s.median, 2.5);
        assert_eq!(s.q1, 1.75);
        assert_eq!(s.q3, 3.25);
        assert!((s.sd - 1.2909944487358056).abs() < 1e-12);
    }
}
