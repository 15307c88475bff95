//! `cargo xtask report`: the study's tables and figures from a results
//! folder (SPEC §9).
//!
//! Input: `results/NAME/<network>__<loss>[__fold<k>]/patients.csv` (see
//! [`load`] for the layout). Output (`--out`, default `results/NAME/report`):
//!
//! * `report.md`: Table 1, the scenario, TMTV-threshold and Dmax tables;
//! * `report.json`: the same numbers, machine-readable ([`tables::ReportData`]);
//! * `dsc_boxplots.png`, `tmtv_threshold.png`, `dmax_groups.png`;
//! * `report.html`: one self-contained page (figures inlined as base64
//!   `data:` URIs).
//!
//! Not produced: PET MIP overlays with GT and predicted contours (cell
//! folders do not record their predictions and manifest yet); the report
//! says so. Everything is written into `OUT.partial/` first and renamed
//! over `OUT` at the end, so a failure leaves no partial report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub mod base64;
pub mod figures;
pub mod load;
pub mod tables;

use tables::escape_html;

/// The figures: file name and caption.
const FIGURES: [(&str, &str); 3] = [
    (
        "dsc_boxplots.png",
        "Per-patient DSC per network × loss and lesion scenario (boxes: IQR and median; whiskers: 1.5 IQR).",
    ),
    (
        "tmtv_threshold.png",
        "Median DSC of the cases whose GT TMTV is at or below each percentile threshold.",
    ),
    ("dmax_groups.png", "Median DSC per GT Dmax group."),
];

const OVERLAY_NOTE: &str = "PET MIP overlays with GT and predicted contours are not produced: \
the cell folders do not record their predictions and manifest.";

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
    figures::tmtv_curve(&data, &tmp.join(FIGURES[1].0)).context("drawing the TMTV figure")?;
    figures::dmax_groups(&data, &tmp.join(FIGURES[2].0)).context("drawing the Dmax figure")?;

    let title = format!("petseg report: {}", results.display());
    let mut md = format!("# {title}\n\n");
    for t in &tabs {
        md += &t.markdown();
        md.push('\n');
    }
    md += "## Figures\n\n";
    for (file, caption) in FIGURES {
        md += &format!("![{caption}]({file})\n\n{caption}\n\n");
    }
    md += &format!("{OVERLAY_NOTE}\n");

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
    for (file, caption) in FIGURES {
        let bytes = std::fs::read(tmp.join(file))
            .with_context(|| format!("reading {}", tmp.join(file).display()))?;
        html += &format!(
            "<figure><img alt=\"{c}\" src=\"data:image/png;base64,{}\"><figcaption>{c}</figcaption></figure>\n",
            base64::encode(&bytes),
            c = escape_html(caption)
        );
    }
    html += &format!(
        "<p>{}</p></section></body></html>\n",
        escape_html(OVERLAY_NOTE)
    );

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
        .chain(FIGURES.iter().map(|(f, _)| f))
        .map(|f| out.join(f))
        .collect();
    written.sort();
    Ok(written)
}
