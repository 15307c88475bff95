//! The report's figures (PNG, drawn with plotters and the embedded DejaVu
//! Sans font, so no system font is needed).

use std::path::Path;

use anyhow::{anyhow, Result};
use petseg_eval::cohort::{CohortSummary, ThresholdRow};
use petseg_eval::stats::Summary;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::load::Cell;
use super::tables::ReportData;

/// DejaVu Sans (Bitstream Vera licence, free to redistribute: see
/// `xtask/assets/DejaVu-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the embedded font as plotters' `sans-serif`.
pub fn register_font() -> Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded DejaVuSans.ttf is not a valid font"))
}

fn colour(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// DSC box plots: one panel per scenario (single, multiple, all cases with
/// a lesion), one box per network × loss (Tukey whiskers: 1.5 IQR, clipped
/// to the data). Written to `path`.
pub fn dsc_boxplots(cells: &[Cell], path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 3));
    type Keep = fn(u64) -> bool;
    let scenarios: [(&str, Keep); 3] = [
        ("single lesion", |n| n == 1),
        ("multiple lesions", |n| n > 1),
        ("all with lesions", |n| n > 0),
    ];
    for (p, (name, keep)) in panels.iter().zip(scenarios) {
        let mut chart = ChartBuilder::on(p)
            .caption(format!("DSC: {name}"), ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(10)
            .y_label_area_size(45)
            .build_cartesian_2d(-0.5f64..cells.len() as f64 - 0.5, 0f64..1f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("DSC")
            .draw()?;
        for (i, c) in cells.iter().enumerate() {
            let v: Vec<f64> = c
                .cases
                .iter()
                .filter(|m| keep(m.n_gt_lesions) && m.dice.is_finite())
                .map(|m| m.dice)
                .collect();
            let s = Summary::of(&v);
            if s.n == 0 {
                continue;
            }
            let x = i as f64;
            let iqr = s.q3 - s.q1;
            let lo = v
                .iter()
                .copied()
                .filter(|&d| d >= s.q1 - 1.5 * iqr)
                .fold(f64::INFINITY, f64::min);
            let hi = v
                .iter()
                .copied()
                .filter(|&d| d <= s.q3 + 1.5 * iqr)
                .fold(f64::NEG_INFINITY, f64::max);
            let col = colour(i);
            let series = chart.draw_series([Rectangle::new(
                [(x - 0.3, s.q1), (x + 0.3, s.q3)],
                col.mix(0.5).filled(),
            )])?;
            if std::ptr::eq(p, &panels[0]) {
                series.label(c.label()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], col.filled())
                });
            }
            chart.draw_series([
                PathElement::new(
                    vec![(x - 0.3, s.median), (x + 0.3, s.median)],
                    BLACK.stroke_width(2),
                ),
                PathElement::new(vec![(x, s.q3), (x, hi)], BLACK),
                PathElement::new(vec![(x, s.q1), (x, lo)], BLACK),
                PathElement::new(vec![(x - 0.15, hi), (x + 0.15, hi)], BLACK),
                PathElement::new(vec![(x - 0.15, lo), (x + 0.15, lo)], BLACK),
            ])?;
            chart.draw_series(
                v.iter()
                    .filter(|&&d| d < lo || d > hi)
                    .map(|&d| Circle::new((x, d), 3, BLACK)),
            )?;
        }
        if std::ptr::eq(p, &panels[0]) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}

/// A chart with x in `x` and DSC (0–1) on y, as `figure_lines` draws on.
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one coloured line with dots per network × loss of `data` (colour
/// by position, the same in every figure), from the points `points` picks
/// out of each, and the legend (lower right). Shared by the threshold and
/// Dmax figures.
fn draw_lines<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    data: &ReportData,
    points: &dyn Fn(&CohortSummary) -> Vec<(f64, f64)>,
) -> Result<()> {
    for (i, c) in data.cells.iter().enumerate() {
        let pts = points(&c.summary);
        if pts.is_empty() {
            continue; // no legend entry for a line with nothing to draw
        }
        let col = colour(i);
        chart
            .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
            .label(format!("{} / {}", c.network, c.loss))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, col.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Median DSC at or below each percentile threshold (`rows` picks the
/// threshold table: TMTV per case or MTV per lesion), one line per
/// network × loss; `what` names the quantity (`GT TMTV`, `GT lesion MTV`)
/// and `unit` what is counted (`cases`, `lesions`).
pub fn threshold_curve(
    data: &ReportData,
    rows: fn(&CohortSummary) -> &[ThresholdRow],
    what: &str,
    unit: &str,
    path: &Path,
) -> Result<()> {
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Median DSC against {what} threshold"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(50)
        .build_cartesian_2d(20f64..90f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "{what} percentile threshold ({unit} with {what} ≤ threshold)"
        ))
        .y_desc("median DSC")
        .draw()?;
    draw_lines(&mut chart, data, &|s| {
        rows(s)
            .iter()
            .filter(|t| t.median_dice_below.is_finite())
            .map(|t| (t.percentile, t.median_dice_below))
            .collect()
    })?;
    root.present()?;
    Ok(())
}

/// Median DSC per study Dmax group, one line per network × loss.
pub fn dmax_groups(data: &ReportData, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let names: Vec<String> = petseg_eval::cohort::STUDY_DMAX_GROUPS_CM
        .iter()
        .map(|(lo, hi)| format!("{lo:.0}–{hi:.0} cm"))
        .collect();
    let n = names.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("Median DSC by Dmax group", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..1f64)?;
    let formatter = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&formatter)
        .x_desc("GT Dmax group")
        .y_desc("median DSC")
        .draw()?;
    draw_lines(&mut chart, data, &|s| {
        s.dmax_study_groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.summary.dice.median.is_finite())
            .map(|(k, g)| (k as f64, g.summary.dice.median))
            .collect()
    })?;
    root.present()?;
    Ok(())
}
