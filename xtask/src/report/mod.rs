//! `cargo xtask report`: the study's tables and figures from a results
//! folder (`docs/method/evaluation.md` §8–10, `docs/method/study.md` §4).
//!
//! Input: `results/NAME/<network>__<loss>[__fold<k>]/patients.csv` and,
//! for the lesion MTV table, `lesions.csv` (see [`load`] for the layout). Output (`--out`, default `results/NAME/report`):
//!
//! * `report.md`: Table 1, the scenario, TMTV-threshold, lesion
//!   MTV-threshold and Dmax tables;
//! * `report.json`: the same numbers, machine-readable ([`tables::ReportData`]);
//! * `dsc_boxplots.png`, `tmtv_threshold.png`, `mtv_threshold.png`,
//!   `dmax_groups.png`;
//! * `report.html`: one self-contained page (figures inlined as base64
//!   `data:` URIs).
//!
//! * `overlay_<network>.png`: PET MIP overlays with GT and predicted
//!   outlines of three cases (lowest, median and highest DSC) of the
//!   proposed loss's cell (else the network's first), when its `cell.json`
//!   records the evaluation manifest and predictions (cells written by
//!   `cargo xtask sweep` do); otherwise the report says they were skipped.
//!
//! Everything is written into `OUT.partial/` first and renamed
//! over `OUT` at the end, so a failure leaves no partial report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub mod base64;
pub mod figures;
pub mod load;
pub mod overlays;
pub mod tables;

use tables::escape_html;

/// The figures: file name and caption.
const FIGURES: [(&str, &str); 4] = [
    (
        "dsc_boxplots.png",
        "Per-patient DSC per network × loss and lesion scenario (boxes: IQR and median; whiskers: 1.5 IQR).",
    ),
    (
        "tmtv_threshold.png",
        "Median DSC of the cases whose GT TMTV is at or below each percentile threshold.",
    ),
    (
        "mtv_threshold.png",
        "Median lesion DSC of the GT lesions whose MTV is at or below each percentile threshold (a GT lesion no prediction touches counts as DSC 0).",
    ),
    ("dmax_groups.png", "Median DSC per GT Dmax group."),
];

/// Draws the overlays of each network; returns (file, caption) of those
/// drawn and notes about those skipped.
fn draw_overlays(
    cells: &[load::Cell],
    proposed: &str,
    dir: &Path,
) -> (Vec<(String, String)>, Vec<String>) {
    let (mut drawn, mut notes) = (Vec::new(), Vec::new());
    let mut networks: Vec<&str> = cells.iter().map(|c| c.network.as_str()).collect();
    networks.dedup();
    for net in networks {
        let mine: Vec<&load::Cell> = cells.iter().filter(|c| c.network == net).collect();
        let cell = mine
            .iter()
            .find(|c| c.loss.eq_ignore_ascii_case(proposed))
            .unwrap_or(&mine[0]);
        let Some(img) = &cell.images else {
            notes.push(format!(
                "PET MIP overlays of {} skipped: its cell.json does not record eval_manifest and predictions.",
                cell.label()
            ));
            continue;
        };
        let mut cases: Vec<(&str, f64)> = cell
            .cases
            .iter()
            .filter(|p| p.n_gt_lesions > 0 && p.dice.is_finite() && img.ids.contains(&p.case_id))
            .map(|p| (p.case_id.as_str(), p.dice))
            .collect();
        cases.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut pick: Vec<usize> = vec![0, cases.len() / 2, cases.len().saturating_sub(1)];
        pick.dedup();
        let chosen: Vec<overlays::OverlayCase> = pick
            .into_iter()
            .filter_map(|i| cases.get(i))
            .map(|&(id, dice)| overlays::OverlayCase { id, dice })
            .collect();
        if chosen.is_empty() {
            notes.push(format!(
                "PET MIP overlays of {} skipped: no case with a GT lesion.",
                cell.label()
            ));
            continue;
        }
        let file = format!(
            "overlay_{}.png",
            net.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-',
                "_"
            )
        );
        let title = format!(
            "{}: coronal PET MIP, GT green, prediction red (both yellow)",
            cell.label()
        );
        match overlays::draw(&title, &img.eval_manifest, &img.predictions, &chosen, &dir.join(&file)) {
            Ok(()) => drawn.push((
                file,
                format!("PET MIP of {} with GT (green) and predicted (red) outlines: lowest, median and highest DSC.", cell.label()),
            )),
            Err(e) => notes.push(format!("PET MIP overlays of {} skipped: {e:#}", cell.label())),
        }
    }
    (drawn, notes)
}

/// Builds the report of `results` into `out`; returns the paths written.
pub fn run(results: &Path, out: &Path, proposed: &str) -> Result<Vec<PathBuf>> {
    let cells = load::load_results(results)?;
    let data = tables::compute(&cells, proposed)?;
    let tabs = tables::tables(&data);
    let tmp = out.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    figures::register_font()?;
    figures::dsc_boxplots(&cells, &tmp.join(FIGURES[0].0)).context("drawing the DSC box plots")?;
    figures::threshold_curve(
        &data,
        |s| &s.tmtv_thresholds,
        "GT TMTV",
        "cases",
        &tmp.join(FIGURES[1].0),
    )
    .context("drawing the TMTV figure")?;
    figures::threshold_curve(
        &data,
        |s| &s.mtv_thresholds,
        "GT lesion MTV",
        "lesions",
        &tmp.join(FIGURES[2].0),
    )
    .context("drawing the lesion MTV figure")?;
    figures::dmax_groups(&data, &tmp.join(FIGURES[3].0)).context("drawing the Dmax figure")?;
    let (overlay_figs, overlay_notes) = draw_overlays(&cells, proposed, &tmp);
    let figs: Vec<(String, String)> = FIGURES
        .iter()
        .map(|(f, c)| (f.to_string(), c.to_string()))
        .chain(overlay_figs)
        .collect();

    let title = format!("petseg report: {}", results.display());
    let mut md = format!("# {title}\n\n");
    for t in &tabs {
        md += &t.markdown();
        md.push('\n');
    }
    md += "## Figures\n\n";
    for (file, caption) in &figs {
        md += &format!("![{caption}]({file})\n\n{caption}\n\n");
    }
    for n in &overlay_notes {
        md += &format!("{n}\n\n");
    }

    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin-bottom:1em}}\
th,td{{border:1px solid #999;padding:3px 8px;text-align:right}}th{{background:#e8eef6}}\
td:first-child,td:nth-child(2){{text-align:left}}img{{max-width:100%;border:1px solid #ccc}}\
</style></head><body><h1>{t}</h1>\n",
        t = escape_html(&title)
    );
    for t in &tabs {
        html += &t.html();
    }
    html += "<section><h2>Figures</h2>\n";
    for (file, caption) in &figs {
        let bytes = std::fs::read(tmp.join(file))
            .with_context(|| format!("reading {}", tmp.join(file).display()))?;
        html += &format!(
            "<figure><img alt=\"{c}\" src=\"data:image/png;base64,{}\"><figcaption>{c}</figcaption></figure>\n",
            base64::encode(&bytes),
            c = escape_html(caption)
        );
    }
    for n in &overlay_notes {
        html += &format!("<p>{}</p>\n", escape_html(n));
    }
    html += "</section></body></html>\n";

    std::fs::write(tmp.join("report.md"), md).context("writing report.md")?;
    std::fs::write(
        tmp.join("report.json"),
        serde_json::to_string_pretty(&data)? + "\n",
    )
    .context("writing report.json")?;
    std::fs::write(tmp.join("report.html"), html).context("writing report.html")?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("moving the report to {}", out.display()))?;
    let mut written: Vec<PathBuf> = ["report.md", "report.json", "report.html"]
        .iter()
        .map(|f| f.to_string())
        .chain(figs.into_iter().map(|(f, _)| f))
        .map(|f| out.join(f))
        .collect();
    written.sort();
    Ok(written)
}
