//! The per-file header facts the reader needs, read once while scanning.

use std::path::{Path, PathBuf};

use dicom_core::header::HasLength;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use super::suv::{AcquisitionStamp, PetSuvTags};
use crate::error::{IoError, Result};

/// GE PET private creator of group 0009.
const GE_PET_CREATOR: &str = "GEMS_PETD_01";
/// Philips PET private creator of group 7053.
const PHILIPS_PET_CREATOR: &str = "Philips PET Private Group";

/// What one DICOM file says about itself (no pixel data).
#[derive(Debug, Clone)]
pub struct SliceHeader {
    /// The file.
    pub path: PathBuf,
    /// TransferSyntaxUID (0002,0010).
    pub transfer_syntax_uid: String,
    /// SeriesInstanceUID (0020,000E).
    pub series_instance_uid: String,
    /// Modality (0008,0060), e.g. `PT`, `CT`.
    pub modality: String,
    /// SeriesDescription (0008,103E), for messages.
    pub series_description: Option<String>,
    /// InstanceNumber (0020,0013), for messages only (never used for order).
    pub instance_number: Option<i64>,
    /// Rows (0028,0010).
    pub rows: Option<u16>,
    /// Columns (0028,0011).
    pub columns: Option<u16>,
    /// NumberOfFrames (0028,0008), 1 when absent.
    pub number_of_frames: u32,
    /// ImagePositionPatient (0020,0032), LPS mm.
    pub position_lps_mm: Option<[f64; 3]>,
    /// ImageOrientationPatient (0020,0037): row direction then column direction.
    pub orientation: Option<[f64; 6]>,
    /// PixelSpacing (0028,0030): between rows, then between columns (mm).
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// SliceThickness (0018,0050), for single-slice series.
    pub slice_thickness_mm: Option<f64>,
    /// SpacingBetweenSlices (0018,0088), for single-slice series.
    pub spacing_between_slices_mm: Option<f64>,
    /// RescaleSlope (0028,1053), 1 when absent.
    pub rescale_slope: f64,
    /// RescaleIntercept (0028,1052), 0 when absent.
    pub rescale_intercept: f64,
    /// The PET tags of this file (acquisition stamp included).
    pub pet: PetSuvTags,
}

impl SliceHeader {
    /// Reads the header of `path`, stopping at PixelData (fast).
    pub fn read(path: &Path) -> Result<Self> {
        let obj = OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|e| IoError::format(path, format!("not a readable DICOM file: {e}")))?;
        let transfer_syntax_uid = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .trim()
            .to_string();
        Self::from_object(path, transfer_syntax_uid, &obj)
    }

    /// Extracts the facts from a parsed object.
    pub fn from_object(
        path: &Path,
        transfer_syntax_uid: String,
        obj: &InMemDicomObject,
    ) -> Result<Self> {
        let r = Reader { obj, path };
        let series_instance_uid = r
            .string(tags::SERIES_INSTANCE_UID)
            .ok_or_else(|| IoError::format(path, "(0020,000E) SeriesInstanceUID is missing"))?;
        let modality = r
            .string(tags::MODALITY)
            .ok_or_else(|| IoError::format(path, "(0008,0060) Modality is missing"))?;
        let file = path.display().to_string();
        let pet = PetSuvTags {
            series_instance_uid: series_instance_uid.clone(),
            sop_class_uid: r.string(tags::SOP_CLASS_UID),
            units: r.string(tags::UNITS),
            decay_correction: r.string(tags::DECAY_CORRECTION),
            corrected_image: r.strings(tags::CORRECTED_IMAGE),
            patient_weight_kg: r.float(tags::PATIENT_WEIGHT, "(0010,1030) PatientWeight")?,
            series_date: r.string(tags::SERIES_DATE),
            series_time: r.string(tags::SERIES_TIME),
            acquisitions: vec![AcquisitionStamp {
                file,
                date: r.string(tags::ACQUISITION_DATE),
                time: r.string(tags::ACQUISITION_TIME),
                datetime: r.string(tags::ACQUISITION_DATE_TIME),
            }],
            ge_private_scan_datetime: r.private_string(0x0009, GE_PET_CREATOR, 0x0D),
            radiopharmaceutical_start_datetime: None,
            radiopharmaceutical_start_time: None,
            radionuclide_total_dose: None,
            radionuclide_half_life_s: None,
            philips_suv_scale_factor: r.private_float(0x7053, PHILIPS_PET_CREATOR, 0x00)?,
            philips_activity_scale_factor: r.private_float(0x7053, PHILIPS_PET_CREATOR, 0x09)?,
        };
        let mut h = SliceHeader {
            path: path.to_path_buf(),
            transfer_syntax_uid,
            series_instance_uid,
            modality,
            series_description: r.string(tags::SERIES_DESCRIPTION),
            instance_number: r
                .float(tags::INSTANCE_NUMBER, "(0020,0013) InstanceNumber")?
                .map(|v| v as i64),
            rows: r.float(tags::ROWS, "(0028,0010) Rows")?.map(|v| v as u16),
            columns: r
                .float(tags::COLUMNS, "(0028,0011) Columns")?
                .map(|v| v as u16),
            number_of_frames: r
                .float(tags::NUMBER_OF_FRAMES, "(0028,0008) NumberOfFrames")?
                .map_or(1, |v| v as u32),
            position_lps_mm: r.floats::<3>(
                tags::IMAGE_POSITION_PATIENT,
                "(0020,0032) ImagePositionPatient",
            )?,
            orientation: r.floats::<6>(
                tags::IMAGE_ORIENTATION_PATIENT,
                "(0020,0037) ImageOrientationPatient",
            )?,
            pixel_spacing_mm: r.floats::<2>(tags::PIXEL_SPACING, "(0028,0030) PixelSpacing")?,
            slice_thickness_mm: r.float(tags::SLICE_THICKNESS, "(0018,0050) SliceThickness")?,
            spacing_between_slices_mm: r.float(
                tags::SPACING_BETWEEN_SLICES,
                "(0018,0088) SpacingBetweenSlices",
            )?,
            rescale_slope: r
                .float(tags::RESCALE_SLOPE, "(0028,1053) RescaleSlope")?
                .unwrap_or(1.0),
            rescale_intercept: r
                .float(tags::RESCALE_INTERCEPT, "(0028,1052) RescaleIntercept")?
                .unwrap_or(0.0),
            pet,
        };
        if let Some(item) = obj
            .get(tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE)
            .and_then(|e| e.items())
            .and_then(|items| items.first())
        {
            let s = Reader { obj: item, path };
            h.pet.radiopharmaceutical_start_datetime =
                s.string(tags::RADIOPHARMACEUTICAL_START_DATE_TIME);
            h.pet.radiopharmaceutical_start_time = s.string(tags::RADIOPHARMACEUTICAL_START_TIME);
            h.pet.radionuclide_total_dose = s.float(
                tags::RADIONUCLIDE_TOTAL_DOSE,
                "(0018,1074) RadionuclideTotalDose",
            )?;
            h.pet.radionuclide_half_life_s = s.float(
                tags::RADIONUCLIDE_HALF_LIFE,
                "(0018,1075) RadionuclideHalfLife",
            )?;
        }
        if !h.rescale_slope.is_finite()
            || h.rescale_slope == 0.0
            || !h.rescale_intercept.is_finite()
        {
            return Err(IoError::format(
                path,
                format!(
                    "(0028,1053) RescaleSlope {} / (0028,1052) RescaleIntercept {}: expected a finite non-zero slope",
                    h.rescale_slope, h.rescale_intercept
                ),
            ));
        }
        Ok(h)
    }
}

/// Typed, path-aware access to the elements of one object.
struct Reader<'a> {
    obj: &'a InMemDicomObject,
    path: &'a Path,
}

impl Reader<'_> {
    /// A text value, trimmed; None when absent or empty.
    fn string(&self, tag: Tag) -> Option<String> {
        let e = self.obj.get(tag)?;
        let s = e.to_str().ok()?;
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!s.is_empty()).then(|| s.to_string())
    }

    /// All values of a multi-valued text element.
    fn strings(&self, tag: Tag) -> Vec<String> {
        self.obj
            .get(tag)
            .and_then(|e| e.to_multi_str().ok())
            .map(|v| {
                v.iter()
                    .map(|s| {
                        s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                            .to_string()
                    })
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A numeric value; an error when present but not a number.
    fn float(&self, tag: Tag, name: &str) -> Result<Option<f64>> {
        let Some(e) = self.obj.get(tag) else {
            return Ok(None);
        };
        let blank_text = matches!(e.vr(), VR::DS | VR::IS) && self.string(tag).is_none();
        if e.is_empty() || blank_text {
            return Ok(None);
        }
        e.to_float64().map(Some).map_err(|err| {
            IoError::format(
                self.path,
                format!(
                    "{name} = {:?} is not a number: {err}",
                    self.string(tag).unwrap_or_default()
                ),
            )
        })
    }

    /// Exactly `N` numeric values; an error when present with another count.
    fn floats<const N: usize>(&self, tag: Tag, name: &str) -> Result<Option<[f64; N]>> {
        let Some(e) = self.obj.get(tag) else {
            return Ok(None);
        };
        if e.is_empty() {
            return Ok(None);
        }
        let v = e
            .to_multi_float64()
            .map_err(|err| IoError::format(self.path, format!("{name}: not numbers: {err}")))?;
        let arr: [f64; N] = v.as_slice().try_into().map_err(|_| {
            IoError::format(
                self.path,
                format!("{name}: expected {N} values, found {}: {v:?}", v.len()),
            )
        })?;
        if arr.iter().any(|x| !x.is_finite()) {
            return Err(IoError::format(
                self.path,
                format!("{name}: non-finite value in {arr:?}"),
            ));
        }
        Ok(Some(arr))
    }

    /// The tag of private element `element` in the block reserved by `creator`.
    fn private_tag(&self, group: u16, creator: &str, element: u8) -> Option<Tag> {
        let mut any_creator = false;
        for block in 0x10u16..=0xFF {
            if let Some(c) = self.string(Tag(group, block)) {
                any_creator = true;
                if c.eq_ignore_ascii_case(creator) {
                    return Some(Tag(group, (block << 8) | element as u16));
                }
            }
        }
        // No creator recorded at all (some anonymisers drop them): the usual block.
        (!any_creator).then_some(Tag(group, 0x1000 | element as u16))
    }

    /// A private text value; bytes of an implicit-VR (UN) element are read as ASCII.
    fn private_string(&self, group: u16, creator: &str, element: u8) -> Option<String> {
        let tag = self.private_tag(group, creator, element)?;
        let e = self.obj.get(tag)?;
        let s = if e.vr() == VR::UN || e.vr() == VR::OB {
            String::from_utf8_lossy(&e.to_bytes().ok()?).into_owned()
        } else {
            e.to_str().ok()?.into_owned()
        };
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!s.is_empty()).then(|| s.to_string())
    }

    /// A private numeric value (DS text, UN bytes holding text, or FD/FL binary).
    fn private_float(&self, group: u16, creator: &str, element: u8) -> Result<Option<f64>> {
        let Some(tag) = self.private_tag(group, creator, element) else {
            return Ok(None);
        };
        let Some(e) = self.obj.get(tag) else {
            return Ok(None);
        };
        if matches!(e.vr(), VR::FD | VR::FL) {
            return Ok(e.to_float64().ok());
        }
        let Some(s) = self.private_string(group, creator, element) else {
            return Ok(None);
        };
        s.parse::<f64>().map(Some).map_err(|_| {
            IoError::format(
                self.path,
                format!(
                    "private tag ({group:04X},{:04X}) of {creator}: {s:?} is not a number",
                    tag.element()
                ),
            )
        })
    }
}
