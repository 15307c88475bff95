//! `petseg evaluate` and `petseg components` end to end on small NIfTI files.

use std::path::Path;
use std::process::Command;

use petseg_io::nifti::{read_nifti, write_nifti, AnyVolume};
use petseg_io::{Affine, Volume};

fn petseg(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_petseg"))
        .args(args)
        .output()
        .unwrap()
}

fn aff() -> Affine {
    Affine::from_spacing_origin([2.0, 2.0, 3.0], [-10.0, 5.0, 0.0]).unwrap()
}

/// GT: two lesions; prediction: the first lesion plus a false positive.
fn case(shift: usize) -> (Volume<u8>, Volume<u8>, Volume<f32>) {
    let mut gt = Volume::filled([12, 10, 8], 0u8, aff()).unwrap();
    let mut pred = gt.clone();
    for i in 2..5 {
        gt.data_mut()[[i, 3, 3]] = 1;
        pred.data_mut()[[i, 3, 3]] = 1;
    }
    gt.data_mut()[[9, 8, 6 - shift]] = 1;
    pred.data_mut()[[0, 0, 7]] = 1;
    let pet = gt.map(|&v| 1.0 + 5.0 * v as f32);
    (pred, gt, pet)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn single_case_json_has_the_documented_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt, pet) = case(0);
    let (pp, gp, tp) = (
        dir.path().join("p.nii.gz"),
        dir.path().join("g.nii.gz"),
        dir.path().join("pet.nii.gz"),
    );
    write_nifti(&pp, &pred).unwrap();
    write_nifti(&gp, &gt).unwrap();
    write_nifti(&tp, &pet).unwrap();
    let out = petseg(&[
        "evaluate",
        "--pred",
        s(&pp),
        "--gt",
        s(&gp),
        "--pet",
        s(&tp),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "dice",
        "fpv_ml",
        "fnv_ml",
        "tp_c1",
        "fp_c1",
        "fn_c1",
        "f1_c1",
        "tp_c2",
        "fp_c2",
        "fn_c2",
        "f1_c2",
        "tp_c3",
        "fp_c3",
        "fn_c3",
        "f1_c3",
        "dmax_cm",
        "n_gt_lesions",
        "n_pred_lesions",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["n_gt_lesions"], 2);
    assert_eq!(v["n_pred_lesions"], 2);
    assert_eq!(
        (
            v["tp_c1"].as_u64(),
            v["fp_c1"].as_u64(),
            v["fn_c1"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(v["tp_c3"], 1);
    assert!((v["dice"].as_f64().unwrap() - 6.0 / 8.0).abs() < 1e-12);
    assert!((v["fpv_ml"].as_f64().unwrap() - 0.012).abs() < 1e-12);
}

#[test]
fn mismatched_grids_and_non_binary_masks_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt, _) = case(0);
    let (pp, gp) = (dir.path().join("p.nii.gz"), dir.path().join("g.nii.gz"));
    write_nifti(
        &pp,
        &pred
            .clone()
            .with_affine(Affine::from_spacing_origin([2.0, 2.0, 3.0], [0.0; 3]).unwrap()),
    )
    .unwrap();
    write_nifti(&gp, &gt).unwrap();
    let out = petseg(&["evaluate", "--pred", s(&pp), "--gt", s(&gp)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prediction vs ground truth") && err.contains("affines differ"),
        "{err}"
    );

    let mut multi = gt.clone();
    multi.data_mut()[[9, 8, 6]] = 2;
    write_nifti(&pp, &pred).unwrap();
    write_nifti(&gp, &multi).unwrap();
    let out = petseg(&["evaluate", "--pred", s(&pp), "--gt", s(&gp)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not binary") && err.contains("g.nii.gz"),
        "{err}"
    );
    let out = petseg(&[
        "evaluate",
        "--pred",
        s(&pp),
        "--gt",
        s(&gp),
        "--binarize",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn folder_mode_pairs_by_id_and_writes_all_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (pd, gd, id) = (
        dir.path().join("pred"),
        dir.path().join("labelsTr"),
        dir.path().join("imagesTr"),
    );
    for d in [&pd, &gd, &id] {
        std::fs::create_dir(d).unwrap();
    }
    // Ids whose sorted order differs between folders would break positional
    // pairing: the GT of case "b" has its second lesion elsewhere.
    for (name, shift) in [("b_case", 1usize), ("a_case", 0)] {
        let (pred, gt, pet) = case(shift);
        write_nifti(pd.join(format!("{name}.nii.gz")), &pred).unwrap();
        write_nifti(gd.join(format!("{name}.nii.gz")), &gt).unwrap();
        write_nifti(id.join(format!("{name}_0001.nii.gz")), &pet).unwrap();
        write_nifti(id.join(format!("{name}_0000.nii.gz")), &pet).unwrap();
    }
    let out_dir = dir.path().join("eval");
    let out = petseg(&[
        "evaluate",
        "--pred",
        s(&pd),
        "--gt",
        s(&gd),
        "--pet",
        s(&id),
        "--out",
        s(&out_dir),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["patients.csv", "lesions.csv", "summary.json", "summary.md"] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
    let patients = std::fs::read_to_string(out_dir.join("patients.csv")).unwrap();
    let lines: Vec<&str> = patients.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("case_id,connectivity,voxel_ml,dice,fpv_ml"));
    assert!(lines[1].starts_with("a_case,18,") && lines[2].starts_with("b_case,18,"));
    let lesions = std::fs::read_to_string(out_dir.join("lesions.csv")).unwrap();
    assert_eq!(
        lesions
            .lines()
            .filter(|l| l.contains(",unmatched_pred,"))
            .count(),
        2
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["all"]["n_cases"], 2);

    // A GT without prediction is an error naming the id, and no output.
    let (_, gt, _) = case(0);
    write_nifti(gd.join("c_case.nii.gz"), &gt).unwrap();
    let out2 = dir.path().join("eval2");
    let out = petseg(&[
        "evaluate",
        "--pred",
        s(&pd),
        "--gt",
        s(&gd),
        "--out",
        s(&out2),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("c_case"));
    assert!(!out2.exists());
}

#[test]
fn components_writes_labels_and_prints_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Volume::filled([6, 5, 4], 0u8, aff()).unwrap();
    m.data_mut()[[1, 1, 1]] = 1;
    m.data_mut()[[2, 2, 1]] = 1; // edge contact: joined by 18, not by 6
    m.data_mut()[[5, 4, 3]] = 1;
    let (inp, outp) = (dir.path().join("m.nii.gz"), dir.path().join("cc.nii.gz"));
    write_nifti(&inp, &m).unwrap();
    for (conn, n) in [("6", 3usize), ("18", 2)] {
        let out = petseg(&["components", s(&inp), s(&outp), "--connectivity", conn]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("{n} components")));
        let AnyVolume::U16(lab) = read_nifti(&outp).unwrap() else {
            panic!("expected uint16 labels")
        };
        assert_eq!(lab.data()[[1, 1, 1]], 1);
        assert_eq!(lab.data()[[5, 4, 3]] as usize, n);
        assert_eq!(lab.affine(), m.affine());
    }
    let out = petseg(&["components", s(&inp), s(&outp), "--connectivity", "8"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("6, 18 or 26"));
}

#[test]
fn manifest_mode_takes_label_and_pet_from_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cohort");
    let pd = dir.path().join("pred");
    std::fs::create_dir_all(data.join("labels")).unwrap();
    std::fs::create_dir_all(data.join("pet")).unwrap();
    std::fs::create_dir(&pd).unwrap();
    let mut cases = Vec::new();
    for (name, shift) in [("x2", 1usize), ("x1", 0)] {
        let (pred, gt, pet) = case(shift);
        write_nifti(pd.join(format!("{name}.nii.gz")), &pred).unwrap();
        // File names unrelated to the id: only the manifest links them.
        write_nifti(data.join(format!("labels/mask_of_{name}.nii.gz")), &gt).unwrap();
        write_nifti(data.join(format!("pet/suv_{name}.nii.gz")), &pet).unwrap();
        cases.push(serde_json::json!({
            "id": name, "patient_id": format!("p_{name}"), "ct": format!("pet/suv_{name}.nii.gz"),
            "pet": format!("pet/suv_{name}.nii.gz"), "label": format!("labels/mask_of_{name}.nii.gz")
        }));
    }
    // An unlabelled case is skipped.
    cases.push(
        serde_json::json!({"id": "x3", "patient_id": "p3", "ct": "a.nii.gz", "pet": "b.nii.gz"}),
    );
    let manifest = data.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"name": "t", "cases": cases}).to_string(),
    )
    .unwrap();
    let out_dir = dir.path().join("eval");
    let out = petseg(&[
        "evaluate",
        "--pred",
        s(&pd),
        "--manifest",
        s(&manifest),
        "--out",
        s(&out_dir),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let patients = std::fs::read_to_string(out_dir.join("patients.csv")).unwrap();
    let ids: Vec<&str> = patients
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ids, vec!["x2", "x1"], "manifest order");
    // tp_c3 column is filled: PET came from the manifest.
    assert!(!patients.lines().nth(1).unwrap().contains(",,"));
}
