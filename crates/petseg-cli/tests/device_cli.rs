//! A `petseg` built without the `cuda` feature refuses `--device cuda` in
//! `train`, `predict` and `demo` with a clear error, a non-zero exit, and
//! nothing written.
#![cfg(not(feature = "cuda"))]

use std::process::Command;

#[test]
fn cuda_device_without_the_feature_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = t.join("run");
    let mask = t.join("mask.nii.gz");
    let demo = t.join("demo");
    let invocations: Vec<(Vec<String>, &std::path::Path)> = vec![
        (
            vec![
                "train".into(),
                "--model".into(),
                "segresnet".into(),
                "--manifest".into(),
                t.join("manifest.json").display().to_string(),
                "--run-dir".into(),
                run.display().to_string(),
                "--device".into(),
                "cuda".into(),
            ],
            &run,
        ),
        (
            vec![
                "predict".into(),
                "--model".into(),
                "segresnet".into(),
                "--weights".into(),
                t.join("w.safetensors").display().to_string(),
                "--ct".into(),
                t.join("ct.nii.gz").display().to_string(),
                "--pet".into(),
                t.join("pet.nii.gz").display().to_string(),
                "--out".into(),
                mask.display().to_string(),
                "--device".into(),
                "cuda:0".into(),
            ],
            &mask,
        ),
        (
            vec![
                "demo".into(),
                "--quick".into(),
                "--out".into(),
                demo.display().to_string(),
                "--device".into(),
                "cuda:1".into(),
            ],
            &demo,
        ),
    ];
    for (args, output) in invocations {
        let out = Command::new(env!("CARGO_BIN_EXE_petseg"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(
                "this petseg was built without the `cuda` feature; rebuild with --features cuda"
            ),
            "{args:?}: {err}"
        );
        assert!(!output.exists(), "{args:?} wrote {}", output.display());
    }
    assert_eq!(
        std::fs::read_dir(t).unwrap().count(),
        0,
        "files were written"
    );
}
