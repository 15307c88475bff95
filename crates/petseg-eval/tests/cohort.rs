//! Cohort analysis: scenarios, thresholds, Dmax groups, pairing by case id,
//! CSV columns and the Markdown table.

use petseg_eval::cohort::{compare_paired, markdown, summarize};
use petseg_eval::report::{lesions_csv, patients_csv, PATIENT_COLUMNS};
use petseg_eval::stats::{wilcoxon, Alternative};
use petseg_eval::{LesionKind, LesionMetrics, PatientMetrics};

fn pm(id: &str, n_gt: u64, dice: f64, tmtv: f64, dmax: f64) -> PatientMetrics {
    PatientMetrics {
        case_id: id.into(),
        connectivity: 18,
        voxel_ml: 0.048,
        dice,
        fpv_ml: 1.0,
        fnv_ml: 0.5,
        tp_c1: 1,
        fp_c1: 0,
        fn_c1: 0,
        f1_c1: 1.0,
        tp_c2: 1,
        fp_c2: 0,
        fn_c2: 0,
        f1_c2: 1.0,
        tp_c3: None,
        fp_c3: None,
        fn_c3: None,
        f1_c3: f64::NAN,
        tp_1to1: 1,
        fp_1to1: 0,
        fn_1to1: 0,
        f1_1to1: 1.0,
        n_gt_lesions: n_gt,
        n_pred_lesions: 1,
        gt_tmtv_ml: tmtv,
        pred_tmtv_ml: tmtv,
        gt_suvmax: 10.0,
        gt_suvmean: 5.0,
        gt_tla: 5.0 * tmtv,
        pred_suvmax: 10.0,
        pred_suvmean: 5.0,
        pred_tla: 5.0 * tmtv,
        dmax_cm: dmax,
        pred_dmax_cm: dmax,
    }
}

fn lesion(id: &str, mtv: f64, dice: f64) -> LesionMetrics {
    LesionMetrics {
        case_id: id.into(),
        kind: LesionKind::Gt,
        gt_label: Some(1),
        pred_labels: vec![1, 3],
        dice,
        gt_mtv_ml: mtv,
        gt_suvmax: 1.0,
        gt_suvmean: 1.0,
        gt_tla: mtv,
        pred_mtv_ml: mtv,
        pred_suvmax: 1.0,
        pred_suvmean: 1.0,
        pred_tla: mtv,
    }
}

fn cohort() -> Vec<PatientMetrics> {
    vec![
        pm("a", 0, f64::NAN, 0.0, 0.0),
        pm("b", 1, 0.2, 1.0, 0.0),
        pm("c", 1, 0.4, 2.0, 0.0),
        pm("d", 2, 0.6, 3.0, 10.0),
        pm("e", 3, 0.8, 4.0, 12.0),
        pm("f", 5, 0.9, 5.0, 30.0),
    ]
}

#[test]
fn scenarios_thresholds_and_groups() {
    let cases = cohort();
    let lesions = vec![
        lesion("b", 1.0, 0.1),
        lesion("c", 3.0, 0.5),
        lesion("d", 5.0, 0.7),
    ];
    let s = summarize(&cases, &lesions);
    assert_eq!(s.all.n_cases, 6);
    assert_eq!(
        s.all.dice.n, 5,
        "NaN DSC of the lesion-free case is skipped"
    );
    let names: Vec<(&str, usize)> = s
        .scenarios
        .iter()
        .map(|g| (g.name.as_str(), g.n_cases))
        .collect();
    assert_eq!(
        names,
        vec![("no_lesion", 1), ("single", 2), ("multiple", 3)]
    );
    assert!((s.scenarios[1].dice.mean - 0.3).abs() < 1e-12);
    // TMTV of positive cases 1..5: p25 = 2, p50 = 3, p75 = 4, p85 = 4.4.
    let t: Vec<(f64, usize, f64)> = s
        .tmtv_thresholds
        .iter()
        .map(|r| (r.threshold_ml, r.n_below, r.median_dice_below))
        .collect();
    assert_eq!(t[0], (2.0, 2, 0.30000000000000004));
    assert_eq!((t[1].0, t[1].1), (3.0, 3));
    assert!((t[3].0 - 4.4).abs() < 1e-12 && t[3].1 == 4);
    assert!((t[3].2 - 0.5).abs() < 1e-12);
    // Lesion MTV 1, 3, 5: p50 = 3 → lesions ≤ 3 have DSC 0.1, 0.5.
    assert_eq!(s.mtv_thresholds[1].threshold_ml, 3.0);
    assert!((s.mtv_thresholds[1].median_dice_below - 0.3).abs() < 1e-12);
    // Study groups: [0,9): b, c; [9,11): d; [11,14): e; [14,60]: f.
    let g: Vec<usize> = s
        .dmax_study_groups
        .iter()
        .map(|g| g.summary.n_cases)
        .collect();
    assert_eq!(g, vec![2, 1, 1, 1]);
    let q: usize = s
        .dmax_quartile_groups
        .iter()
        .map(|g| g.summary.n_cases)
        .sum();
    assert!(q >= 5, "every positive case falls in a quartile group");
    let md = markdown(&s);
    assert!(md.contains("| single | 2 | 0.300 ± 0.141 |"), "{md}");
    assert!(md.contains("## Study Dmax groups"));
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["scenarios"][0]["dice"]["mean"].is_null());
}

#[test]
fn paired_comparison_pairs_by_case_id() {
    let a = cohort();
    let mut b: Vec<PatientMetrics> = a.iter().rev().cloned().collect();
    for (t, c) in b.iter_mut().enumerate() {
        c.dice -= 0.05 + 0.01 * t as f64;
    }
    let r = compare_paired(&a, &b, |c| c.dice, Alternative::Greater).unwrap();
    // Aligned by id by hand.
    let x: Vec<f64> = a
        .iter()
        .filter(|c| c.dice.is_finite())
        .map(|c| c.dice)
        .collect();
    let y: Vec<f64> = a
        .iter()
        .filter(|c| c.dice.is_finite())
        .map(|c| b.iter().find(|d| d.case_id == c.case_id).unwrap().dice)
        .collect();
    let want = wilcoxon(&x, &y, Alternative::Greater, true).unwrap();
    assert_eq!(r, want);
    b.pop();
    b.push(pm("zzz", 1, 0.1, 1.0, 1.0));
    assert!(compare_paired(&a, &b, |c| c.dice, Alternative::Greater).is_err());
}

#[test]
fn csv_columns_cover_every_field() {
    let cases = cohort();
    let v = serde_json::to_value(&cases[0]).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    let mut cols = PATIENT_COLUMNS.to_vec();
    cols.sort();
    assert_eq!(keys, cols);
    let csv = patients_csv(&cases).unwrap();
    let first = csv.lines().nth(1).unwrap();
    assert!(first.starts_with("a,18,0.048,,1.0,0.5,"), "{first}");
    let l = lesions_csv(&[lesion("b", 1.0, 0.1)]).unwrap();
    assert!(
        l.lines().nth(1).unwrap().starts_with("b,gt,1,1;3,0.1,"),
        "{l}"
    );
}
