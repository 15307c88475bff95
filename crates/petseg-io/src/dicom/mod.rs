//! DICOM PET/CT ingest (SUVbw by the QIBA rules, CT in HU) and a writer of
//! synthetic series for end-to-end tests (`docs/method/suv.md`).
//!
//! Reading, in one pass per folder:
//! 1. [`scan_dir`] finds the files (recursively), reads each header up to
//!    PixelData, and groups them by SeriesInstanceUID; stray files (a README,
//!    a DICOMDIR, an empty or cut file, a dataset without file meta) are
//!    listed with the reason ([`SkippedFile`]). [`DicomScan::single`] picks
//!    the PT or CT series, refuses a folder holding several, and refuses the
//!    series when an unreadable file names its SeriesInstanceUID.
//! 2. [`series_geometry`] sorts slices along the slice normal and checks the
//!    grid (even spacing within 1 %, no gaps or duplicates, one orientation,
//!    matrix and pixel spacing); the affine is RAS+ (DICOM LPS with x and y negated).
//! 3. [`compute_suv`] (a pure function, in [`suv`]) turns the PET tags into
//!    an SUVbw factor and a [`SuvReport`]; overrides are explicit.
//! 4. Pixels are decoded per slice with that slice's rescale slope/intercept.
//!
//! [`read_pet_suv`] and [`read_ct_hu`] do all four and validate everything
//! before returning, so a caller that writes only after both succeed never
//! leaves partial output.
//!
//! Writing: [`write_series`] stores a [`Volume`] as a PT (Bq/ml from SUV, with
//! the dose, times and weight that give a known SUV factor) or CT (HU) series,
//! in Explicit VR Little Endian, Deflated Explicit VR Little Endian or RLE
//! Lossless (our own RLE encoder: dicom-rs 0.10.1 only decodes RLE).
//!
//! Not supported (clear errors): multi-frame (Enhanced) image files,
//! JPEG-LS (needs the `charls` feature and cmake), DecayCorrection NONE.
//!
//! Conversion times (`cargo bench -p petseg-io --bench dicom_convert`, with
//! pydicom as the peer) are in the crate README.
//!
//! ```no_run
//! use petseg_io::dicom::{read_pet_suv, read_ct_hu, SuvOverrides};
//! let (pet_suv, report) = read_pet_suv("study/PET".as_ref(), &SuvOverrides::default())?;
//! let ct_hu = read_ct_hu("study/CT".as_ref())?;
//! println!("SUV factor {} ({})", report.suv_factor, report.method);
//! # Ok::<(), petseg_io::IoError>(())
//! ```

pub mod cohort;
pub mod datetime;
pub mod geometry;
pub mod header;
pub mod pixels;
pub mod rle;
pub mod scan;
pub mod suv;
pub mod writer;

use std::path::Path;

pub use cohort::write_cohort_dicom;
pub use geometry::{series_geometry, SeriesGeometry};
pub use header::SliceHeader;
pub use scan::{scan_dir, DicomScan, DicomSeries, SkipReason, SkippedFile};
pub use suv::{
    compute_suv, AcquisitionStamp, InjectionTimeRule, OverrideRecord, PetSuvTags, ScanTimeRule,
    SuvError, SuvMethod, SuvOverrides, SuvReport,
};
pub use writer::{
    write_case_dicom, write_series, CaseDicom, PetDoseTiming, SeriesKind, SeriesSpec,
    TransferSyntaxChoice,
};

use crate::error::{IoError, Result};
use crate::volume::Volume;

/// Reads the single PT series under `dir` as SUVbw (g/ml), with the report
/// of how the SUV factor was obtained.
pub fn read_pet_suv(dir: &Path, overrides: &SuvOverrides) -> Result<(Volume<f32>, SuvReport)> {
    let scan = scan_dir(dir)?;
    load_pet_suv(scan.single("PT")?, overrides)
}

/// Reads the single CT series under `dir` in Hounsfield units.
pub fn read_ct_hu(dir: &Path) -> Result<Volume<f32>> {
    let scan = scan_dir(dir)?;
    load_ct_hu(scan.single("CT")?)
}

/// Everything about a PT series except its pixels: checked geometry and the
/// SUV report. Cheap (headers only), so a batch can validate every study
/// before decoding or writing anything.
#[derive(Debug, Clone)]
pub struct PetPlan {
    /// Slice order, shape and affine.
    pub geometry: SeriesGeometry,
    /// How the SUV factor was obtained.
    pub report: SuvReport,
}

/// Checks a PT series (modality, geometry, transfer syntaxes, SUV rules)
/// without decoding pixels.
pub fn plan_pet_suv(series: &DicomSeries, overrides: &SuvOverrides) -> Result<PetPlan> {
    expect_modality(series, "PT")?;
    let geometry = series_geometry(series)?;
    pixels::check_transfer_syntaxes(series)?;
    let tags = series_pet_tags(series, &geometry)?;
    let report = compute_suv(&tags, overrides).map_err(|e| {
        IoError::format(
            series_folder(series),
            format!("PET series {}: {e}", series.uid),
        )
    })?;
    Ok(PetPlan { geometry, report })
}

/// Checks a CT series (modality, geometry, transfer syntaxes) without decoding pixels.
pub fn plan_ct_hu(series: &DicomSeries) -> Result<SeriesGeometry> {
    expect_modality(series, "CT")?;
    let geometry = series_geometry(series)?;
    pixels::check_transfer_syntaxes(series)?;
    Ok(geometry)
}

/// Decodes a planned PT series as SUVbw.
pub fn decode_pet_suv(series: &DicomSeries, plan: &PetPlan) -> Result<Volume<f32>> {
    let g = &plan.geometry;
    let data = pixels::decode_series(series, g, plan.report.suv_factor)?;
    Volume::from_raster(g.shape, data, g.affine)
}

/// Decodes a planned CT series in HU.
pub fn decode_ct_hu(series: &DicomSeries, geometry: &SeriesGeometry) -> Result<Volume<f32>> {
    let data = pixels::decode_series(series, geometry, 1.0)?;
    Volume::from_raster(geometry.shape, data, geometry.affine)
}

/// Loads a PT series (from a [`DicomScan`]) as SUVbw, with its report.
pub fn load_pet_suv(
    series: &DicomSeries,
    overrides: &SuvOverrides,
) -> Result<(Volume<f32>, SuvReport)> {
    let plan = plan_pet_suv(series, overrides)?;
    Ok((decode_pet_suv(series, &plan)?, plan.report))
}

/// Loads a CT series (from a [`DicomScan`]) in HU.
pub fn load_ct_hu(series: &DicomSeries) -> Result<Volume<f32>> {
    let geometry = plan_ct_hu(series)?;
    decode_ct_hu(series, &geometry)
}

fn expect_modality(series: &DicomSeries, modality: &str) -> Result<()> {
    if series.modality != modality {
        return Err(IoError::format(
            series_folder(series),
            format!("expected a {modality} series, got {}", series.describe()),
        ));
    }
    Ok(())
}

fn series_folder(series: &DicomSeries) -> std::path::PathBuf {
    series
        .slices
        .first()
        .and_then(|s| s.path.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A tag value for messages: the value itself, or "absent".
pub(crate) fn shown<T: std::fmt::Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "absent".to_string(), T::to_string)
}

/// The series-level PET tags: those of the first slice (in k order), the
/// acquisition stamps of all slices, and a check that the slices agree on
/// every series-level value the SUV rules use.
pub fn series_pet_tags(series: &DicomSeries, geom: &SeriesGeometry) -> Result<PetSuvTags> {
    let first = &series.slices[geom.order[0]];
    let mut tags = first.pet.clone();
    tags.acquisitions = geom
        .order
        .iter()
        .flat_map(|&i| series.slices[i].pet.acquisitions.iter().cloned())
        .collect();
    for &i in &geom.order {
        let s = &series.slices[i];
        let p = &s.pet;
        let pairs: [(&str, String, String); 7] = [
            ("(0054,1001) Units", shown(&p.units), shown(&tags.units)),
            (
                "(0054,1102) DecayCorrection",
                shown(&p.decay_correction),
                shown(&tags.decay_correction),
            ),
            (
                "(0010,1030) PatientWeight",
                shown(&p.patient_weight_kg),
                shown(&tags.patient_weight_kg),
            ),
            (
                "(0018,1074) RadionuclideTotalDose",
                shown(&p.radionuclide_total_dose),
                shown(&tags.radionuclide_total_dose),
            ),
            (
                "(0018,1075) RadionuclideHalfLife",
                shown(&p.radionuclide_half_life_s),
                shown(&tags.radionuclide_half_life_s),
            ),
            (
                "(0018,1078) RadiopharmaceuticalStartDateTime",
                shown(&p.radiopharmaceutical_start_datetime),
                shown(&tags.radiopharmaceutical_start_datetime),
            ),
            (
                "(0018,1072) RadiopharmaceuticalStartTime",
                shown(&p.radiopharmaceutical_start_time),
                shown(&tags.radiopharmaceutical_start_time),
            ),
        ];
        for (name, here, there) in pairs {
            if here != there {
                return Err(IoError::format(
                    &s.path,
                    format!(
                        "PET series {}: {name} = {here} differs from {there} in {}",
                        series.uid,
                        first.path.display()
                    ),
                ));
            }
        }
    }
    Ok(tags)
}
