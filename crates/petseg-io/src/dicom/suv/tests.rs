//! Every branch of the SUV rules on synthetic metadata.
//!
//! The reference case (F-18, 370 MBq, 72.5 kg, injection 09:15:00, scan
//! 10:20:30, Δt = 3930 s) was computed by hand and with pydicom:
//! 2.963204e-4 g/Bq (the worked example of `docs/method/suv.md` §3).

use super::*;

const HALF_LIFE_S: f64 = 6586.2;
const DOSE_BQ: f64 = 3.7e8;
const WEIGHT_KG: f64 = 72.5;
const REFERENCE_FACTOR: f64 = 2.963204e-4;

fn stamp(file: &str, date: &str, time: &str) -> AcquisitionStamp {
    AcquisitionStamp {
        file: file.into(),
        date: Some(date.into()),
        time: Some(time.into()),
        datetime: None,
    }
}

/// Five slices all acquired at 10:20:30, series time 10:20:30, injection 09:15:00.
fn reference() -> PetSuvTags {
    PetSuvTags {
        series_instance_uid: "1.2.3".into(),
        sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.128".into()),
        units: Some("BQML".into()),
        decay_correction: Some("START".into()),
        corrected_image: vec!["DECY".into(), "ATTN".into(), "SCAT".into()],
        patient_weight_kg: Some(WEIGHT_KG),
        series_date: Some("20261128".into()),
        series_time: Some("102030".into()),
        acquisitions: (0..5)
            .map(|i| stamp(&format!("f{i}.dcm"), "20261128", "102030"))
            .collect(),
        ge_private_scan_datetime: None,
        radiopharmaceutical_start_datetime: Some("20261128091500.00".into()),
        radiopharmaceutical_start_time: Some("091500.00".into()),
        radionuclide_total_dose: Some(DOSE_BQ),
        radionuclide_half_life_s: Some(HALF_LIFE_S),
        philips_suv_scale_factor: None,
        philips_activity_scale_factor: None,
    }
}

fn factor_for_decay_time(dt_s: f64) -> f64 {
    WEIGHT_KG * 1000.0 / (DOSE_BQ * (-dt_s / HALF_LIFE_S).exp2())
}

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

fn run(tags: &PetSuvTags) -> SuvReport {
    compute_suv(tags, &SuvOverrides::default()).expect("SUV factor")
}

#[test]
fn bqml_reference_case_matches_hand_computation() {
    let r = run(&reference());
    assert!(
        rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6,
        "{}",
        r.suv_factor
    );
    assert_eq!(r.method, SuvMethod::BqmlBodyWeight);
    assert_eq!(
        r.scan_time_rule,
        Some(ScanTimeRule::SeriesNotAfterEarliestAcquisition)
    );
    assert_eq!(
        r.injection_time_rule,
        Some(InjectionTimeRule::StartDateTime)
    );
    assert!((r.decay_time_s.unwrap() - 3930.0).abs() < 1e-9);
    assert_eq!(
        r.scan_datetime.as_deref(),
        Some("2026-11-28T10:20:30.000000")
    );
    assert_eq!(
        r.injection_datetime.as_deref(),
        Some("2026-11-28T09:15:00.000000")
    );
    assert!(rel(r.decayed_dose_bq.unwrap(), 2.4467e8) < 1e-4);
    assert_eq!(r.tags["(0054,1001) Units"], "BQML");
    assert_eq!(r.tags["(0010,1030) PatientWeight"], "72.5");
    assert!(r.overrides.is_empty());
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["suv_factor"].as_f64().unwrap() > 0.0);
    assert_eq!(
        json["scan_time_rule"],
        "series_not_after_earliest_acquisition"
    );
}

#[test]
fn re_reconstructed_series_time_is_not_used() {
    // A series re-reconstructed 2710 s after the scan: SeriesTime 11:05:40.
    let mut t = reference();
    t.series_time = Some("110540".into());
    let r = run(&t);
    assert_eq!(r.scan_time_rule, Some(ScanTimeRule::EarliestAcquisition));
    assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6);
    // The SeriesTime shortcut would be 33 % too high.
    let shortcut = factor_for_decay_time(3930.0 + 2710.0);
    assert!(
        (shortcut / r.suv_factor - 1.33).abs() < 0.005,
        "{}",
        shortcut / r.suv_factor
    );
    assert!(r.notes.iter().any(|n| n.contains("re-reconstructed")));
}

#[test]
fn ge_private_scan_time_wins_over_earliest_acquisition_when_series_is_later() {
    let mut t = reference();
    t.series_time = Some("110540".into());
    // GE records the true start of the scan; make it differ from the acquisitions.
    t.ge_private_scan_datetime = Some("20261128101500.000".into());
    let r = run(&t);
    assert_eq!(r.scan_time_rule, Some(ScanTimeRule::GePrivateScanDateTime));
    assert!((r.decay_time_s.unwrap() - 3600.0).abs() < 1e-9);
    assert!(rel(r.suv_factor, factor_for_decay_time(3600.0)) < 1e-12);
    // Ignored when the series time passes the check.
    let mut t2 = reference();
    t2.ge_private_scan_datetime = Some("20261128101500".into());
    assert_eq!(
        run(&t2).scan_time_rule,
        Some(ScanTimeRule::SeriesNotAfterEarliestAcquisition)
    );
}

#[test]
fn first_file_is_not_the_earliest_bed() {
    // Three beds; the first file is the last bed, acquired 1286 s after the first.
    let mut t = reference();
    t.series_time = None;
    t.acquisitions = vec![
        stamp("a.dcm", "20261128", "104156"), // 10:20:30 + 1286 s
        stamp("b.dcm", "20261128", "103113"), // + 643 s
        stamp("c.dcm", "20261128", "102030"), // the earliest bed
    ];
    let r = run(&t);
    assert_eq!(r.scan_time_rule, Some(ScanTimeRule::EarliestAcquisition));
    assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6);
    assert!(r.tags.values().any(|v| v.contains("c.dcm")));
    // The first-file shortcut would be 14.5 % too high.
    let shortcut = factor_for_decay_time(3930.0 + 1286.0);
    assert!(
        (shortcut / r.suv_factor - 1.145).abs() < 0.002,
        "{}",
        shortcut / r.suv_factor
    );
    // With a series time equal to the earliest bed, the series rule applies.
    t.series_time = Some("102030".into());
    let r = run(&t);
    assert_eq!(
        r.scan_time_rule,
        Some(ScanTimeRule::SeriesNotAfterEarliestAcquisition)
    );
    assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6);
}

#[test]
fn acquisition_datetime_is_used_when_date_and_time_are_absent() {
    let mut t = reference();
    t.series_time = None;
    t.acquisitions = vec![
        AcquisitionStamp {
            file: "x.dcm".into(),
            date: None,
            time: None,
            datetime: Some("20261128102030.000000".into()),
        },
        AcquisitionStamp {
            file: "y.dcm".into(),
            date: None,
            time: None,
            datetime: Some("20261128103030".into()),
        },
    ];
    let r = run(&t);
    assert_eq!(r.scan_time_rule, Some(ScanTimeRule::EarliestAcquisition));
    assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6);
}

#[test]
fn series_time_without_acquisition_times_is_used_with_a_note() {
    let mut t = reference();
    t.acquisitions.clear();
    let r = run(&t);
    assert_eq!(
        r.scan_time_rule,
        Some(ScanTimeRule::SeriesWithoutAcquisitionTimes)
    );
    assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6);
    assert!(!r.notes.is_empty());
    t.series_time = None;
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(e.to_string().contains("scan time"), "{e}");
}

#[test]
fn start_time_is_placed_on_the_series_date() {
    let mut t = reference();
    t.radiopharmaceutical_start_datetime = None;
    let r = run(&t);
    assert_eq!(
        r.injection_time_rule,
        Some(InjectionTimeRule::StartTimeOnSeriesDate)
    );
    assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6);
}

#[test]
fn start_datetime_is_preferred_over_start_time() {
    let mut t = reference();
    t.radiopharmaceutical_start_time = Some("080000".into());
    let r = run(&t);
    assert_eq!(
        r.injection_time_rule,
        Some(InjectionTimeRule::StartDateTime)
    );
    assert!((r.decay_time_s.unwrap() - 3930.0).abs() < 1e-9);
}

#[test]
fn midnight_crossing_moves_injection_to_the_previous_day() {
    let mut t = reference();
    t.radiopharmaceutical_start_datetime = None;
    t.radiopharmaceutical_start_time = Some("233000".into());
    t.series_date = Some("20261129".into());
    t.series_time = Some("001500".into());
    t.acquisitions = vec![stamp("a.dcm", "20261129", "001500")];
    let r = run(&t);
    assert_eq!(
        r.injection_time_rule,
        Some(InjectionTimeRule::StartTimePreviousDay)
    );
    assert_eq!(
        r.injection_datetime.as_deref(),
        Some("2026-11-28T23:30:00.000000")
    );
    assert!((r.decay_time_s.unwrap() - 2700.0).abs() < 1e-9);
    assert!(rel(r.suv_factor, factor_for_decay_time(2700.0)) < 1e-12);
}

#[test]
fn negative_decay_time_is_refused() {
    let mut t = reference();
    t.radiopharmaceutical_start_datetime = Some("20261128110000".into());
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    match &e {
        SuvError::NegativeDecayTime { seconds, .. } => assert!((*seconds + 2370.0).abs() < 1e-9),
        other => panic!("unexpected {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("negative decay time")
            && msg.contains("(by RadiopharmaceuticalStartDateTime (0018,1078))")
            && msg.contains("(by SeriesDate/Time, not after the earliest acquisition)"),
        "{msg}"
    );
}

#[test]
fn admin_decay_correction_uses_the_total_dose() {
    let mut t = reference();
    t.decay_correction = Some("ADMIN".into());
    let r = run(&t);
    assert!(rel(r.suv_factor, WEIGHT_KG * 1000.0 / DOSE_BQ) < 1e-12);
    assert_eq!(r.decayed_dose_bq, Some(DOSE_BQ));
    assert_eq!(r.decay_correction.as_deref(), Some("ADMIN"));
    // Times are not needed for ADMIN.
    t.radiopharmaceutical_start_datetime = None;
    t.radiopharmaceutical_start_time = None;
    let r = run(&t);
    assert!(rel(r.suv_factor, WEIGHT_KG * 1000.0 / DOSE_BQ) < 1e-12);
    assert!(r.decay_time_s.is_none());
}

#[test]
fn decay_correction_none_and_missing_are_refused() {
    let mut t = reference();
    t.decay_correction = Some("NONE".into());
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(e.to_string().contains("(0054,1102) DecayCorrection"), "{e}");
    assert!(e.to_string().contains("not supported"), "{e}");
    t.decay_correction = None;
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(matches!(e, SuvError::MissingTag { ref tag, .. } if tag.contains("DecayCorrection")));
}

#[test]
fn corrected_image_must_contain_attn_and_decy() {
    let mut t = reference();
    t.corrected_image = vec!["ATTN".into(), "SCAT".into()];
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(
        e.to_string().contains("(0028,0051) CorrectedImage") && e.to_string().contains("DECY"),
        "{e}"
    );
    t.corrected_image = vec!["DECY".into()];
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(e.to_string().contains("ATTN"), "{e}");
}

#[test]
fn philips_counts_with_suv_scale_factor() {
    let mut t = reference();
    t.units = Some("CNTS".into());
    t.philips_suv_scale_factor = Some(0.000123);
    t.philips_activity_scale_factor = Some(5.0);
    // Even with the weight missing, the SUV scale factor suffices.
    t.patient_weight_kg = None;
    let r = run(&t);
    assert_eq!(r.method, SuvMethod::PhilipsSuvScaleFactor);
    assert_eq!(r.suv_factor, 0.000123);
    assert!(r.tags.contains_key("(7053,1000) Philips SUV scale factor"));
}

#[test]
fn philips_counts_with_activity_scale_factor() {
    let mut t = reference();
    t.units = Some("CNTS".into());
    t.philips_activity_scale_factor = Some(2.5);
    let r = run(&t);
    assert_eq!(r.method, SuvMethod::PhilipsActivityScaleFactor);
    assert_eq!(r.activity_scale_factor, Some(2.5));
    assert!(rel(r.suv_factor, 2.5 * REFERENCE_FACTOR) < 1e-6);
    // A zero SUV scale factor is ignored with a note, falling back to (7053,1009).
    t.philips_suv_scale_factor = Some(0.0);
    let r = run(&t);
    assert_eq!(r.method, SuvMethod::PhilipsActivityScaleFactor);
    assert!(!r.notes.is_empty());
}

#[test]
fn philips_counts_without_private_tags_is_refused() {
    let mut t = reference();
    t.units = Some("CNTS".into());
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("(7053,1000)") && msg.contains("(7053,1009)"),
        "{msg}"
    );
}

#[test]
fn gml_is_already_suv() {
    let mut t = reference();
    t.units = Some("GML".into());
    t.patient_weight_kg = None;
    t.radionuclide_total_dose = None;
    let r = run(&t);
    assert_eq!(r.method, SuvMethod::GmlAlreadySuv);
    assert_eq!(r.suv_factor, 1.0);
}

#[test]
fn unknown_or_missing_units_are_refused() {
    let mut t = reference();
    t.units = Some("PROPCNTS".into());
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(e.to_string().contains("(0054,1001) Units") && e.to_string().contains("PROPCNTS"));
    t.units = None;
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(matches!(e, SuvError::MissingTag { ref tag, .. } if tag.contains("Units")));
}

#[test]
fn enhanced_pet_dose_is_in_megabecquerel() {
    let mut t = reference();
    t.sop_class_uid = Some(ENHANCED_PET_SOP_CLASS_UID.into());
    t.radionuclide_total_dose = Some(370.0);
    let r = run(&t);
    assert!(rel(r.injected_dose_bq.unwrap(), DOSE_BQ) < 1e-12);
    assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6);
}

#[test]
fn missing_or_zero_weight_dose_half_life_name_the_tag() {
    type Case = (fn(&mut PetSuvTags), &'static str, &'static str);
    let cases: [Case; 4] = [
        (
            |t| t.patient_weight_kg = None,
            "(0010,1030) PatientWeight",
            "--weight-kg",
        ),
        (
            |t| t.patient_weight_kg = Some(0.0),
            "(0010,1030) PatientWeight",
            "--weight-kg",
        ),
        (
            |t| t.radionuclide_total_dose = Some(0.0),
            "(0018,1074) RadionuclideTotalDose",
            "--dose-bq",
        ),
        (
            |t| t.radionuclide_half_life_s = None,
            "(0018,1075) RadionuclideHalfLife",
            "--half-life-s",
        ),
    ];
    for (edit, tag, flag) in cases {
        let mut t = reference();
        edit(&mut t);
        let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(tag) && msg.contains(flag), "{msg}");
    }
}

#[test]
fn overrides_supply_missing_values_and_are_recorded() {
    let mut t = reference();
    t.patient_weight_kg = None;
    t.radionuclide_total_dose = Some(0.0);
    t.radionuclide_half_life_s = None;
    let ov = SuvOverrides {
        weight_kg: Some(WEIGHT_KG),
        dose_bq: Some(DOSE_BQ),
        half_life_s: Some(HALF_LIFE_S),
        injection_time: None,
    };
    let r = compute_suv(&t, &ov).unwrap();
    assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6);
    assert_eq!(r.overrides.len(), 3);
    let dose = r.overrides.iter().find(|o| o.field == "dose_bq").unwrap();
    assert_eq!(dose.tag_value.as_deref(), Some("0"));
    // An override also wins over a present tag.
    let r = compute_suv(
        &reference(),
        &SuvOverrides {
            weight_kg: Some(2.0 * WEIGHT_KG),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rel(r.suv_factor, 2.0 * REFERENCE_FACTOR) < 1e-6);
    assert_eq!(r.overrides[0].tag_value.as_deref(), Some("72.5"));
    // Invalid overrides are refused.
    let e = compute_suv(
        &reference(),
        &SuvOverrides {
            dose_bq: Some(-1.0),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, SuvError::InvalidOverride { .. }));
}

#[test]
fn injection_time_missing_or_overridden() {
    let mut t = reference();
    t.radiopharmaceutical_start_datetime = None;
    t.radiopharmaceutical_start_time = None;
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(
        e.to_string().contains("(0018,1078)") && e.to_string().contains("--injection-time"),
        "{e}"
    );
    for (value, rule) in [
        ("09:15:00", InjectionTimeRule::OverrideTimeOfDay),
        ("2026-11-28T09:15:00", InjectionTimeRule::OverrideDateTime),
        ("20261128091500", InjectionTimeRule::OverrideDateTime),
    ] {
        let ov = SuvOverrides {
            injection_time: Some(value.into()),
            ..Default::default()
        };
        let r = compute_suv(&t, &ov).unwrap();
        assert_eq!(r.injection_time_rule, Some(rule), "{value}");
        assert!(rel(r.suv_factor, REFERENCE_FACTOR) < 1e-6, "{value}");
        assert_eq!(r.overrides[0].field, "injection_time");
    }
    let ov = SuvOverrides {
        injection_time: Some("nine fifteen".into()),
        ..Default::default()
    };
    assert!(matches!(
        compute_suv(&t, &ov),
        Err(SuvError::InvalidOverride { .. })
    ));
}

#[test]
fn malformed_times_name_the_tag_and_file() {
    let mut t = reference();
    t.acquisitions[2].time = Some("25:99".into());
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(
        e.to_string().contains("f2.dcm") && e.to_string().contains("AcquisitionTime"),
        "{e}"
    );
    let mut t = reference();
    t.series_date = Some("2026-13-40".into());
    let e = compute_suv(&t, &SuvOverrides::default()).unwrap_err();
    assert!(e.to_string().contains("SeriesDate"), "{e}");
}
