//! `petseg phantom` writes the nnU-Net layout and a manifest; bad input fails cleanly.

use std::process::Command;

fn petseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_petseg"))
}

#[test]
fn phantom_writes_the_layout_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cohort");
    let o = petseg()
        .args(["phantom", "--out"])
        .arg(&out)
        .args(["--cases", "2", "--seed", "9", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("[1/2] psma_0000") && stderr.contains("[2/2] psma_0001"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["cases"], 2);
    for f in [
        "imagesTr/psma_0000_0000.nii.gz",
        "imagesTr/psma_0000_0001.nii.gz",
        "labelsTr/psma_0000.nii.gz",
        "imagesTr/psma_0001_0000.nii.gz",
        "imagesTr/psma_0001_0001.nii.gz",
        "labelsTr/psma_0001.nii.gz",
        "manifest.json",
        "lesions.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let m = petseg_io::manifest::Manifest::load(&out.join("manifest.json")).unwrap();
    m.check_files_exist().unwrap();
    assert_eq!(m.cases.len(), 2);
    assert_eq!(
        summary["lesions"],
        m.cases.iter().map(|c| c.n_lesions.unwrap()).sum::<u32>()
    );

    // A second run into the same, now non-empty folder is refused without --force.
    let again = petseg()
        .args(["phantom", "--out"])
        .arg(&out)
        .args(["--cases", "1"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

#[test]
fn phantom_rejects_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--cases", "0"],
        vec!["--cases", "1", "--size", "huge"],
        vec!["--cases", "many"],
    ] {
        let o = petseg()
            .args(["phantom", "--out"])
            .arg(dir.path().join("x"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(
            !dir.path().join("x").exists(),
            "{args:?} left output behind"
        );
    }
    let help = petseg().args(["phantom", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("petseg phantom --out"));
}
