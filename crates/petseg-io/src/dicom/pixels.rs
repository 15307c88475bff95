//! Pixel decoding of a sorted series into one raster (`docs/method/suv.md` §2).
//!
//! Each slice is decoded by dicom-pixeldata (native, deflate, RLE, JPEG
//! lossless/baseline and, through the pure-Rust `openjp2` feature, JPEG 2000)
//! as **raw stored values**; the reader then applies that slice's own
//! RescaleSlope/RescaleIntercept (GE varies the slope per slice) and a
//! series-wide factor (the SUV factor for PET, 1 for CT). Slices decode in
//! parallel.

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::OpenFileOptions;
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use rayon::prelude::*;

use super::geometry::SeriesGeometry;
use super::header::SliceHeader;
use super::scan::DicomSeries;
use crate::error::{IoError, Result};

/// Checks that every slice's transfer syntax is known and its pixel data decodable.
pub fn check_transfer_syntaxes(series: &DicomSeries) -> Result<()> {
    for s in &series.slices {
        let uid = s.transfer_syntax_uid.as_str();
        match TransferSyntaxRegistry.get(uid) {
            None => {
                return Err(IoError::format(
                    &s.path,
                    format!("series {}: unknown transfer syntax {uid}", series.uid),
                ))
            }
            Some(ts) if !ts.can_decode_all() => {
                return Err(IoError::format(
                    &s.path,
                    format!(
                        "series {}: transfer syntax {uid} ({}) is not supported for pixel decoding \
                         (JPEG-LS needs dicom-pixeldata's `charls` feature)",
                        series.uid,
                        ts.name()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Decodes every slice in `geom.order` into a raster (i fastest), value =
/// (stored × slope + intercept) × `factor`.
pub fn decode_series(series: &DicomSeries, geom: &SeriesGeometry, factor: f64) -> Result<Vec<f32>> {
    let [ni, nj, nk] = geom.shape;
    let plane = ni * nj;
    let mut out = vec![0f32; plane * nk];
    out.par_chunks_mut(plane)
        .zip(geom.order.par_iter())
        .try_for_each(|(dst, &idx)| {
            decode_slice(&series.slices[idx], &series.uid, [ni, nj], factor, dst)
        })?;
    Ok(out)
}

fn decode_slice(
    h: &SliceHeader,
    series_uid: &str,
    [cols, rows]: [usize; 2],
    factor: f64,
    dst: &mut [f32],
) -> Result<()> {
    let fail = |what: String| IoError::format(&h.path, format!("series {series_uid}: {what}"));
    let obj = OpenFileOptions::new()
        .open_file(&h.path)
        .map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let decoded = obj.decode_pixel_data().map_err(|e| {
        fail(format!(
            "cannot decode pixel data ({}): {e}",
            h.transfer_syntax_uid
        ))
    })?;
    if decoded.samples_per_pixel() != 1 {
        return Err(fail(format!(
            "{} samples per pixel: expected a grey-scale image",
            decoded.samples_per_pixel()
        )));
    }
    if decoded.rows() as usize != rows
        || decoded.columns() as usize != cols
        || decoded.number_of_frames() != 1
    {
        return Err(fail(format!(
            "decoded {}×{}×{} pixels, the header says {rows}×{cols}×1",
            decoded.rows(),
            decoded.columns(),
            decoded.number_of_frames()
        )));
    }
    let raw: Vec<f64> = decoded
        .to_vec_with_options(&ConvertOptions::new().with_modality_lut(ModalityLutOption::None))
        .map_err(|e| fail(format!("cannot convert pixel values: {e}")))?;
    if raw.len() != dst.len() {
        return Err(fail(format!(
            "{} pixel values, expected {}",
            raw.len(),
            dst.len()
        )));
    }
    let (slope, intercept) = (h.rescale_slope, h.rescale_intercept);
    for (d, v) in dst.iter_mut().zip(raw) {
        *d = ((v * slope + intercept) * factor) as f32;
    }
    Ok(())
}
