//! Slice order and the voxel-to-world affine of a series (`docs/method/suv.md` §1).
//!
//! Slices are sorted by the projection of ImagePositionPatient on the slice
//! normal (row direction × column direction), never by InstanceNumber or
//! file name. The positions must lie on one line with even steps (1 %
//! tolerance): a missing slice, a duplicate position, a mixed orientation or a
//! change of matrix size or pixel spacing is an error naming the files.
//!
//! The k axis of the affine is the actual step between consecutive positions,
//! so a gantry-tilted CT keeps its (sheared) geometry. DICOM positions are in
//! LPS; the affine is RAS (x and y rows negated).

use nalgebra::{Matrix4, Vector3};

use super::header::SliceHeader;
use super::scan::DicomSeries;
use crate::affine::Affine;
use crate::error::{IoError, Result};

/// Relative tolerance on slice steps and lateral positions (`docs/method/suv.md` §1: 1 %).
pub const SPACING_TOLERANCE: f64 = 0.01;

/// The grid of a series: slice order, shape and affine.
#[derive(Debug, Clone)]
pub struct SeriesGeometry {
    /// Indices into `DicomSeries::slices`, in increasing position along the normal (k order).
    pub order: Vec<usize>,
    /// `[columns, rows, slices]` = `[ni, nj, nk]`.
    pub shape: [usize; 3],
    /// Voxel → RAS+ mm.
    pub affine: Affine,
    /// Slice step along k in mm.
    pub slice_step_mm: f64,
}

/// Checks the slices of `series` and derives their geometry.
pub fn series_geometry(series: &DicomSeries) -> Result<SeriesGeometry> {
    let slices = &series.slices;
    let who = || series.describe();
    let first = slices
        .first()
        .ok_or_else(|| IoError::Invalid(format!("series {} has no files", series.uid)))?;
    let need = |s: &SliceHeader, what: &str| {
        IoError::format(&s.path, format!("series {}: {what} is missing", series.uid))
    };
    for s in slices {
        if s.number_of_frames != 1 {
            return Err(IoError::format(
                &s.path,
                format!(
                    "series {}: {} frames in one file (multi-frame/Enhanced images are not supported; expected one slice per file)",
                    series.uid, s.number_of_frames
                ),
            ));
        }
    }
    let rows = first.rows.ok_or_else(|| need(first, "(0028,0010) Rows"))?;
    let cols = first
        .columns
        .ok_or_else(|| need(first, "(0028,0011) Columns"))?;
    let iop = first
        .orientation
        .ok_or_else(|| need(first, "(0020,0037) ImageOrientationPatient"))?;
    let ps = first
        .pixel_spacing_mm
        .ok_or_else(|| need(first, "(0028,0030) PixelSpacing"))?;
    if rows == 0 || cols == 0 || ps.iter().any(|v| *v <= 0.0) {
        return Err(IoError::format(
            &first.path,
            format!(
                "series {}: {rows}×{cols} pixels with spacing {ps:?} mm: expected positive values",
                series.uid
            ),
        ));
    }
    for s in slices {
        let differs = |what: &str, a: String, b: String| {
            IoError::format(
                &s.path,
                format!(
                    "series {}: {what} {a} differs from {b} in {} (mixed geometry in one series)",
                    series.uid,
                    first.path.display()
                ),
            )
        };
        if s.rows != Some(rows) || s.columns != Some(cols) {
            return Err(differs(
                "matrix (rows×columns)",
                format!("{}×{}", super::shown(&s.rows), super::shown(&s.columns)),
                format!("{rows}×{cols}"),
            ));
        }
        let o = s
            .orientation
            .ok_or_else(|| need(s, "(0020,0037) ImageOrientationPatient"))?;
        if o.iter().zip(iop.iter()).any(|(a, b)| (a - b).abs() > 1e-4) {
            return Err(differs(
                "ImageOrientationPatient",
                format!("{o:?}"),
                format!("{iop:?}"),
            ));
        }
        let p = s
            .pixel_spacing_mm
            .ok_or_else(|| need(s, "(0028,0030) PixelSpacing"))?;
        if p.iter()
            .zip(ps.iter())
            .any(|(a, b)| (a - b).abs() > 1e-4 * b.abs().max(1.0))
        {
            return Err(differs("PixelSpacing", format!("{p:?}"), format!("{ps:?}")));
        }
        s.position_lps_mm
            .ok_or_else(|| need(s, "(0020,0032) ImagePositionPatient"))?;
    }

    let row_dir = Vector3::new(iop[0], iop[1], iop[2]);
    let col_dir = Vector3::new(iop[3], iop[4], iop[5]);
    if (row_dir.norm() - 1.0).abs() > 1e-3
        || (col_dir.norm() - 1.0).abs() > 1e-3
        || row_dir.dot(&col_dir).abs() > 1e-3
    {
        return Err(IoError::format(
            &first.path,
            format!(
                "series {}: ImageOrientationPatient {iop:?} is not two orthonormal directions",
                series.uid
            ),
        ));
    }
    let row_dir = row_dir.normalize();
    let col_dir = col_dir.normalize();
    let normal = row_dir.cross(&col_dir);

    let pos = |i: usize| {
        let p = slices[i].position_lps_mm.expect("checked above");
        Vector3::new(p[0], p[1], p[2])
    };
    let mut order: Vec<usize> = (0..slices.len()).collect();
    order.sort_by(|&a, &b| normal.dot(&pos(a)).total_cmp(&normal.dot(&pos(b))));

    let n = order.len();
    let step_vec = if n > 1 {
        let steps: Vec<f64> = order
            .windows(2)
            .map(|w| normal.dot(&(pos(w[1]) - pos(w[0]))))
            .collect();
        // Duplicates first: a zero step would otherwise read as a gap elsewhere.
        let min_pixel = ps[0].min(ps[1]);
        for (w, d) in order.windows(2).zip(&steps) {
            if d.abs() < 1e-3 * min_pixel.max(1e-3) {
                return Err(IoError::format(
                    &slices[w[1]].path,
                    format!(
                        "series {}: duplicate slice position {:?} (also in {}); {}",
                        series.uid,
                        slices[w[1]].position_lps_mm.expect("checked"),
                        slices[w[0]].path.display(),
                        who()
                    ),
                ));
            }
        }
        let mut sorted = steps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        for (w, d) in order.windows(2).zip(&steps) {
            if (d - median).abs() > SPACING_TOLERANCE * median {
                let ratio = d / median;
                let kind = if ratio > 1.5 {
                    format!(
                        "gap: about {} slice(s) missing",
                        (ratio.round() as i64 - 1).max(1)
                    )
                } else {
                    "uneven slice spacing".to_string()
                };
                return Err(IoError::format(
                    series_dir(series),
                    format!(
                        "series {}: {kind} between {} and {} (step {d:.4} mm, expected {median:.4} mm ±{:.0} %)",
                        series.uid,
                        slices[w[0]].path.display(),
                        slices[w[1]].path.display(),
                        SPACING_TOLERANCE * 100.0
                    ),
                ));
            }
        }
        let step = (pos(order[n - 1]) - pos(order[0])) / (n as f64 - 1.0);
        // Every position on the line origin + k·step (lateral drift = mixed stacks).
        for (k, &i) in order.iter().enumerate() {
            let expected = pos(order[0]) + step * k as f64;
            let off = (pos(i) - expected).norm();
            if off > SPACING_TOLERANCE * median.max(min_pixel) {
                return Err(IoError::format(
                    &slices[i].path,
                    format!(
                        "series {}: position {:?} is {off:.3} mm off the line of the other slices (expected {:?})",
                        series.uid,
                        slices[i].position_lps_mm.expect("checked"),
                        [expected.x, expected.y, expected.z]
                    ),
                ));
            }
        }
        step
    } else {
        let t = first
            .spacing_between_slices_mm
            .or(first.slice_thickness_mm)
            .filter(|t| *t > 0.0)
            .unwrap_or(1.0);
        normal * t
    };

    let origin = pos(order[0]);
    let mut lps = Matrix4::identity();
    for r in 0..3 {
        lps[(r, 0)] = row_dir[r] * ps[1];
        lps[(r, 1)] = col_dir[r] * ps[0];
        lps[(r, 2)] = step_vec[r];
        lps[(r, 3)] = origin[r];
    }
    let affine = Affine::new(lps_to_ras() * lps)?;
    Ok(SeriesGeometry {
        order,
        shape: [cols as usize, rows as usize, n],
        affine,
        slice_step_mm: step_vec.norm(),
    })
}

/// diag(−1, −1, 1, 1): LPS ↔ RAS (its own inverse).
pub fn lps_to_ras() -> Matrix4<f64> {
    Matrix4::from_diagonal(&nalgebra::Vector4::new(-1.0, -1.0, 1.0, 1.0))
}

/// The folder holding the series' first file, for series-level messages.
fn series_dir(series: &DicomSeries) -> std::path::PathBuf {
    series
        .slices
        .first()
        .and_then(|s| s.path.parent())
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
}
