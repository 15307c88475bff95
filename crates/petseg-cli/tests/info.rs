//! `petseg info`: report contents, JSON form, and bad files.

use std::path::Path;
use std::process::{Command, Output};

use petseg_io::nifti::write_nifti;
use petseg_io::{Affine, Volume};

fn petseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_petseg"))
        .args(args)
        .output()
        .expect("petseg runs")
}

/// An LPS-flipped 6×5×4 float32 volume with two NaNs and known values.
fn write_test_volume(path: &Path) -> Vec<f32> {
    let affine = Affine::from_rows([
        [-2.0, 0.0, 0.0, 100.0],
        [0.0, -2.0, 0.0, 50.0],
        [0.0, 0.0, 3.0, -30.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    .unwrap();
    let mut values: Vec<f32> = (0..120).map(|v| v as f32 * 0.5 - 10.0).collect();
    values[7] = f32::NAN;
    values[50] = f32::NAN;
    let vol = Volume::from_raster([6, 5, 4], values.clone(), affine).unwrap();
    write_nifti(path, &vol).unwrap();
    values
}

#[test]
fn json_report_matches_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pet.nii.gz");
    let values = write_test_volume(&p);
    let out = petseg(&["info", "--json", p.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(r["shape"], serde_json::json!([6, 5, 4]));
    assert_eq!(r["dtype"], "float32");
    assert_eq!(r["orientation"], "LPS");
    assert_eq!(r["affine_source"], "sform");
    assert_eq!(r["spacing_mm"], serde_json::json!([2.0, 2.0, 3.0]));
    assert_eq!(r["affine"][0], serde_json::json!([-2.0, 0.0, 0.0, 100.0]));
    let finite: Vec<f64> = values
        .iter()
        .filter(|v| !v.is_nan())
        .map(|&v| v as f64)
        .collect();
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    assert_eq!(r["values"]["nan_count"], 2);
    assert_eq!(r["values"]["min"], -10.0);
    assert_eq!(r["values"]["max"], 49.5);
    assert!((r["values"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert_eq!(
        r["values"]["nonzero_count"],
        finite.iter().filter(|&&v| v != 0.0).count()
    );
}

#[test]
fn text_report_names_the_facts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pet.nii");
    write_test_volume(&p);
    let out = petseg(&["info", p.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "6 × 5 × 4",
        "float32",
        "2.0000 × 2.0000 × 3.0000 mm",
        "LPS",
        "2 NaN",
        "min -10.000000",
    ] {
        assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
    }
}

#[test]
fn bad_files_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.nii.gz");
    std::fs::write(&garbage, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let missing = dir.path().join("missing.nii");
    let short = dir.path().join("short.nii");
    std::fs::write(&short, b"not a nifti file").unwrap();
    for p in [&garbage, &missing, &short] {
        let out = petseg(&["info", p.to_str().unwrap()]);
        assert!(!out.status.success(), "{} should fail", p.display());
        assert!(out.stdout.is_empty(), "no report on failure");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:"), "{err}");
        assert!(
            err.contains(p.file_name().unwrap().to_str().unwrap()),
            "names the file: {err}"
        );
    }
}
