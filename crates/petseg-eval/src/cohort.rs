//! Cohort analysis: scenarios, TMTV/MTV thresholds, Dmax groups, paired
//! comparisons and the Markdown summary (`docs/method/evaluation.md` §8–9).
//!
//! Conventions: percentiles use NumPy's linear interpolation; a case or
//! lesion is "below" a threshold when its value is ≤ the threshold; DSC
//! summaries skip NaN (lesion-free cases have no DSC); threshold and Dmax
//! analyses use cases with at least one GT lesion and GT lesions.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::case::{LesionKind, LesionMetrics, PatientMetrics};
use crate::error::{EvalError, Result};
use crate::stats::{percentile_sorted, wilcoxon, Alternative, Summary, WilcoxonResult};

/// Percentiles at which TMTV and MTV thresholds are taken.
pub const THRESHOLD_PERCENTILES: [f64; 4] = [25.0, 50.0, 75.0, 85.0];

/// The study's Dmax groups (cm): [0, 9), [9, 11), [11, 14), [14, 60].
pub const STUDY_DMAX_GROUPS_CM: [(f64, f64); 4] =
    [(0.0, 9.0), (9.0, 11.0), (11.0, 14.0), (14.0, 60.0)];

/// Summaries of one group of cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    /// Group name (`all`, `no_lesion`, `single`, `multiple`, a Dmax range).
    pub name: String,
    /// Number of cases.
    pub n_cases: usize,
    /// DSC.
    pub dice: Summary,
    /// False-positive volume (ml).
    pub fpv_ml: Summary,
    /// False-negative volume (ml).
    pub fnv_ml: Summary,
    /// F1 under C1.
    pub f1_c1: Summary,
    /// F1 under C2.
    pub f1_c2: Summary,
    /// F1 under C3.
    pub f1_c3: Summary,
    /// F1 under one-to-one matching (ours).
    pub f1_1to1: Summary,
}

impl GroupSummary {
    fn of(name: &str, cases: &[&PatientMetrics]) -> Self {
        let s = |f: fn(&PatientMetrics) -> f64| {
            Summary::of(&cases.iter().map(|c| f(c)).collect::<Vec<_>>())
        };
        GroupSummary {
            name: name.to_string(),
            n_cases: cases.len(),
            dice: s(|c| c.dice),
            fpv_ml: s(|c| c.fpv_ml),
            fnv_ml: s(|c| c.fnv_ml),
            f1_c1: s(|c| c.f1_c1),
            f1_c2: s(|c| c.f1_c2),
            f1_c3: s(|c| c.f1_c3),
            f1_1to1: s(|c| c.f1_1to1),
        }
    }
}

/// Median DSC of the cases (or lesions) at or below a percentile threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdRow {
    /// Percentile (0–100) of the value distribution.
    pub percentile: f64,
    /// The threshold (ml).
    pub threshold_ml: f64,
    /// Number of cases/lesions with value ≤ threshold.
    pub n_below: usize,
    /// Median DSC of those.
    pub median_dice_below: f64,
}

/// One Dmax group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DmaxGroup {
    /// Lower bound (cm, inclusive).
    pub lo_cm: f64,
    /// Upper bound (cm; exclusive except for the last group).
    pub hi_cm: f64,
    /// Cases in the group and their summaries.
    pub summary: GroupSummary,
}

/// Everything `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortSummary {
    /// All cases.
    pub all: GroupSummary,
    /// No lesion / single / multiple GT lesions.
    pub scenarios: Vec<GroupSummary>,
    /// Median case DSC below GT TMTV percentiles.
    pub tmtv_thresholds: Vec<ThresholdRow>,
    /// Median lesion DSC below GT lesion MTV percentiles.
    pub mtv_thresholds: Vec<ThresholdRow>,
    /// Groups between the quartiles of GT Dmax.
    pub dmax_quartile_groups: Vec<DmaxGroup>,
    /// The study's fixed Dmax groups.
    pub dmax_study_groups: Vec<DmaxGroup>,
}

/// Builds the cohort summary from per-case and per-lesion metrics.
pub fn summarize(cases: &[PatientMetrics], lesions: &[LesionMetrics]) -> CohortSummary {
    let all: Vec<&PatientMetrics> = cases.iter().collect();
    let pick = |f: &dyn Fn(&PatientMetrics) -> bool| -> Vec<&PatientMetrics> {
        cases.iter().filter(|c| f(c)).collect()
    };
    let scenarios = vec![
        GroupSummary::of("no_lesion", &pick(&|c| c.n_gt_lesions == 0)),
        GroupSummary::of("single", &pick(&|c| c.n_gt_lesions == 1)),
        GroupSummary::of("multiple", &pick(&|c| c.n_gt_lesions > 1)),
    ];
    let positive = pick(&|c| c.n_gt_lesions > 0);
    let tmtv: Vec<(f64, f64)> = positive.iter().map(|c| (c.gt_tmtv_ml, c.dice)).collect();
    let mtv: Vec<(f64, f64)> = lesions
        .iter()
        .filter(|l| l.kind == LesionKind::Gt)
        .map(|l| (l.gt_mtv_ml, l.dice))
        .collect();
    let dmax: Vec<f64> = {
        let mut d: Vec<f64> = positive.iter().map(|c| c.dmax_cm).collect();
        d.sort_by(f64::total_cmp);
        d
    };
    let quart_bounds: Vec<(f64, f64)> = if dmax.is_empty() {
        Vec::new()
    } else {
        let q: Vec<f64> = [0.0, 25.0, 50.0, 75.0, 100.0]
            .iter()
            .map(|&p| percentile_sorted(&dmax, p))
            .collect();
        q.windows(2).map(|w| (w[0], w[1])).collect()
    };
    CohortSummary {
        all: GroupSummary::of("all", &all),
        scenarios,
        tmtv_thresholds: thresholds(&tmtv),
        mtv_thresholds: thresholds(&mtv),
        dmax_quartile_groups: dmax_groups(&positive, &quart_bounds),
        dmax_study_groups: dmax_groups(&positive, &STUDY_DMAX_GROUPS_CM),
    }
}

fn thresholds(values: &[(f64, f64)]) -> Vec<ThresholdRow> {
    let mut v: Vec<f64> = values
        .iter()
        .map(|x| x.0)
        .filter(|x| x.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Vec::new();
    }
    THRESHOLD_PERCENTILES
        .iter()
        .map(|&p| {
            let t = percentile_sorted(&v, p);
            let below: Vec<f64> = values.iter().filter(|x| x.0 <= t).map(|x| x.1).collect();
            ThresholdRow {
                percentile: p,
                threshold_ml: t,
                n_below: below.len(),
                median_dice_below: Summary::of(&below).median,
            }
        })
        .collect()
}

fn dmax_groups(cases: &[&PatientMetrics], bounds: &[(f64, f64)]) -> Vec<DmaxGroup> {
    bounds
        .iter()
        .enumerate()
        .map(|(i, &(lo, hi))| {
            let last = i + 1 == bounds.len();
            let members: Vec<&PatientMetrics> = cases
                .iter()
                .copied()
                .filter(|c| c.dmax_cm >= lo && (c.dmax_cm < hi || (last && c.dmax_cm <= hi)))
                .collect();
            DmaxGroup {
                lo_cm: lo,
                hi_cm: hi,
                summary: GroupSummary::of(&format!("dmax {lo:.1}–{hi:.1} cm"), &members),
            }
        })
        .collect()
}

/// Pairs a per-case value of two evaluations of the same cases by case id
/// (never by position) and runs the paired Wilcoxon signed-rank test of
/// `a − b` (continuity-corrected when the normal approximation is used).
/// Cases whose value is NaN on either side are dropped.
pub fn compare_paired(
    a: &[PatientMetrics],
    b: &[PatientMetrics],
    value: fn(&PatientMetrics) -> f64,
    alternative: Alternative,
) -> Result<WilcoxonResult> {
    let bmap: HashMap<&str, &PatientMetrics> = b.iter().map(|c| (c.case_id.as_str(), c)).collect();
    if bmap.len() != b.len() || a.len() != b.len() {
        return Err(EvalError::Invalid(format!(
            "paired comparison needs the same unique case ids on both sides ({} vs {} cases)",
            a.len(),
            b.len()
        )));
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for c in a {
        let other = bmap.get(c.case_id.as_str()).ok_or_else(|| {
            EvalError::Invalid(format!(
                "case {} is missing from the second evaluation",
                c.case_id
            ))
        })?;
        let (u, v) = (value(c), value(other));
        if u.is_finite() && v.is_finite() {
            x.push(u);
            y.push(v);
        }
    }
    wilcoxon(&x, &y, alternative, true)
}

/// A Table-1-style Markdown summary.
pub fn markdown(summary: &CohortSummary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Evaluation summary\n");
    let _ = writeln!(
        md,
        "| group | cases | DSC mean ± SD | DSC median [IQR] | FPV ml median [IQR] | FNV ml median [IQR] | F1 C1 | F1 C2 | F1 C3 | F1 1:1 |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    let row = |md: &mut String, g: &GroupSummary| {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            g.name,
            g.n_cases,
            g.dice.mean_sd(3),
            g.dice.median_iqr(3),
            g.fpv_ml.median_iqr(2),
            g.fnv_ml.median_iqr(2),
            g.f1_c1.mean_sd(3),
            g.f1_c2.mean_sd(3),
            g.f1_c3.mean_sd(3),
            g.f1_1to1.mean_sd(3),
        );
    };
    row(&mut md, &summary.all);
    for g in &summary.scenarios {
        row(&mut md, g);
    }
    for (title, rows, unit) in [
        (
            "GT TMTV thresholds (cases)",
            &summary.tmtv_thresholds,
            "TMTV",
        ),
        (
            "GT lesion MTV thresholds (lesions)",
            &summary.mtv_thresholds,
            "MTV",
        ),
    ] {
        let _ = writeln!(md, "\n## {title}\n");
        let _ = writeln!(md, "| percentile | {unit} ≤ (ml) | n | median DSC |");
        let _ = writeln!(md, "|---|---|---|---|");
        for r in rows {
            let _ = writeln!(
                md,
                "| {} | {:.2} | {} | {:.3} |",
                r.percentile, r.threshold_ml, r.n_below, r.median_dice_below
            );
        }
    }
    for (title, groups) in [
        ("Dmax quartile groups", &summary.dmax_quartile_groups),
        ("Study Dmax groups", &summary.dmax_study_groups),
    ] {
        let _ = writeln!(md, "\n## {title}\n");
        let _ = writeln!(
            md,
            "| Dmax (cm) | cases | DSC mean ± SD | DSC median [IQR] |"
        );
        let _ = writeln!(md, "|---|---|---|---|");
        for g in groups {
            let _ = writeln!(
                md,
                "| {:.1}–{:.1} | {} | {} | {} |",
                g.lo_cm,
                g.hi_cm,
                g.summary.n_cases,
                g.summary.dice.mean_sd(3),
                g.summary.dice.median_iqr(3)
            );
        }
    }
    md
}
