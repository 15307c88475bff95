//! `petseg demo --quick` runs the whole pipeline end to end and writes its
//! report (the full demo, with its DSC target, is run by hand: see README).

use std::process::Command;

#[test]
fn quick_demo_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_petseg"))
        .args(["demo", "--quick", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(report.contains("Mean DSC"), "{report}");
    assert!(out_dir.join("run/model_last.safetensors").exists());
    let preds = std::fs::read_dir(out_dir.join("predictions"))
        .unwrap()
        .count();
    assert!(preds >= 1);
}
