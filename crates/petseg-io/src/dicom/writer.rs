//! Writing a [`Volume`] as a DICOM PT or CT series, for synthetic end-to-end tests.
//!
//! The series look like a scanner's: one file per slice, int16 storage with a
//! RescaleSlope chosen **per slice** (as GE does for PET), InstanceNumber
//! running head to feet (opposite to the geometric order), PET in Bq/ml with
//! Units BQML, DecayCorrection START, CorrectedImage ATTN\DECY\…, the patient
//! weight and a RadiopharmaceuticalInformationSequence whose dose, half-life
//! and start time give a known SUV factor ([`PetDoseTiming::suv_factor`]).
//! Multi-bed timing is simulated: beds are acquired from the lowest slices
//! up, so the first file (InstanceNumber 1, the top slice) is **not** the
//! earliest bed; SeriesTime is the earliest bed's start.
//!
//! Every UID is derived from the seed and the series identity (`2.25.` +
//! 128-bit hash), so the same inputs give byte-identical files.

use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDateTime};
use dicom_core::value::{DataSetSequence, PixelFragmentSequence, PrimitiveValue};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use nalgebra::Vector3;

use super::geometry::lps_to_ras;
use super::rle::encode_frame_u16;
use crate::error::{IoError, Result};
use crate::volume::Volume;

/// The F-18 half-life in seconds (the value scanners write).
pub const F18_HALF_LIFE_S: f64 = 6586.2;

/// Transfer syntaxes the writer can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransferSyntaxChoice {
    /// Explicit VR Little Endian (1.2.840.10008.1.2.1), uncompressed (the default).
    #[default]
    ExplicitVrLittleEndian,
    /// Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99): the whole data set deflated.
    DeflatedExplicitVrLittleEndian,
    /// RLE Lossless (1.2.840.10008.1.2.5): encapsulated, one fragment per slice.
    RleLossless,
}

impl TransferSyntaxChoice {
    /// The transfer syntax UID.
    pub fn uid(self) -> &'static str {
        match self {
            Self::ExplicitVrLittleEndian => uids::EXPLICIT_VR_LITTLE_ENDIAN,
            Self::DeflatedExplicitVrLittleEndian => uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
            Self::RleLossless => uids::RLE_LOSSLESS,
        }
    }
}

/// Dose, weight and timing of a synthetic PET acquisition.
#[derive(Debug, Clone, PartialEq)]
pub struct PetDoseTiming {
    /// PatientWeight, kg.
    pub patient_weight_kg: f64,
    /// RadionuclideTotalDose, Bq.
    pub injected_dose_bq: f64,
    /// RadionuclideHalfLife, s.
    pub half_life_s: f64,
    /// RadiopharmaceuticalStartDateTime.
    pub injection: NaiveDateTime,
    /// Start of the first (earliest) bed = SeriesDate/Time.
    pub scan_start: NaiveDateTime,
    /// Slices per bed position (≥ 1).
    pub slices_per_bed: usize,
    /// Duration of one bed position, s.
    pub bed_duration_s: f64,
}

impl PetDoseTiming {
    /// An F-18 acquisition with `uptake_s` between injection and the first bed,
    /// 2-minute beds of 50 slices.
    pub fn f18(
        patient_weight_kg: f64,
        injected_dose_bq: f64,
        injection: NaiveDateTime,
        uptake_s: f64,
    ) -> Self {
        PetDoseTiming {
            patient_weight_kg,
            injected_dose_bq,
            half_life_s: F18_HALF_LIFE_S,
            injection,
            scan_start: injection + Duration::milliseconds((uptake_s * 1000.0).round() as i64),
            slices_per_bed: 50,
            bed_duration_s: 120.0,
        }
    }

    /// The SUVbw factor a correct reader must find: weight·1000 / (dose decayed
    /// from injection to the scan start).
    pub fn suv_factor(&self) -> f64 {
        let dt_s = (self.scan_start - self.injection).num_milliseconds() as f64 / 1000.0;
        self.patient_weight_kg * 1000.0
            / (self.injected_dose_bq * (-dt_s / self.half_life_s).exp2())
    }
}

impl PetDoseTiming {
    /// A plausible F-18 PSMA acquisition for synthetic case `index` of a
    /// cohort: weight 55–110 kg, dose 200–400 MBq, uptake 55–75 min, a
    /// morning injection on a day after 2026-01-05; all drawn from a hash of
    /// (`seed`, `index`), so the same case always gets the same tags.
    pub fn synthetic(seed: u64, index: usize) -> Self {
        let u = |salt: &str| {
            let h = splitmix(
                seed ^ splitmix(
                    index as u64
                        ^ splitmix(
                            salt.bytes()
                                .fold(0u64, |a, b| a.wrapping_mul(131).wrapping_add(b as u64)),
                        ),
                ),
            );
            (h >> 11) as f64 / (1u64 << 53) as f64
        };
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).expect("valid date")
            + Duration::days((u("day") * 300.0) as i64);
        let injection = day.and_hms_opt(8, 0, 0).expect("valid time")
            + Duration::seconds((u("inj") * 10800.0) as i64);
        let mut t = Self::f18(
            (55.0 + 55.0 * u("weight")).round(),
            (2.0e8 + 2.0e8 * u("dose")).round(),
            injection,
            (3300.0 + 1200.0 * u("uptake")).round(),
        );
        t.slices_per_bed = 56;
        t
    }
}

/// Where [`write_case_dicom`] put a case, and the SUV factor it encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseDicom {
    /// The PT series folder (`{dir}/PT`).
    pub pet_dir: PathBuf,
    /// The CT series folder (`{dir}/CT`).
    pub ct_dir: PathBuf,
    /// The SUVbw factor a correct reader must find.
    pub suv_factor: f64,
}

/// Writes one synthetic case as a PT series (`{dir}/PT`, from SUV) and a CT
/// series (`{dir}/CT`, from HU on the CT's own grid) of one study, with
/// [`PetDoseTiming::synthetic`] timing; the CT is acquired 5 min before the PET.
pub fn write_case_dicom(
    dir: &Path,
    patient_id: &str,
    pet_suv: &Volume<f32>,
    ct_hu: &Volume<f32>,
    seed: u64,
    index: usize,
    transfer_syntax: TransferSyntaxChoice,
) -> Result<CaseDicom> {
    let timing = PetDoseTiming::synthetic(seed, index);
    let suv_factor = timing.suv_factor();
    let ct_spec = SeriesSpec {
        kind: SeriesKind::Ct {
            acquired: timing.scan_start - Duration::minutes(5),
            patient_weight_kg: timing.patient_weight_kg,
        },
        patient_id: patient_id.to_string(),
        seed,
        series_number: 1,
        description: "CT WB 120kV".into(),
        transfer_syntax,
    };
    let pet_spec = SeriesSpec {
        kind: SeriesKind::Pet(timing),
        patient_id: patient_id.to_string(),
        seed,
        series_number: 2,
        description: "PET WB PSMA AC".into(),
        transfer_syntax,
    };
    let (pet_dir, ct_dir) = (dir.join("PT"), dir.join("CT"));
    // One study per case (a follow-up scan of the same patient is a new study).
    let (mut ct_spec, mut pet_spec) = (ct_spec, pet_spec);
    ct_spec.seed = seed ^ splitmix(index as u64);
    pet_spec.seed = ct_spec.seed;
    write_series(&ct_dir, ct_hu, &ct_spec)?;
    write_series(&pet_dir, pet_suv, &pet_spec)?;
    Ok(CaseDicom {
        pet_dir,
        ct_dir,
        suv_factor,
    })
}

/// PT or CT, with what each needs.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesKind {
    /// A PET series; the volume holds SUVbw, stored as Bq/ml.
    Pet(PetDoseTiming),
    /// A CT series; the volume holds HU. `acquired` is the series/acquisition time.
    Ct {
        /// SeriesDate/Time and AcquisitionDate/Time.
        acquired: NaiveDateTime,
        /// PatientWeight written to the CT too (scanners do).
        patient_weight_kg: f64,
    },
}

/// Identity and encoding of a series to write.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// PT or CT, with dose/timing for PT.
    pub kind: SeriesKind,
    /// PatientID (and PatientName); also part of the UID derivation.
    pub patient_id: String,
    /// Seed of the UID derivation (the cohort seed).
    pub seed: u64,
    /// SeriesNumber.
    pub series_number: u32,
    /// SeriesDescription.
    pub description: String,
    /// Encoding of the files.
    pub transfer_syntax: TransferSyntaxChoice,
}

/// Writes `volume` as one file per slice (`IM00001.dcm`, …) into `dir`
/// (created if needed) and returns the paths. Each file is written to a
/// temporary name and renamed. Errors: a grid DICOM cannot represent
/// (non-orthogonal in-plane axes), more than 65535 rows/columns.
pub fn write_series(dir: &Path, volume: &Volume<f32>, spec: &SeriesSpec) -> Result<Vec<PathBuf>> {
    let [ni, nj, nk] = volume.shape();
    if ni > u16::MAX as usize || nj > u16::MAX as usize {
        return Err(IoError::Invalid(format!(
            "{ni}×{nj} pixels per slice: DICOM allows at most 65535"
        )));
    }
    let lps = lps_to_ras() * volume.affine().matrix();
    let col = |c: usize| Vector3::new(lps[(0, c)], lps[(1, c)], lps[(2, c)]);
    let (ci, cj, ck) = (col(0), col(1), col(2));
    let (row_dir, col_dir) = (ci.normalize(), cj.normalize());
    if row_dir.dot(&col_dir).abs() > 1e-6 {
        return Err(IoError::Geometry(format!(
            "in-plane axes are not orthogonal (cos {:.2e}): DICOM cannot store this grid",
            row_dir.dot(&col_dir)
        )));
    }
    let normal = row_dir.cross(&col_dir);
    let origin = Vector3::new(lps[(0, 3)], lps[(1, 3)], lps[(2, 3)]);
    std::fs::create_dir_all(dir).map_err(|e| IoError::os(dir, e))?;

    let modality = match spec.kind {
        SeriesKind::Pet(_) => "PT",
        SeriesKind::Ct { .. } => "CT",
    };
    let study_uid = derive_uid(spec.seed, &[&spec.patient_id, "study"]);
    let frame_uid = derive_uid(spec.seed, &[&spec.patient_id, "frame-of-reference"]);
    let series_uid = derive_uid(
        spec.seed,
        &[
            &spec.patient_id,
            "series",
            &spec.series_number.to_string(),
            modality,
        ],
    );
    let (series_dt, weight_kg) = match &spec.kind {
        SeriesKind::Pet(t) => (t.scan_start, t.patient_weight_kg),
        SeriesKind::Ct {
            acquired,
            patient_weight_kg,
        } => (*acquired, *patient_weight_kg),
    };
    let iop = [
        row_dir.x, row_dir.y, row_dir.z, col_dir.x, col_dir.y, col_dir.z,
    ];
    let raster = volume.as_raster_slice();
    let plane = ni * nj;

    let mut paths = Vec::with_capacity(nk);
    for k in 0..nk {
        let values = &raster[k * plane..(k + 1) * plane];
        // Instance numbers run from the top slice down (k = nk-1 is instance 1).
        let instance = (nk - k) as u32;
        let ipp = origin + ck * k as f64;
        let (acq_dt, stored_unit_factor, intercept) = match &spec.kind {
            SeriesKind::Pet(t) => {
                let bed = (k / t.slices_per_bed.max(1)) as f64;
                let offset_ms = (bed * t.bed_duration_s * 1000.0).round() as i64;
                // SUV → Bq/ml.
                (
                    t.scan_start + Duration::milliseconds(offset_ms),
                    1.0 / t.suv_factor(),
                    0.0,
                )
            }
            SeriesKind::Ct { acquired, .. } => (*acquired, 1.0, -1024.0),
        };
        let physical: Vec<f64> = values
            .iter()
            .map(|v| *v as f64 * stored_unit_factor)
            .collect();
        let unit_slope = matches!(spec.kind, SeriesKind::Ct { .. });
        let (slope_text, stored) = quantise(&physical, intercept, unit_slope);

        let mut obj = InMemDicomObject::new_empty();
        let sop_class = match spec.kind {
            SeriesKind::Pet(_) => uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
            SeriesKind::Ct { .. } => uids::CT_IMAGE_STORAGE,
        };
        let sop_uid = derive_uid(spec.seed, &[&series_uid, "instance", &instance.to_string()]);
        let put = |obj: &mut InMemDicomObject, tag, vr, v: &str| {
            obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
        };
        put(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
        put(
            &mut obj,
            tags::IMAGE_TYPE,
            VR::CS,
            "ORIGINAL\\PRIMARY\\AXIAL",
        );
        put(&mut obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
        put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &sop_uid);
        for (tag, vr, fmt) in [
            (tags::STUDY_DATE, VR::DA, "%Y%m%d"),
            (tags::SERIES_DATE, VR::DA, "%Y%m%d"),
            (tags::STUDY_TIME, VR::TM, "%H%M%S%.6f"),
            (tags::SERIES_TIME, VR::TM, "%H%M%S%.6f"),
        ] {
            put(&mut obj, tag, vr, &series_dt.format(fmt).to_string());
        }
        put(
            &mut obj,
            tags::ACQUISITION_DATE,
            VR::DA,
            &acq_dt.format("%Y%m%d").to_string(),
        );
        put(
            &mut obj,
            tags::ACQUISITION_TIME,
            VR::TM,
            &acq_dt.format("%H%M%S%.6f").to_string(),
        );
        put(&mut obj, tags::MODALITY, VR::CS, modality);
        put(&mut obj, tags::MANUFACTURER, VR::LO, "petseg synthetic");
        put(
            &mut obj,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &spec.description,
        );
        put(&mut obj, tags::PATIENT_NAME, VR::PN, &spec.patient_id);
        put(&mut obj, tags::PATIENT_ID, VR::LO, &spec.patient_id);
        put(&mut obj, tags::PATIENT_WEIGHT, VR::DS, &ds(weight_kg));
        put(&mut obj, tags::SLICE_THICKNESS, VR::DS, &ds(ck.norm()));
        put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &study_uid);
        put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, &series_uid);
        put(&mut obj, tags::STUDY_ID, VR::SH, "1");
        put(
            &mut obj,
            tags::SERIES_NUMBER,
            VR::IS,
            &spec.series_number.to_string(),
        );
        put(
            &mut obj,
            tags::INSTANCE_NUMBER,
            VR::IS,
            &instance.to_string(),
        );
        put(
            &mut obj,
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            &multi_ds(&[ipp.x, ipp.y, ipp.z]),
        );
        put(
            &mut obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            &multi_ds(&iop),
        );
        put(&mut obj, tags::FRAME_OF_REFERENCE_UID, VR::UI, &frame_uid);
        put(
            &mut obj,
            tags::SLICE_LOCATION,
            VR::DS,
            &ds(ipp.dot(&normal)),
        );
        put(
            &mut obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2",
        );
        put(
            &mut obj,
            tags::PIXEL_SPACING,
            VR::DS,
            &multi_ds(&[cj.norm(), ci.norm()]),
        );
        put(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, &ds(intercept));
        put(&mut obj, tags::RESCALE_SLOPE, VR::DS, &slope_text);
        for (tag, v) in [
            (tags::SAMPLES_PER_PIXEL, 1u16),
            (tags::ROWS, nj as u16),
            (tags::COLUMNS, ni as u16),
            (tags::BITS_ALLOCATED, 16),
            (tags::BITS_STORED, 16),
            (tags::HIGH_BIT, 15),
            (tags::PIXEL_REPRESENTATION, 1),
        ] {
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        }
        match &spec.kind {
            SeriesKind::Pet(t) => put_pet_tags(&mut obj, t, nk, k),
            SeriesKind::Ct { .. } => {
                put(&mut obj, tags::RESCALE_TYPE, VR::LO, "HU");
                put(&mut obj, tags::KVP, VR::DS, "120");
            }
        }
        let words: Vec<u16> = stored.iter().map(|s| *s as u16).collect();
        match spec.transfer_syntax {
            TransferSyntaxChoice::RleLossless => {
                let frame = encode_frame_u16(&words, ni);
                obj.put(DataElement::<InMemDicomObject>::new(
                    tags::PIXEL_DATA,
                    VR::OB,
                    PixelFragmentSequence::new(Vec::<u32>::new(), vec![frame]),
                ));
            }
            _ => {
                obj.put(DataElement::new(
                    tags::PIXEL_DATA,
                    VR::OW,
                    PrimitiveValue::U16(words.into()),
                ));
            }
        }
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(spec.transfer_syntax.uid()))
            .map_err(|e| IoError::Invalid(format!("DICOM file meta for slice {k}: {e}")))?;
        let path = dir.join(format!("IM{instance:05}.dcm"));
        let tmp = dir.join(format!(".IM{instance:05}.dcm.tmp"));
        file.write_to_file(&tmp)
            .map_err(|e| IoError::format(&tmp, format!("cannot write DICOM: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| IoError::os(&path, e))?;
        paths.push(path);
    }
    Ok(paths)
}

fn put_pet_tags(obj: &mut InMemDicomObject, t: &PetDoseTiming, nk: usize, k: usize) {
    let put = |obj: &mut InMemDicomObject, tag, vr, v: &str| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    };
    put(obj, tags::UNITS, VR::CS, "BQML");
    put(obj, tags::DECAY_CORRECTION, VR::CS, "START");
    put(
        obj,
        tags::CORRECTED_IMAGE,
        VR::CS,
        "DECY\\ATTN\\SCAT\\DTIM\\RAN\\NORM",
    );
    put(obj, tags::SERIES_TYPE, VR::CS, "WHOLE BODY\\IMAGE");
    put(obj, tags::COUNTS_SOURCE, VR::CS, "EMISSION");
    put(obj, tags::RESCALE_TYPE, VR::LO, "BQML");
    put(
        obj,
        tags::ACTUAL_FRAME_DURATION,
        VR::IS,
        &((t.bed_duration_s * 1000.0).round() as i64).to_string(),
    );
    obj.put(DataElement::new(
        tags::NUMBER_OF_SLICES,
        VR::US,
        PrimitiveValue::from(nk as u16),
    ));
    obj.put(DataElement::new(
        tags::IMAGE_INDEX,
        VR::US,
        PrimitiveValue::from((nk - k) as u16),
    ));

    let mut code = InMemDicomObject::new_empty();
    put(&mut code, tags::CODE_VALUE, VR::SH, "C-111A1");
    put(&mut code, tags::CODING_SCHEME_DESIGNATOR, VR::SH, "SRT");
    put(&mut code, tags::CODE_MEANING, VR::LO, "^18^Fluorine");
    let mut item = InMemDicomObject::new_empty();
    put(&mut item, tags::RADIOPHARMACEUTICAL, VR::LO, "18F-DCFPyL");
    put(
        &mut item,
        tags::RADIOPHARMACEUTICAL_START_TIME,
        VR::TM,
        &t.injection.format("%H%M%S%.6f").to_string(),
    );
    put(
        &mut item,
        tags::RADIONUCLIDE_TOTAL_DOSE,
        VR::DS,
        &ds(t.injected_dose_bq),
    );
    put(
        &mut item,
        tags::RADIONUCLIDE_HALF_LIFE,
        VR::DS,
        &ds(t.half_life_s),
    );
    put(
        &mut item,
        tags::RADIONUCLIDE_POSITRON_FRACTION,
        VR::DS,
        "0.9686",
    );
    put(
        &mut item,
        tags::RADIOPHARMACEUTICAL_START_DATE_TIME,
        VR::DT,
        &t.injection.format("%Y%m%d%H%M%S%.6f").to_string(),
    );
    item.put(DataElement::new(
        tags::RADIONUCLIDE_CODE_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![code]),
    ));
    obj.put(DataElement::new(
        tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
}

/// Stores `physical` as int16 with `intercept` and a slope: 1 when `unit_slope`
/// and the values fit, else max|v − intercept| / 32767 (per slice). The slope
/// is formatted as a DS first and parsed back, so that stored × slope is what
/// a reader computes (the clamp absorbs the last-digit rounding of the DS). Returns the slope's DS text and the stored values.
fn quantise(physical: &[f64], intercept: f64, unit_slope: bool) -> (String, Vec<i16>) {
    let max_abs = physical
        .iter()
        .fold(0.0f64, |m, v| m.max((v - intercept).abs()));
    let slope = if (unit_slope && max_abs <= 32767.0) || max_abs == 0.0 {
        1.0
    } else {
        max_abs / 32767.0
    };
    let text = ds(slope);
    let parsed: f64 = text.parse().unwrap_or(slope);
    let stored = physical
        .iter()
        .map(|v| ((v - intercept) / parsed).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    (text, stored)
}

/// A decimal string (DS) of at most 16 characters, as precise as fits.
pub fn ds(v: f64) -> String {
    let plain = format!("{v}");
    if plain.len() <= 16 {
        return plain;
    }
    let mut best: Option<(f64, String)> = None;
    for prec in 0..=15 {
        for s in [format!("{v:.prec$}"), format!("{v:.prec$e}")] {
            if s.len() <= 16 {
                let err = (s.parse::<f64>().unwrap_or(f64::INFINITY) - v).abs();
                if best.as_ref().is_none_or(|(e, _)| err < *e) {
                    best = Some((err, s));
                }
            }
        }
    }
    best.map_or_else(|| format!("{v:.3e}"), |(_, s)| s)
}

fn multi_ds(values: &[f64]) -> String {
    values.iter().map(|v| ds(*v)).collect::<Vec<_>>().join("\\")
}

/// A `2.25.` UID from a 128-bit hash of the seed and `parts`.
pub fn derive_uid(seed: u64, parts: &[&str]) -> String {
    let mut h1 = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    let mut h2 = 0x6c62_272e_07bb_0142u64 ^ seed.rotate_left(29);
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0x1f)) {
            h1 = (h1 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            h2 = (h2 ^ b as u64)
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(5);
        }
    }
    let v = ((splitmix(h1) as u128) << 64) | splitmix(h2 ^ h1.rotate_left(17)) as u128;
    format!("2.25.{v}")
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_fits_sixteen_characters_and_keeps_precision() {
        for v in [
            0.0,
            1.0,
            -1024.0,
            72.5,
            3.7e8,
            6586.2,
            1.0 / 3.0,
            -123.456_789_012_345_67,
            1.234e-7,
            98765.4321987,
        ] {
            let s = ds(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= v.abs() * 1e-11, "{v} -> {s}");
        }
    }

    #[test]
    fn quantisation_error_is_half_a_slope() {
        let v: Vec<f64> = (0..1000)
            .map(|i| (i as f64 * 0.731).sin() * 12345.6 + 20000.0)
            .collect();
        let (slope, stored) = quantise(&v, 0.0, false);
        let slope: f64 = slope.parse().unwrap();
        for (x, s) in v.iter().zip(&stored) {
            assert!((*s as f64 * slope - x).abs() <= 0.5 * slope * (1.0 + 1e-9));
        }
        let (slope, stored) = quantise(&[-1000.0, 0.0, 40.0], -1024.0, true);
        assert_eq!(slope, "1");
        assert_eq!(stored, vec![24, 1024, 1064]);
    }

    #[test]
    fn uids_are_deterministic_valid_and_distinct() {
        let a = derive_uid(7, &["case_0001", "study"]);
        assert_eq!(a, derive_uid(7, &["case_0001", "study"]));
        assert_ne!(a, derive_uid(8, &["case_0001", "study"]));
        assert_ne!(a, derive_uid(7, &["case_0002", "study"]));
        assert_ne!(derive_uid(7, &["ab", "c"]), derive_uid(7, &["a", "bc"]));
        assert!(
            a.len() <= 64 && a.starts_with("2.25.") && a[5..].bytes().all(|b| b.is_ascii_digit())
        );
    }
}
