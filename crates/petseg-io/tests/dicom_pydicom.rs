//! Cross-checks against pydicom (a live peer; skipped with a notice when
//! python3/pydicom are absent, a failure when `CI` is set):
//! * pydicom writes a PT series built to trip every SUV shortcut
//!   (`scripts/dicom_write_pt.py`); our SUV volume must match the values the
//!   script computes independently;
//! * pydicom decodes the series our writer produced (RLE and deflate included,
//!   `scripts/dicom_read_series.py`); its values must match ours.

mod dicom_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_common::*;
use petseg_io::dicom::{
    read_pet_suv, write_series, InjectionTimeRule, ScanTimeRule, SuvOverrides, TransferSyntaxChoice,
};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Whether python3 with pydicom and numpy is available (panics under CI if not).
fn pydicom_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pydicom, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("python3 with pydicom and numpy is required under CI");
        }
        eprintln!("SKIPPED: python3 with pydicom and numpy not available");
    }
    ok
}

fn run_python(script_name: &str, args: &[&Path]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(script(script_name))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script_name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = args.last().unwrap();
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn suv_of_a_pydicom_series_matches_an_independent_computation() {
    if !pydicom_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (dir, json) = (tmp.path().join("pt"), tmp.path().join("expected.json"));
    let expected = run_python("dicom_write_pt.py", &[&dir, &json]);

    let (suv, report) = read_pet_suv(&dir, &SuvOverrides::default()).unwrap();
    let factor = expected["suv_factor"].as_f64().unwrap();
    assert!(
        ((report.suv_factor - factor) / factor).abs() < 1e-12,
        "{} vs {factor}",
        report.suv_factor
    );
    assert_eq!(
        report.scan_time_rule,
        Some(ScanTimeRule::EarliestAcquisition)
    );
    assert_eq!(
        report.injection_time_rule,
        Some(InjectionTimeRule::StartTimePreviousDay)
    );
    assert!(
        (report.decay_time_s.unwrap() - expected["decay_time_s"].as_f64().unwrap()).abs() < 1e-6
    );

    let shape: Vec<usize> = expected["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(suv.shape().to_vec(), shape);
    let rows: Vec<Vec<f64>> = expected["affine"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    let ours = suv.affine().rows();
    for r in 0..4 {
        for c in 0..4 {
            assert!(
                (ours[r][c] - rows[r][c]).abs() < 1e-6,
                "affine[{r}][{c}] {} vs {}",
                ours[r][c],
                rows[r][c]
            );
        }
    }
    let want = floats(&expected["suv"]);
    for (idx, (a, b)) in suv.as_raster_slice().iter().zip(&want).enumerate() {
        assert!(
            ((*a as f64) - b).abs() <= 1e-6 * b.abs().max(1e-3),
            "voxel {idx}: {a} vs {b}"
        );
    }
}

#[test]
fn pydicom_decodes_our_series_to_the_same_values() {
    if !pydicom_available() {
        return;
    }
    for ts in [
        TransferSyntaxChoice::RleLossless,
        TransferSyntaxChoice::DeflatedExplicitVrLittleEndian,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pt");
        let suv = pet_suv([14, 10, 12], pet_affine(0.2));
        write_series(&dir, &suv, &pet_spec(ts)).unwrap();
        let json = tmp.path().join("decoded.json");
        let theirs = run_python("dicom_read_series.py", &[&dir, &json]);
        assert_eq!(theirs["transfer_syntaxes"][0].as_str().unwrap(), ts.uid());
        let (ours, report) = read_pet_suv(&dir, &SuvOverrides::default()).unwrap();
        let bqml = floats(&theirs["values"]);
        for (idx, (a, b)) in ours.as_raster_slice().iter().zip(&bqml).enumerate() {
            let b_suv = b * report.suv_factor;
            assert!(
                ((*a as f64) - b_suv).abs() <= 1e-6 * b_suv.abs().max(1e-3),
                "{ts:?} voxel {idx}: {a} vs {b_suv}"
            );
        }
    }
}

/// A one-slice series from a file pydicom ships (GE CT, or any modality).
fn pydicom_test_file(name: &str) -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!(
                "from pydicom.data import get_testdata_file; print(get_testdata_file('{name}'))"
            ),
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_file().then_some(p)
}

#[test]
fn real_scanner_ct_matches_pydicom() {
    if !pydicom_available() {
        return;
    }
    let Some(src) = pydicom_test_file("CT_small.dcm") else {
        panic!("pydicom's CT_small.dcm test file is missing");
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(&src, tmp.path().join("CT_small.dcm")).unwrap();
    let ct = petseg_io::dicom::read_ct_hu(tmp.path()).unwrap();
    assert_eq!(ct.shape(), [128, 128, 1]);
    let json = tmp.path().join("decoded.json");
    let theirs = run_python("dicom_read_series.py", &[tmp.path(), &json]);
    let hu = floats(&theirs["values"]);
    assert_eq!(hu.len(), ct.len());
    for (a, b) in ct.as_raster_slice().iter().zip(&hu) {
        assert_eq!(*a as f64, *b);
    }
}

/// JPEG 2000 through the `openjp2` feature, on a real CT (lossy J2K; pydicom
/// here has no J2K plugin, so this is a smoke test of decoding and the HU range).
#[test]
fn real_jpeg2000_ct_decodes() {
    if !pydicom_available() {
        return;
    }
    let Some(src) = pydicom_test_file("693_J2KI.dcm") else {
        eprintln!("SKIPPED: pydicom's 693_J2KI.dcm not available");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(&src, tmp.path().join("693_J2KI.dcm")).unwrap();
    let ct = petseg_io::dicom::read_ct_hu(tmp.path()).unwrap();
    assert_eq!(ct.shape(), [512, 512, 1]);
    let (lo, hi) = ct
        .as_raster_slice()
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    // Smoke check only (no reference decoder here): finite, air below −900 HU, bone above 500 HU.
    assert!(ct.as_raster_slice().iter().all(|v| v.is_finite()));
    assert!(lo < -900.0 && hi > 500.0, "HU range {lo}..{hi}");
}
