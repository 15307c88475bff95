//! The report's numbers (Table 1, scenarios, TMTV and lesion MTV
//! thresholds, Dmax groups) and their rendering as Markdown and HTML tables.
//!
//! Every statistic comes from `petseg_eval` (`stats::Summary`,
//! `cohort::summarize`, `cohort::compare_paired`); this module only picks
//! and lays them out.

use anyhow::{Context, Result};
use petseg_eval::cohort::{compare_paired, summarize, CohortSummary, ThresholdRow};
use petseg_eval::stats::{Alternative, Summary, WilcoxonResult};
use petseg_eval::PatientMetrics;
use serde::Serialize;

use super::load::Cell;

/// One-tailed paired Wilcoxon test of the proposed loss against a baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Baseline loss of the same network.
    pub baseline: String,
    /// Always `greater`: H1 is "proposed DSC − baseline DSC > 0".
    pub alternative: Alternative,
    /// The test (pairs: cases with a finite DSC on both sides).
    pub test: WilcoxonResult,
}

/// One row of Table 1 (one network × loss).
#[derive(Debug, Clone, Serialize)]
pub struct Table1Row {
    /// Network.
    pub network: String,
    /// Loss.
    pub loss: String,
    /// Cases evaluated.
    pub n_cases: usize,
    /// Per-patient DSC (NaN of lesion-free cases skipped).
    pub dice: Summary,
    /// Cases with the SUVmax criterion (C3) defined (a PET was given).
    pub n_c3: usize,
    /// Mean true-positive lesions per case under C3.
    pub tp_c3_mean: f64,
    /// Mean false-positive lesions per case under C3.
    pub fp_c3_mean: f64,
    /// Mean false-negative lesions per case under C3.
    pub fn_c3_mean: f64,
    /// Per-patient F1 under C3 (NaN skipped).
    pub f1_c3: Summary,
    /// Tests of the proposed loss against each baseline (proposed rows only).
    pub wilcoxon: Vec<Comparison>,
}

/// Everything `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    /// The loss tested against the others (`--proposed`).
    pub proposed_loss: String,
    /// Table 1.
    pub table1: Vec<Table1Row>,
    /// Per network × loss: the full cohort summary (scenarios, TMTV
    /// thresholds, Dmax groups).
    pub cells: Vec<CellReport>,
}

/// Cohort summary of one network × loss.
#[derive(Debug, Clone, Serialize)]
pub struct CellReport {
    /// Network.
    pub network: String,
    /// Loss.
    pub loss: String,
    /// The cell folders pooled.
    pub folders: Vec<String>,
    /// Whether every folder had a `lesions.csv` (else `mtv_thresholds` is
    /// empty).
    pub lesions_csv: bool,
    /// `petseg_eval::cohort::summarize` of its cases and GT lesions:
    /// `tmtv_thresholds` over cases with a GT lesion, `mtv_thresholds` over
    /// GT lesions (percentiles 25, 50, 75, 85 with NumPy's linear
    /// interpolation; "below" is ≤; an unmatched GT lesion has DSC 0).
    pub summary: CohortSummary,
}

fn mean_c3(cases: &[PatientMetrics], f: fn(&PatientMetrics) -> Option<u64>) -> (usize, f64) {
    let v: Vec<f64> = cases
        .iter()
        .filter_map(|c| f(c).map(|x| x as f64))
        .collect();
    (v.len(), Summary::of(&v).mean)
}

/// Computes the report's numbers. `proposed` names the loss compared
/// (one-tailed, greater) against every other loss of the same network.
pub fn compute(cells: &[Cell], proposed: &str) -> Result<ReportData> {
    let mut table1 = Vec::new();
    for c in cells {
        let (n_c3, tp) = mean_c3(&c.cases, |p| p.tp_c3);
        let (_, fp) = mean_c3(&c.cases, |p| p.fp_c3);
        let (_, fn_) = mean_c3(&c.cases, |p| p.fn_c3);
        let mut wilcoxon = Vec::new();
        if c.loss.eq_ignore_ascii_case(proposed) {
            for b in cells
                .iter()
                .filter(|b| b.network == c.network && !b.loss.eq_ignore_ascii_case(proposed))
            {
                let test = compare_paired(&c.cases, &b.cases, |p| p.dice, Alternative::Greater)
                    .with_context(|| {
                        format!("Wilcoxon test of {} against {}", c.label(), b.label())
                    })?;
                wilcoxon.push(Comparison {
                    baseline: b.loss.clone(),
                    alternative: Alternative::Greater,
                    test,
                });
            }
        }
        table1.push(Table1Row {
            network: c.network.clone(),
            loss: c.loss.clone(),
            n_cases: c.cases.len(),
            dice: Summary::of(&c.cases.iter().map(|p| p.dice).collect::<Vec<_>>()),
            n_c3,
            tp_c3_mean: tp,
            fp_c3_mean: fp,
            fn_c3_mean: fn_,
            f1_c3: Summary::of(&c.cases.iter().map(|p| p.f1_c3).collect::<Vec<_>>()),
            wilcoxon,
        });
    }
    let cells = cells
        .iter()
        .map(|c| CellReport {
            network: c.network.clone(),
            loss: c.loss.clone(),
            folders: c.folders.iter().map(|f| f.display().to_string()).collect(),
            lesions_csv: c.lesions.is_some(),
            summary: summarize(&c.cases, c.lesions.as_deref().unwrap_or_default()),
        })
        .collect();
    Ok(ReportData {
        proposed_loss: proposed.to_string(),
        table1,
        cells,
    })
}

/// A titled table, rendered as Markdown or HTML.
#[derive(Debug, Clone)]
pub struct Table {
    /// Section title.
    pub title: String,
    /// A sentence under the title (what the numbers are).
    pub note: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".to_string()
    }
}

fn p_value(p: f64) -> String {
    if !p.is_finite() {
        "–".to_string()
    } else if p < 1e-4 {
        format!("{p:.2e}")
    } else {
        format!("{p:.4}")
    }
}

/// The report's tables, in order.
pub fn tables(data: &ReportData) -> Vec<Table> {
    let mut out = Vec::new();
    out.push(Table {
        title: "Table 1: segmentation and detection per network and loss".into(),
        note: format!(
            "DSC per patient (lesion-free cases have none). TP/FP/FN: mean lesions per case \
             under the SUVmax criterion C3 (cases with a PET). F1: mean per-patient F1 under C3. \
             p: one-tailed paired Wilcoxon signed-rank test of {} against the baseline on \
             per-patient DSC paired by case id, pairs without a DSC dropped (H1: {} greater; \
             SciPy's method=\"auto\": exact for n ≤ 50 without ties or zeros, else a \
             permutation test for n ≤ 13, else the normal approximation with continuity \
             correction).",
            data.proposed_loss, data.proposed_loss
        ),
        header: [
            "network",
            "loss",
            "cases",
            "DSC mean ± SD",
            "DSC median [IQR]",
            "TP",
            "FP",
            "FN",
            "F1 (C3)",
            "p (vs baseline)",
        ]
        .map(String::from)
        .to_vec(),
        rows: data
            .table1
            .iter()
            .map(|r| {
                let p = r
                    .wilcoxon
                    .iter()
                    .map(|c| format!("{}: {}", c.baseline, p_value(c.test.p_value)))
                    .collect::<Vec<_>>()
                    .join("; ");
                vec![
                    r.network.clone(),
                    r.loss.clone(),
                    r.n_cases.to_string(),
                    format!("{} ± {}", num(r.dice.mean, 3), num(r.dice.sd, 3)),
                    format!(
                        "{} [{}, {}]",
                        num(r.dice.median, 3),
                        num(r.dice.q1, 3),
                        num(r.dice.q3, 3)
                    ),
                    num(r.tp_c3_mean, 2),
                    num(r.fp_c3_mean, 2),
                    num(r.fn_c3_mean, 2),
                    num(r.f1_c3.mean, 3),
                    if p.is_empty() { "–".into() } else { p },
                ]
            })
            .collect(),
    });
    let mut scen = Vec::new();
    let mut tmtv = Vec::new();
    let mut mtv = Vec::new();
    let mut no_lesions_csv = Vec::new();
    let mut dmax = Vec::new();
    for c in &data.cells {
        for g in &c.summary.scenarios {
            scen.push(vec![
                c.network.clone(),
                c.loss.clone(),
                g.name.clone(),
                g.n_cases.to_string(),
                format!("{} ± {}", num(g.dice.mean, 3), num(g.dice.sd, 3)),
                format!(
                    "{} [{}, {}]",
                    num(g.dice.median, 3),
                    num(g.dice.q1, 3),
                    num(g.dice.q3, 3)
                ),
                num(g.fpv_ml.median, 2),
                num(g.fnv_ml.median, 2),
                num(g.f1_c3.mean, 3),
            ]);
        }
        tmtv.extend(threshold_rows(c, &c.summary.tmtv_thresholds));
        mtv.extend(threshold_rows(c, &c.summary.mtv_thresholds));
        if !c.lesions_csv {
            no_lesions_csv.push(format!("{} / {}", c.network, c.loss));
        }
        for g in &c.summary.dmax_study_groups {
            dmax.push(vec![
                c.network.clone(),
                c.loss.clone(),
                format!("{:.0}–{:.0}", g.lo_cm, g.hi_cm),
                g.summary.n_cases.to_string(),
                num(g.summary.dice.median, 3),
                format!(
                    "{} ± {}",
                    num(g.summary.dice.mean, 3),
                    num(g.summary.dice.sd, 3)
                ),
            ]);
        }
    }
    out.push(Table {
        title: "Lesion scenarios".into(),
        note: "Cases with no, one, or several GT lesions. FPV/FNV: median ml; F1: mean under C3."
            .into(),
        header: [
            "network",
            "loss",
            "scenario",
            "cases",
            "DSC mean ± SD",
            "DSC median [IQR]",
            "FPV ml",
            "FNV ml",
            "F1 (C3)",
        ]
        .map(String::from)
        .to_vec(),
        rows: scen,
    });
    out.push(Table {
        title: "Median DSC below GT TMTV thresholds".into(),
        note:
            "Cases with ≥ 1 GT lesion whose GT TMTV is ≤ the threshold (a percentile of GT TMTV)."
                .into(),
        header: [
            "network",
            "loss",
            "percentile",
            "TMTV ≤ (ml)",
            "cases",
            "median DSC",
        ]
        .map(String::from)
        .to_vec(),
        rows: tmtv,
    });
    let mut mtv_note = "GT lesions (lesions.csv) whose MTV is ≤ the threshold, a percentile \
         (NumPy's linear interpolation) of the GT lesion MTVs of the network × loss; lesion DSC \
         against the predicted components touching the lesion, 0 when none does."
        .to_string();
    if !no_lesions_csv.is_empty() {
        mtv_note += &format!(
            " Not computed for {} (a cell folder has no lesions.csv).",
            no_lesions_csv.join(", ")
        );
    }
    out.push(Table {
        title: "Median lesion DSC below GT lesion MTV thresholds".into(),
        note: mtv_note,
        header: [
            "network",
            "loss",
            "percentile",
            "MTV ≤ (ml)",
            "lesions",
            "median DSC",
        ]
        .map(String::from)
        .to_vec(),
        rows: mtv,
    });
    out.push(Table {
        title: "DSC by Dmax group".into(),
        note: "The study's fixed groups of GT Dmax (cm; lower bound inclusive).".into(),
        header: [
            "network",
            "loss",
            "Dmax (cm)",
            "cases",
            "median DSC",
            "DSC mean ± SD",
        ]
        .map(String::from)
        .to_vec(),
        rows: dmax,
    });
    out
}

/// The rows of one network × loss's threshold table (TMTV or lesion MTV).
fn threshold_rows<'a>(
    c: &'a CellReport,
    rows: &'a [ThresholdRow],
) -> impl Iterator<Item = Vec<String>> + 'a {
    rows.iter().map(|t| {
        vec![
            c.network.clone(),
            c.loss.clone(),
            format!("P{}", t.percentile),
            num(t.threshold_ml, 2),
            t.n_below.to_string(),
            num(t.median_dice_below, 3),
        ]
    })
}

impl Table {
    /// GitHub-flavoured Markdown.
    pub fn markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut md = format!("## {}\n\n{}\n\n", self.title, self.note);
        md += &format!(
            "| {} |\n|{}\n",
            self.header
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(self.header.len())
        );
        for r in &self.rows {
            md += &format!(
                "| {} |\n",
                r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        md
    }

    /// An HTML `<section>` with the table.
    pub fn html(&self) -> String {
        let mut h = format!(
            "<section><h2>{}</h2><p>{}</p><table><thead><tr>",
            escape_html(&self.title),
            escape_html(&self.note)
        );
        for c in &self.header {
            h += &format!("<th>{}</th>", escape_html(c));
        }
        h += "</tr></thead><tbody>";
        for r in &self.rows {
            h += "<tr>";
            for c in r {
                h += &format!("<td>{}</td>", escape_html(c));
            }
            h += "</tr>";
        }
        h + "</tbody></table></section>\n"
    }
}

/// Escapes text for HTML content and attributes.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
