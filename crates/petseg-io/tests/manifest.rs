//! Manifest: round trip, validation errors, layout readers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use petseg_io::manifest::{CaseEntry, Fold, LesionScenario, Manifest, Split};

fn case(id: &str, patient: &str, n: Option<u32>) -> CaseEntry {
    let mut tags = BTreeMap::new();
    tags.insert("tracer".to_string(), "18F-DCFPyL".to_string());
    CaseEntry {
        id: id.to_string(),
        patient_id: patient.to_string(),
        ct: PathBuf::from(format!("imagesTr/{id}_0000.nii.gz")),
        pet: PathBuf::from(format!("imagesTr/{id}_0001.nii.gz")),
        label: Some(PathBuf::from(format!("labelsTr/{id}.nii.gz"))),
        n_lesions: n,
        tags,
    }
}

fn sample(dir: &Path) -> Manifest {
    let mut m = Manifest::new("unit", dir);
    m.description = Some("test manifest".into());
    m.cases = vec![
        case("a", "p1", Some(0)),
        case("b", "p1", Some(1)),
        case("c", "p2", Some(3)),
        case("d", "p3", None),
        case("e", "p4", Some(2)),
    ];
    m.split = Some(Split {
        seed: 7,
        test: vec!["e".into()],
        folds: vec![
            Fold {
                train: vec!["a".into(), "b".into()],
                val: vec!["c".into(), "d".into()],
            },
            Fold {
                train: vec!["c".into(), "d".into()],
                val: vec!["a".into(), "b".into()],
            },
        ],
    });
    m
}

fn touch_files(m: &Manifest) {
    for c in &m.cases {
        for (_, rel) in c.files() {
            let p = m.resolve(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
        }
    }
}

fn write_json(path: &Path, v: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

#[test]
fn round_trip_keeps_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = sample(dir.path());
    let path = dir.path().join("manifest.json");
    m.save(&path).unwrap();
    let back = Manifest::load(&path).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.case("c").unwrap().patient_id, "p2");
    assert!(back.case("zz").is_none());
    assert_eq!(
        back.resolve(Path::new("x.nii.gz")),
        dir.path().join("./x.nii.gz")
    );
    let patients = back.patients();
    assert_eq!(patients["p1"], vec!["a", "b"]);
    assert_eq!(patients.len(), 4);
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn saving_elsewhere_keeps_paths_resolving_to_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/cohort");
    std::fs::create_dir_all(&data).unwrap();
    let mut m = sample(&data);
    touch_files(&m);
    let before = m.resolve(&m.cases[0].pet).canonicalize().unwrap();
    let manifests = dir.path().join("data-manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let path = manifests.join("cohort.json");
    m.save(&path).unwrap();
    assert_eq!(m.root, PathBuf::from("../data/cohort"));
    let back = Manifest::load(&path).unwrap();
    back.check_files_exist().unwrap();
    assert_eq!(
        back.resolve(&back.cases[0].pet).canonicalize().unwrap(),
        before
    );
}

#[test]
fn duplicate_ids_are_refused_naming_the_manifest_and_the_case() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = sample(dir.path());
    m.split = None;
    m.cases.push(case("b", "p9", None));
    let path = dir.path().join("dup.json");
    write_json(&path, &serde_json::to_value(&m).unwrap());
    let err = Manifest::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("dup.json") && err.contains("'b'") && err.contains("more than once"),
        "{err}"
    );
    assert!(m.save(&path).is_err());
}

#[test]
fn a_case_in_two_partitions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = sample(dir.path());
    m.split.as_mut().unwrap().folds[0].val.push("a".into());
    let err = m.validate().unwrap_err();
    assert!(
        err.contains("'a'") && err.contains("fold 0 train") && err.contains("fold 0 val"),
        "{err}"
    );

    let mut m = sample(dir.path());
    m.split.as_mut().unwrap().test.push("c".into());
    let err = m.validate().unwrap_err();
    assert!(err.contains("'c'") && err.contains("split test"), "{err}");
}

#[test]
fn a_patient_in_two_partitions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = sample(dir.path());
    // a and b share patient p1: put them on both sides of fold 0.
    let fold = &mut m.split.as_mut().unwrap().folds[0];
    fold.train = vec!["a".into(), "c".into()];
    fold.val = vec!["b".into(), "d".into()];
    let err = m.validate().unwrap_err();
    assert!(err.contains("patient 'p1'"), "{err}");
}

#[test]
fn split_ids_must_exist_and_be_listed_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = sample(dir.path());
    m.split.as_mut().unwrap().test.push("nope".into());
    let err = m.validate().unwrap_err();
    assert!(
        err.contains("'nope'") && err.contains("not in the manifest"),
        "{err}"
    );
    let mut m = sample(dir.path());
    m.split.as_mut().unwrap().folds[1].train.push("c".into());
    assert!(m.validate().unwrap_err().contains("twice"));
}

#[test]
fn malformed_content_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, "{ \"name\": \"x\", \"cases\": [ }").unwrap();
    let err = Manifest::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("bad.json") && err.contains("not a valid manifest"),
        "{err}"
    );

    let mut m = sample(dir.path());
    m.cases[0].id = "has space".into();
    assert!(m.validate().unwrap_err().contains("has space"));
    let mut m = sample(dir.path());
    m.cases[1].ct = PathBuf::from("/abs/ct.nii.gz");
    assert!(m.validate().unwrap_err().contains("relative"));

    let missing = Manifest::load(&dir.path().join("absent.json"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("absent.json"), "{missing}");

    // Unknown fields are refused (typos must not pass silently).
    write_json(
        &path,
        &serde_json::json!({"name": "x", "cases": [], "splitt": null}),
    );
    assert!(Manifest::load(&path)
        .unwrap_err()
        .to_string()
        .contains("splitt"));
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = sample(dir.path());
    touch_files(&m);
    m.check_files_exist().unwrap();
    let gone = m.resolve(&m.cases[2].pet);
    std::fs::remove_file(&gone).unwrap();
    let err = m.check_files_exist().unwrap_err().to_string();
    assert!(
        err.contains("c_0001.nii.gz") && err.contains("pet file of case 'c'"),
        "{err}"
    );
}

#[test]
fn scenarios_follow_lesion_counts() {
    assert_eq!(LesionScenario::from_count(0), LesionScenario::None);
    assert_eq!(LesionScenario::from_count(1), LesionScenario::Single);
    assert_eq!(LesionScenario::from_count(7), LesionScenario::Multiple);
    let m = sample(Path::new("."));
    let s: Vec<_> = m.cases.iter().map(|c| c.scenario()).collect();
    assert_eq!(
        s,
        vec![
            Some(LesionScenario::None),
            Some(LesionScenario::Single),
            Some(LesionScenario::Multiple),
            None,
            Some(LesionScenario::Multiple)
        ]
    );
    assert_eq!(
        serde_json::to_string(&LesionScenario::Single).unwrap(),
        "\"single\""
    );
}

#[test]
fn nnunet_exports() {
    let m = sample(Path::new("."));
    let ds = m.nnunet_dataset_json();
    assert_eq!(ds["channel_names"]["0"], "CT");
    assert_eq!(ds["channel_names"]["1"], "PET");
    assert_eq!(ds["labels"]["lesion"], 1);
    assert_eq!(ds["numTraining"], 5);
    let splits = m.nnunet_splits_json().unwrap();
    assert_eq!(splits[1]["val"], serde_json::json!(["a", "b"]));
}

#[test]
fn nnunet_layout_pairs_files_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    std::fs::create_dir_all(root.join("labelsTr")).unwrap();
    // Ids whose sorted order differs from any numeric order; one unlabelled case.
    for id in ["case_10", "case_2", "case_1"] {
        for ch in ["0000", "0001"] {
            std::fs::write(root.join(format!("imagesTr/{id}_{ch}.nii.gz")), b"x").unwrap();
        }
    }
    for id in ["case_10", "case_1"] {
        std::fs::write(root.join(format!("labelsTr/{id}.nii.gz")), b"x").unwrap();
    }
    let m = Manifest::from_nnunet_dir(root, "nn").unwrap();
    assert_eq!(m.cases.len(), 3);
    for c in &m.cases {
        assert_eq!(
            c.ct,
            PathBuf::from(format!("imagesTr/{}_0000.nii.gz", c.id))
        );
        assert_eq!(
            c.pet,
            PathBuf::from(format!("imagesTr/{}_0001.nii.gz", c.id))
        );
        assert_eq!(c.patient_id, c.id);
    }
    assert!(m.case("case_2").unwrap().label.is_none());
    assert_eq!(
        m.case("case_10").unwrap().label,
        Some(PathBuf::from("labelsTr/case_10.nii.gz"))
    );
    m.check_files_exist().unwrap();

    // A case without its PET channel is an error naming it.
    std::fs::remove_file(root.join("imagesTr/case_2_0001.nii.gz")).unwrap();
    let err = Manifest::from_nnunet_dir(root, "nn")
        .unwrap_err()
        .to_string();
    assert!(err.contains("case_2") && err.contains("0001"), "{err}");
    std::fs::remove_file(root.join("imagesTr/case_2_0000.nii.gz")).unwrap();
    // A label without images is an error too.
    std::fs::write(root.join("labelsTr/ghost.nii.gz"), b"x").unwrap();
    let err = Manifest::from_nnunet_dir(root, "nn")
        .unwrap_err()
        .to_string();
    assert!(err.contains("ghost"), "{err}");
}

#[test]
fn autopet_layouts_flat_and_nested() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let study = |rel: &str, seg: bool| {
        let d = root.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["CTres.nii.gz", "SUV.nii.gz"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        if seg {
            std::fs::write(d.join("SEG.nii.gz"), b"x").unwrap();
        }
    };
    study("PETCT_0a1/03-2002-NA-PET-CT", true);
    study("PETCT_0a1/11-2003-NA-PET-CT", true);
    study("single", false);
    let m = Manifest::from_autopet_dir(root, "ap").unwrap();
    assert_eq!(m.cases.len(), 3);
    let nested = m.case("PETCT_0a1_03-2002-NA-PET-CT").unwrap();
    assert_eq!(nested.patient_id, "PETCT_0a1");
    assert_eq!(
        nested.pet,
        Path::new("PETCT_0a1/03-2002-NA-PET-CT/SUV.nii.gz")
    );
    assert_eq!(m.patients()["PETCT_0a1"].len(), 2);
    assert!(m.case("single").unwrap().label.is_none());
    m.check_files_exist().unwrap();

    std::fs::remove_file(root.join("single/CTres.nii.gz")).unwrap();
    let err = Manifest::from_autopet_dir(root, "ap")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CTres.nii.gz") && err.contains("single"),
        "{err}"
    );
}
