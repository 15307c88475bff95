//! SUVbw from PET DICOM tags by the QIBA vendor-neutral rules (`docs/method/suv.md` §3).
//!
//! [`compute_suv`] is a pure function of the tag values of one series
//! ([`PetSuvTags`]) and the user's explicit overrides ([`SuvOverrides`]). It
//! returns the multiplier that turns rescaled pixel values (stored × slope +
//! intercept, per slice) into SUVbw (g/ml), together with a [`SuvReport`]
//! saying which tag values and which rules produced it.
//!
//! The rules, in order:
//! * CorrectedImage (0028,0051) must contain `ATTN` and `DECY`.
//! * Units (0054,1001):
//!   * `BQML`: factor = weight\[kg\] × 1000 / decayed dose\[Bq\];
//!   * `CNTS` (Philips): the private SUV scale factor (7053,1000) if present
//!     and positive; else the private activity concentration scale factor
//!     (7053,1009) turns counts into Bq/ml and the `BQML` rule follows;
//!   * `GML`: values are already SUVbw, factor 1.
//! * Scan time (the reference time of decay correction): SeriesDate/Time if
//!   it is not later than the **earliest** AcquisitionDate/Time over all
//!   slices; otherwise the GE private scan date-time (0009,100D) if present;
//!   otherwise the earliest acquisition. Never the first file's time, never
//!   the series time blindly (a re-reconstructed series carries a later series
//!   time: +33 % too high; the first file of a multi-bed series is often not
//!   the earliest bed: +14.5 %).
//! * Injection time: RadiopharmaceuticalStartDateTime (0018,1078) if present,
//!   else RadiopharmaceuticalStartTime (0018,1072) on the series date, moved
//!   to the previous day when it would fall after the scan (midnight crossing).
//! * DecayCorrection (0054,1102): `START` decays the dose to the scan time,
//!   `ADMIN` uses the total dose as is, `NONE` is refused (per-frame decay is
//!   not supported).
//! * The Enhanced PET IOD stores the dose in MBq (converted to Bq).
//! * A missing or zero weight, dose or half-life is an error naming the tag,
//!   unless [`SuvOverrides`] supplies the value; overrides are recorded.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::datetime::{iso, parse_da, parse_dt, parse_tm};

/// SOP Class UID of the Enhanced PET Image Storage IOD (dose in MBq).
pub const ENHANCED_PET_SOP_CLASS_UID: &str = "1.2.840.10008.5.1.4.1.1.130";

/// The acquisition time stamp of one slice (file), as found in the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionStamp {
    /// The file the stamp comes from (for messages).
    pub file: String,
    /// AcquisitionDate (0008,0022), raw DA string.
    pub date: Option<String>,
    /// AcquisitionTime (0008,0032), raw TM string.
    pub time: Option<String>,
    /// AcquisitionDateTime (0008,002A), raw DT string (used when date or time is absent).
    pub datetime: Option<String>,
}

/// Every tag value of a PET series that the SUV rules read (raw strings for
/// dates and times, so that the report shows exactly what the files said).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PetSuvTags {
    /// SeriesInstanceUID (0020,000E), for messages.
    pub series_instance_uid: String,
    /// SOPClassUID (0008,0016): the Enhanced PET IOD gives the dose in MBq.
    pub sop_class_uid: Option<String>,
    /// Units (0054,1001): BQML, CNTS or GML.
    pub units: Option<String>,
    /// DecayCorrection (0054,1102): START, ADMIN or NONE.
    pub decay_correction: Option<String>,
    /// CorrectedImage (0028,0051) values.
    pub corrected_image: Vec<String>,
    /// PatientWeight (0010,1030) in kg.
    pub patient_weight_kg: Option<f64>,
    /// SeriesDate (0008,0021), raw DA.
    pub series_date: Option<String>,
    /// SeriesTime (0008,0031), raw TM.
    pub series_time: Option<String>,
    /// The acquisition stamp of every slice, in any order.
    pub acquisitions: Vec<AcquisitionStamp>,
    /// GE private scan date-time (0009,100D), raw DT.
    pub ge_private_scan_datetime: Option<String>,
    /// RadiopharmaceuticalStartDateTime (0018,1078), raw DT.
    pub radiopharmaceutical_start_datetime: Option<String>,
    /// RadiopharmaceuticalStartTime (0018,1072), raw TM.
    pub radiopharmaceutical_start_time: Option<String>,
    /// RadionuclideTotalDose (0018,1074): Bq (MBq in the Enhanced PET IOD).
    pub radionuclide_total_dose: Option<f64>,
    /// RadionuclideHalfLife (0018,1075) in seconds.
    pub radionuclide_half_life_s: Option<f64>,
    /// Philips private SUV scale factor (7053,1000).
    pub philips_suv_scale_factor: Option<f64>,
    /// Philips private activity concentration scale factor (7053,1009).
    pub philips_activity_scale_factor: Option<f64>,
}

/// Values the user states explicitly, replacing (or standing in for) tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SuvOverrides {
    /// Patient weight in kg (replaces PatientWeight).
    pub weight_kg: Option<f64>,
    /// Injected dose in Bq (replaces RadionuclideTotalDose).
    pub dose_bq: Option<f64>,
    /// Radionuclide half-life in seconds (replaces RadionuclideHalfLife).
    pub half_life_s: Option<f64>,
    /// Injection start: a DICOM DT (`YYYYMMDDHHMMSS[.F]`), an ISO date-time
    /// (`2026-11-28T09:15:00`), or a time of day (`HHMMSS` / `HH:MM:SS`),
    /// which is placed on the series date like RadiopharmaceuticalStartTime.
    pub injection_time: Option<String>,
}

/// How the SUV factor was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuvMethod {
    /// Units BQML: weight × 1000 / decayed dose.
    BqmlBodyWeight,
    /// Units CNTS: Philips private SUV scale factor (7053,1000).
    PhilipsSuvScaleFactor,
    /// Units CNTS: Philips activity concentration scale factor (7053,1009),
    /// then the BQML rule.
    PhilipsActivityScaleFactor,
    /// Units GML: the pixels are already SUVbw.
    GmlAlreadySuv,
}

/// Which rule chose the scan (decay reference) time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanTimeRule {
    /// SeriesDate/Time, which is not later than the earliest acquisition.
    SeriesNotAfterEarliestAcquisition,
    /// SeriesDate/Time; no slice carries an acquisition time to check it against.
    SeriesWithoutAcquisitionTimes,
    /// GE private (0009,100D): the series time is later than (or absent
    /// beside) the earliest acquisition.
    GePrivateScanDateTime,
    /// The earliest acquisition date/time over all slices.
    EarliestAcquisition,
}

/// Which rule chose the injection time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionTimeRule {
    /// RadiopharmaceuticalStartDateTime (0018,1078).
    StartDateTime,
    /// RadiopharmaceuticalStartTime (0018,1072) on the series date.
    StartTimeOnSeriesDate,
    /// RadiopharmaceuticalStartTime on the day before the series date
    /// (the injection was before midnight, the scan after).
    StartTimePreviousDay,
    /// The user's `injection_time` override (a full date-time).
    OverrideDateTime,
    /// The user's `injection_time` override (a time of day on the series
    /// date, or the day before when it would fall after the scan).
    OverrideTimeOfDay,
}

impl std::fmt::Display for SuvMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SuvMethod::BqmlBodyWeight => "Units BQML: weight / decayed dose",
            SuvMethod::PhilipsSuvScaleFactor => "Units CNTS: Philips SUV scale factor (7053,1000)",
            SuvMethod::PhilipsActivityScaleFactor => {
                "Units CNTS: Philips activity scale factor (7053,1009), then weight / decayed dose"
            }
            SuvMethod::GmlAlreadySuv => "Units GML: already SUVbw",
        })
    }
}

impl std::fmt::Display for ScanTimeRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScanTimeRule::SeriesNotAfterEarliestAcquisition => {
                "SeriesDate/Time, not after the earliest acquisition"
            }
            ScanTimeRule::SeriesWithoutAcquisitionTimes => {
                "SeriesDate/Time, no acquisition time to check it against"
            }
            ScanTimeRule::GePrivateScanDateTime => "GE private scan date-time (0009,100D)",
            ScanTimeRule::EarliestAcquisition => "the earliest AcquisitionDate/Time",
        })
    }
}

impl std::fmt::Display for InjectionTimeRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InjectionTimeRule::StartDateTime => "RadiopharmaceuticalStartDateTime (0018,1078)",
            InjectionTimeRule::StartTimeOnSeriesDate => {
                "RadiopharmaceuticalStartTime (0018,1072) on the series date"
            }
            InjectionTimeRule::StartTimePreviousDay => {
                "RadiopharmaceuticalStartTime (0018,1072) on the day before the series date"
            }
            InjectionTimeRule::OverrideDateTime => "the injection-time override",
            InjectionTimeRule::OverrideTimeOfDay => "the injection-time override (a time of day)",
        })
    }
}

/// One value the user supplied explicitly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideRecord {
    /// The quantity (`weight_kg`, `dose_bq`, `half_life_s`, `injection_time`).
    pub field: String,
    /// The tag it stands in for.
    pub tag: String,
    /// The value used.
    pub value: String,
    /// What the tag said (None when absent); the override wins either way.
    pub tag_value: Option<String>,
}

/// How the SUV factor of a series was obtained: everything needed to audit it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuvReport {
    /// SeriesInstanceUID of the PET series.
    pub series_instance_uid: String,
    /// Multiplier from rescaled pixel values (stored × slope + intercept) to SUVbw (g/ml).
    pub suv_factor: f64,
    /// Units (0054,1001) of the pixel values.
    pub units: String,
    /// The rule that produced `suv_factor`.
    pub method: SuvMethod,
    /// DecayCorrection (0054,1102), when the method uses it.
    pub decay_correction: Option<String>,
    /// Scan time minus injection time, seconds (None when not needed and not derivable).
    pub decay_time_s: Option<f64>,
    /// The scan (decay reference) time used, ISO 8601.
    pub scan_datetime: Option<String>,
    /// The rule that chose `scan_datetime`.
    pub scan_time_rule: Option<ScanTimeRule>,
    /// The injection time used, ISO 8601.
    pub injection_datetime: Option<String>,
    /// The rule that chose `injection_datetime`.
    pub injection_time_rule: Option<InjectionTimeRule>,
    /// Patient weight used, kg.
    pub patient_weight_kg: Option<f64>,
    /// Injected dose used, Bq.
    pub injected_dose_bq: Option<f64>,
    /// Dose decayed to the scan time (or the total dose for ADMIN), Bq.
    pub decayed_dose_bq: Option<f64>,
    /// Half-life used, seconds.
    pub half_life_s: Option<f64>,
    /// Philips counts → Bq/ml factor (7053,1009), when used.
    pub activity_scale_factor: Option<f64>,
    /// Every tag value read by the rules: `"(gggg,eeee) Keyword"` → value.
    pub tags: BTreeMap<String, String>,
    /// Values the user supplied, and what they replaced.
    pub overrides: Vec<OverrideRecord>,
    /// Remarks worth a human look (e.g. a series time later than the acquisition).
    pub notes: Vec<String>,
}

/// Why no SUV factor can be computed. Every message names the tag.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SuvError {
    /// A tag needed by the rules is absent, empty or zero.
    #[error("{tag} is missing or zero{hint}")]
    MissingTag {
        /// The tag, e.g. `"(0010,1030) PatientWeight"`.
        tag: String,
        /// How to proceed, e.g. `"; pass --weight-kg"` (may be empty).
        hint: String,
    },
    /// A tag holds a value the rules cannot use.
    #[error("{tag} = {value:?}: {expected}")]
    InvalidTag {
        /// The tag.
        tag: String,
        /// Its value.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// An override value is not usable.
    #[error("override {field} = {value:?}: {expected}")]
    InvalidOverride {
        /// The override.
        field: String,
        /// Its value.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// The injection is after the scan.
    #[error(
        "negative decay time {seconds:.1} s: injection {injection} (by {injection_rule}) is after the scan {scan} (by {scan_rule})"
    )]
    NegativeDecayTime {
        /// Scan minus injection, seconds.
        seconds: f64,
        /// Injection time used.
        injection: String,
        /// Its rule.
        injection_rule: InjectionTimeRule,
        /// Scan time used.
        scan: String,
        /// Its rule.
        scan_rule: ScanTimeRule,
    },
}

const T_UNITS: &str = "(0054,1001) Units";
const T_DECAY: &str = "(0054,1102) DecayCorrection";
const T_CORRECTED: &str = "(0028,0051) CorrectedImage";
const T_WEIGHT: &str = "(0010,1030) PatientWeight";
const T_DOSE: &str = "(0018,1074) RadionuclideTotalDose";
const T_HALF_LIFE: &str = "(0018,1075) RadionuclideHalfLife";
const T_SERIES_DATE: &str = "(0008,0021) SeriesDate";
const T_SERIES_TIME: &str = "(0008,0031) SeriesTime";
const T_ACQ_DATE: &str = "(0008,0022) AcquisitionDate";
const T_ACQ_TIME: &str = "(0008,0032) AcquisitionTime";
const T_ACQ_DATETIME: &str = "(0008,002A) AcquisitionDateTime";
const T_GE_SCAN: &str = "(0009,100D) GE private scan date-time";
const T_START_DT: &str = "(0018,1078) RadiopharmaceuticalStartDateTime";
const T_START_TM: &str = "(0018,1072) RadiopharmaceuticalStartTime";
const T_PHILIPS_SUV: &str = "(7053,1000) Philips SUV scale factor";
const T_PHILIPS_ACT: &str = "(7053,1009) Philips activity concentration scale factor";
const T_SOP_CLASS: &str = "(0008,0016) SOPClassUID";

/// Computes the SUVbw factor of a PET series (see the module docs for the rules).
pub fn compute_suv(tags: &PetSuvTags, overrides: &SuvOverrides) -> Result<SuvReport, SuvError> {
    let mut r = SuvReport {
        series_instance_uid: tags.series_instance_uid.clone(),
        suv_factor: f64::NAN,
        units: String::new(),
        method: SuvMethod::BqmlBodyWeight,
        decay_correction: None,
        decay_time_s: None,
        scan_datetime: None,
        scan_time_rule: None,
        injection_datetime: None,
        injection_time_rule: None,
        patient_weight_kg: None,
        injected_dose_bq: None,
        decayed_dose_bq: None,
        half_life_s: None,
        activity_scale_factor: None,
        tags: BTreeMap::new(),
        overrides: Vec::new(),
        notes: Vec::new(),
    };

    let units = tags
        .units
        .as_deref()
        .map(|u| u.trim().to_ascii_uppercase())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing(T_UNITS, ""))?;
    r.tags.insert(T_UNITS.into(), units.clone());
    r.units = units.clone();

    check_corrected_image(tags, &mut r)?;

    match units.as_str() {
        "GML" => {
            r.method = SuvMethod::GmlAlreadySuv;
            r.suv_factor = 1.0;
            Ok(r)
        }
        "BQML" => {
            r.method = SuvMethod::BqmlBodyWeight;
            r.suv_factor = body_weight_factor(tags, overrides, &mut r)?;
            Ok(r)
        }
        "CNTS" => {
            if let Some(v) = tags.philips_suv_scale_factor {
                r.tags.insert(T_PHILIPS_SUV.into(), v.to_string());
                if v.is_finite() && v > 0.0 {
                    r.method = SuvMethod::PhilipsSuvScaleFactor;
                    r.suv_factor = v;
                    return Ok(r);
                }
                r.notes
                    .push(format!("{T_PHILIPS_SUV} = {v} is not positive: ignored"));
            }
            match tags.philips_activity_scale_factor {
                Some(a) if a.is_finite() && a > 0.0 => {
                    r.tags.insert(T_PHILIPS_ACT.into(), a.to_string());
                    r.method = SuvMethod::PhilipsActivityScaleFactor;
                    r.activity_scale_factor = Some(a);
                    r.suv_factor = a * body_weight_factor(tags, overrides, &mut r)?;
                    Ok(r)
                }
                _ => Err(missing(
                    &format!("{T_PHILIPS_SUV} (and {T_PHILIPS_ACT}), needed for Units CNTS,"),
                    "",
                )),
            }
        }
        other => Err(SuvError::InvalidTag {
            tag: T_UNITS.into(),
            value: other.into(),
            expected: "expected BQML, CNTS (Philips) or GML".into(),
        }),
    }
}

fn missing(tag: &str, hint: &str) -> SuvError {
    SuvError::MissingTag {
        tag: tag.into(),
        hint: hint.into(),
    }
}

fn check_corrected_image(tags: &PetSuvTags, r: &mut SuvReport) -> Result<(), SuvError> {
    let values: Vec<String> = tags
        .corrected_image
        .iter()
        .map(|v| v.trim().to_ascii_uppercase())
        .collect();
    r.tags.insert(T_CORRECTED.into(), values.join("\\"));
    for needed in ["ATTN", "DECY"] {
        if !values.iter().any(|v| v == needed) {
            return Err(SuvError::InvalidTag {
                tag: T_CORRECTED.into(),
                value: values.join("\\"),
                expected: format!("must contain {needed} (attenuation and decay corrected images)"),
            });
        }
    }
    Ok(())
}

/// weight × 1000 / decayed dose, recording every input in `r`.
fn body_weight_factor(
    tags: &PetSuvTags,
    ov: &SuvOverrides,
    r: &mut SuvReport,
) -> Result<f64, SuvError> {
    let decay = tags
        .decay_correction
        .as_deref()
        .map(|d| d.trim().to_ascii_uppercase())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| missing(T_DECAY, ""))?;
    r.tags.insert(T_DECAY.into(), decay.clone());
    r.decay_correction = Some(decay.clone());
    match decay.as_str() {
        "START" | "ADMIN" => {}
        "NONE" => {
            return Err(SuvError::InvalidTag {
                tag: T_DECAY.into(),
                value: decay,
                expected: "images without decay correction (per-frame decay) are not supported; \
                           expected START or ADMIN"
                    .into(),
            })
        }
        _ => {
            return Err(SuvError::InvalidTag {
                tag: T_DECAY.into(),
                value: decay,
                expected: "expected START or ADMIN".into(),
            })
        }
    }

    let weight = positive_input(
        "weight_kg",
        T_WEIGHT,
        tags.patient_weight_kg,
        ov.weight_kg,
        "--weight-kg",
        r,
    )?;
    let enhanced = tags.sop_class_uid.as_deref().map(str::trim) == Some(ENHANCED_PET_SOP_CLASS_UID);
    if let Some(uid) = &tags.sop_class_uid {
        r.tags.insert(T_SOP_CLASS.into(), uid.trim().to_string());
    }
    let dose_tag = tags
        .radionuclide_total_dose
        .map(|d| if enhanced { d * 1e6 } else { d });
    if enhanced {
        r.notes
            .push("Enhanced PET IOD: RadionuclideTotalDose read in MBq and converted to Bq".into());
    }
    let dose = positive_input("dose_bq", T_DOSE, dose_tag, ov.dose_bq, "--dose-bq", r)?;
    let half_life = positive_input(
        "half_life_s",
        T_HALF_LIFE,
        tags.radionuclide_half_life_s,
        ov.half_life_s,
        "--half-life-s",
        r,
    )?;
    r.patient_weight_kg = Some(weight);
    r.injected_dose_bq = Some(dose);
    r.half_life_s = Some(half_life);

    let series_date = opt_date(T_SERIES_DATE, tags.series_date.as_deref(), r)?;
    let timing = scan_time(tags, series_date, r).and_then(|(scan, scan_rule)| {
        let (inj, inj_rule) = injection_time(tags, ov, series_date, scan, r)?;
        Ok((scan, scan_rule, inj, inj_rule))
    });

    let decayed = if decay == "START" {
        let (scan, scan_rule, inj, inj_rule) = timing?;
        let dt_s = (scan - inj).num_microseconds().unwrap_or(i64::MAX) as f64 * 1e-6;
        record_timing(r, scan, scan_rule, inj, inj_rule, dt_s);
        if dt_s < 0.0 {
            return Err(SuvError::NegativeDecayTime {
                seconds: dt_s,
                injection: iso(&inj),
                injection_rule: inj_rule,
                scan: iso(&scan),
                scan_rule,
            });
        }
        if dt_s > 10.0 * half_life {
            r.notes.push(format!(
                "decay time {dt_s:.0} s is more than ten half-lives: check the dates"
            ));
        }
        dose * (-dt_s / half_life).exp2()
    } else {
        // ADMIN: the images are decay corrected to the administration time.
        match timing {
            Ok((scan, scan_rule, inj, inj_rule)) => {
                let dt_s = (scan - inj).num_microseconds().unwrap_or(i64::MAX) as f64 * 1e-6;
                record_timing(r, scan, scan_rule, inj, inj_rule, dt_s);
            }
            Err(e) => r.notes.push(format!(
                "DecayCorrection ADMIN: times not needed and not derivable ({e})"
            )),
        }
        dose
    };
    r.decayed_dose_bq = Some(decayed);
    Ok(weight * 1000.0 / decayed)
}

fn record_timing(
    r: &mut SuvReport,
    scan: NaiveDateTime,
    scan_rule: ScanTimeRule,
    inj: NaiveDateTime,
    inj_rule: InjectionTimeRule,
    dt_s: f64,
) {
    r.scan_datetime = Some(iso(&scan));
    r.scan_time_rule = Some(scan_rule);
    r.injection_datetime = Some(iso(&inj));
    r.injection_time_rule = Some(inj_rule);
    r.decay_time_s = Some(dt_s);
}

/// The override if given (validated, recorded), else the tag if positive, else an error.
fn positive_input(
    field: &str,
    tag: &str,
    tag_value: Option<f64>,
    override_value: Option<f64>,
    flag: &str,
    r: &mut SuvReport,
) -> Result<f64, SuvError> {
    if let Some(v) = tag_value {
        r.tags.insert(tag.into(), v.to_string());
    }
    if let Some(v) = override_value {
        if !(v.is_finite() && v > 0.0) {
            return Err(SuvError::InvalidOverride {
                field: field.into(),
                value: v.to_string(),
                expected: "expected a positive number".into(),
            });
        }
        r.overrides.push(OverrideRecord {
            field: field.into(),
            tag: tag.into(),
            value: v.to_string(),
            tag_value: tag_value.map(|t| t.to_string()),
        });
        return Ok(v);
    }
    match tag_value {
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(missing(tag, &format!("; pass {flag} to supply it"))),
    }
}

fn opt_date(
    tag: &str,
    raw: Option<&str>,
    r: &mut SuvReport,
) -> Result<Option<NaiveDate>, SuvError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => {
            r.tags.insert(tag.into(), s.into());
            parse_da(s).map(Some).ok_or_else(|| SuvError::InvalidTag {
                tag: tag.into(),
                value: s.into(),
                expected: "expected a DICOM date YYYYMMDD".into(),
            })
        }
    }
}

fn bad_time(tag: &str, value: &str, what: &str) -> SuvError {
    SuvError::InvalidTag {
        tag: tag.into(),
        value: value.into(),
        expected: format!("expected a DICOM {what}"),
    }
}

/// The earliest acquisition date-time over all slices, and the file it came from.
fn earliest_acquisition(tags: &PetSuvTags) -> Result<Option<(NaiveDateTime, String)>, SuvError> {
    let mut best: Option<(NaiveDateTime, String)> = None;
    for a in &tags.acquisitions {
        let date = a.date.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let time = a.time.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let dt = a
            .datetime
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let stamp = match (date, time, dt) {
            (Some(d), Some(t), _) => {
                let d = parse_da(d).ok_or_else(|| {
                    bad_time(&format!("{T_ACQ_DATE} of {}", a.file), d, "date YYYYMMDD")
                })?;
                let t = parse_tm(t).ok_or_else(|| {
                    bad_time(&format!("{T_ACQ_TIME} of {}", a.file), t, "time HHMMSS.F")
                })?;
                NaiveDateTime::new(d, t)
            }
            (_, _, Some(s)) => parse_dt(s).ok_or_else(|| {
                bad_time(
                    &format!("{T_ACQ_DATETIME} of {}", a.file),
                    s,
                    "date-time YYYYMMDDHHMMSS.F",
                )
            })?,
            _ => continue,
        };
        if best.as_ref().is_none_or(|(b, _)| stamp < *b) {
            best = Some((stamp, a.file.clone()));
        }
    }
    Ok(best)
}

/// The scan (decay reference) time by rule 4.
fn scan_time(
    tags: &PetSuvTags,
    series_date: Option<NaiveDate>,
    r: &mut SuvReport,
) -> Result<(NaiveDateTime, ScanTimeRule), SuvError> {
    let series_time = match tags
        .series_time
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => {
            r.tags.insert(T_SERIES_TIME.into(), s.into());
            Some(parse_tm(s).ok_or_else(|| bad_time(T_SERIES_TIME, s, "time HHMMSS.F"))?)
        }
    };
    let series = match (series_date, series_time) {
        (Some(d), Some(t)) => Some(NaiveDateTime::new(d, t)),
        _ => None,
    };
    let earliest = earliest_acquisition(tags)?;
    if let Some((e, file)) = &earliest {
        r.tags.insert(
            format!(
                "{T_ACQ_DATE}/{T_ACQ_TIME} (earliest over {} slices)",
                tags.acquisitions.len()
            ),
            format!("{} ({file})", iso(e)),
        );
    }
    let ge = match tags
        .ge_private_scan_datetime
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => {
            r.tags.insert(T_GE_SCAN.into(), s.into());
            Some(parse_dt(s).ok_or_else(|| bad_time(T_GE_SCAN, s, "date-time YYYYMMDDHHMMSS.F"))?)
        }
    };
    match (series, earliest) {
        (Some(s), Some((e, _))) if s <= e => {
            Ok((s, ScanTimeRule::SeriesNotAfterEarliestAcquisition))
        }
        (Some(s), None) => {
            r.notes.push(
                "no slice carries an acquisition time: the series time cannot be checked".into(),
            );
            Ok((s, ScanTimeRule::SeriesWithoutAcquisitionTimes))
        }
        (series, earliest) => {
            if let (Some(s), Some((e, _))) = (series, &earliest) {
                r.notes.push(format!(
                    "series time {} is after the earliest acquisition {} (re-reconstructed series?): not used",
                    iso(&s),
                    iso(e)
                ));
            }
            if let Some(g) = ge {
                Ok((g, ScanTimeRule::GePrivateScanDateTime))
            } else if let Some((e, _)) = earliest {
                Ok((e, ScanTimeRule::EarliestAcquisition))
            } else {
                Err(missing(
                    &format!(
                        "the scan time ({T_SERIES_DATE}/{T_SERIES_TIME}, {T_ACQ_DATE}/{T_ACQ_TIME} or {T_ACQ_DATETIME})"
                    ),
                    "",
                ))
            }
        }
    }
}

/// The injection time by rule 5 (or the user's override).
fn injection_time(
    tags: &PetSuvTags,
    ov: &SuvOverrides,
    series_date: Option<NaiveDate>,
    scan: NaiveDateTime,
    r: &mut SuvReport,
) -> Result<(NaiveDateTime, InjectionTimeRule), SuvError> {
    let start_dt = tags
        .radiopharmaceutical_start_datetime
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let start_tm = tags
        .radiopharmaceutical_start_time
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if let Some(s) = start_dt {
        r.tags.insert(T_START_DT.into(), s.into());
    }
    if let Some(s) = start_tm {
        r.tags.insert(T_START_TM.into(), s.into());
    }
    // A time of day goes on the series date (else the scan's date); after the
    // scan means the injection was the day before (midnight crossing).
    let on_day = |t: chrono::NaiveTime| {
        let day = series_date.unwrap_or(scan.date());
        let same_day = NaiveDateTime::new(day, t);
        if same_day > scan {
            (same_day - Duration::days(1), true)
        } else {
            (same_day, false)
        }
    };

    if let Some(raw) = ov.injection_time.as_deref() {
        let cleaned: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | ':' | 'T' | ' '))
            .collect();
        let record = |r: &mut SuvReport| {
            r.overrides.push(OverrideRecord {
                field: "injection_time".into(),
                tag: format!("{T_START_DT} / {T_START_TM}"),
                value: raw.to_string(),
                tag_value: start_dt.or(start_tm).map(str::to_string),
            })
        };
        if cleaned.len() >= 10 {
            if let Some(dt) = parse_dt(&cleaned) {
                record(r);
                return Ok((dt, InjectionTimeRule::OverrideDateTime));
            }
        } else if let Some(t) = parse_tm(&cleaned) {
            record(r);
            return Ok((on_day(t).0, InjectionTimeRule::OverrideTimeOfDay));
        }
        return Err(SuvError::InvalidOverride {
            field: "injection_time".into(),
            value: raw.into(),
            expected: "expected YYYYMMDDHHMMSS, YYYY-MM-DDTHH:MM:SS or HH:MM:SS".into(),
        });
    }

    if let Some(s) = start_dt {
        let dt =
            parse_dt(s).ok_or_else(|| bad_time(T_START_DT, s, "date-time YYYYMMDDHHMMSS.F"))?;
        return Ok((dt, InjectionTimeRule::StartDateTime));
    }
    if let Some(s) = start_tm {
        let t = parse_tm(s).ok_or_else(|| bad_time(T_START_TM, s, "time HHMMSS.F"))?;
        if series_date.is_none() {
            r.notes.push(
                "SeriesDate absent: RadiopharmaceuticalStartTime placed on the scan date".into(),
            );
        }
        let (dt, previous_day) = on_day(t);
        return Ok(if previous_day {
            (dt, InjectionTimeRule::StartTimePreviousDay)
        } else {
            (dt, InjectionTimeRule::StartTimeOnSeriesDate)
        });
    }
    Err(missing(
        &format!("the injection time ({T_START_DT} and {T_START_TM})"),
        "; pass --injection-time to supply it",
    ))
}

#[cfg(test)]
mod tests;
