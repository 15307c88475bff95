//! Per-case metrics against the Python references on committed fixtures:
//! DSC/FPV/FNV = the autoPET evaluation code (cc3d, 18-connectivity),
//! C1/C2/C3 = the study's rules, uptake, lesion counts and brute-force Dmax.

mod common;

use petseg_eval::{evaluate_case, Connectivity};
use petseg_io::{Affine, Volume};
use serde_json::Value;

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
        "{what}: {a} vs {b}"
    );
}

fn opt(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[test]
fn metrics_equal_autopet_and_reference_rules() {
    let cases = common::fixture("metrics.json");
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let shape = common::shape_of(&case["shape"]);
        let sp: Vec<f64> = case["spacing_mm"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let spacing = [sp[0], sp[1], sp[2]];
        let gt = common::vol_u8(shape, common::mask_bits(&case["gt"]), spacing);
        let pred = common::vol_u8(shape, common::mask_bits(&case["pred"]), spacing);
        let pet_vals: Vec<f32> = case["pet_x100"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v.as_i64().unwrap() as f64 / 100.0) as f32)
            .collect();
        let pet = Volume::from_raster(shape, pet_vals, *gt.affine()).unwrap();
        let e = evaluate_case(name, &pred, &gt, Some(&pet), Connectivity::Eighteen).unwrap();
        let m = &e.patient;
        let ap = &case["autopet"];
        if m.n_gt_lesions > 0 {
            close(
                m.dice,
                ap["dice"].as_f64().unwrap(),
                &format!("{name} dice"),
            );
        } else {
            assert!(m.dice.is_nan(), "{name}: DSC must be NaN without GT");
        }
        close(
            m.fpv_ml,
            ap["fpv_ml"].as_f64().unwrap(),
            &format!("{name} fpv"),
        );
        close(
            m.fnv_ml,
            ap["fnv_ml"].as_f64().unwrap(),
            &format!("{name} fnv"),
        );
        let counts = |k: &str| -> Vec<u64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        };
        assert_eq!(vec![m.tp_c1, m.fp_c1, m.fn_c1], counts("c1"), "{name} C1");
        assert_eq!(vec![m.tp_c2, m.fp_c2, m.fn_c2], counts("c2"), "{name} C2");
        assert_eq!(
            vec![m.tp_c3.unwrap(), m.fp_c3.unwrap(), m.fn_c3.unwrap()],
            counts("c3"),
            "{name} C3"
        );
        assert_eq!(m.n_gt_lesions, case["n_gt"].as_u64().unwrap(), "{name}");
        assert_eq!(m.n_pred_lesions, case["n_pred"].as_u64().unwrap(), "{name}");
        close(
            m.dmax_cm,
            case["dmax_gt_cm"].as_f64().unwrap(),
            &format!("{name} dmax"),
        );
        close(
            m.pred_dmax_cm,
            case["dmax_pred_cm"].as_f64().unwrap(),
            &format!("{name} pred dmax"),
        );
        for (side, vals) in [
            (
                "gt_uptake",
                [m.gt_tmtv_ml, m.gt_suvmax, m.gt_suvmean, m.gt_tla],
            ),
            (
                "pred_uptake",
                [m.pred_tmtv_ml, m.pred_suvmax, m.pred_suvmean, m.pred_tla],
            ),
        ] {
            let u = &case[side];
            for (k, v) in ["tmtv_ml", "suvmax", "suvmean", "tla"].iter().zip(vals) {
                let want = opt(&u[*k]);
                if want.is_nan() {
                    assert!(v.is_nan(), "{name} {side} {k}: {v}");
                } else {
                    close(v, want, &format!("{name} {side} {k}"));
                }
            }
        }
        // Lesion rows: one per GT lesion, then unmatched predictions.
        let n_gt_rows = e.lesions.iter().filter(|l| l.gt_label.is_some()).count() as u64;
        assert_eq!(n_gt_rows, m.n_gt_lesions);
        let unmatched = e.lesions.len() as u64 - n_gt_rows;
        assert_eq!(unmatched, m.fp_c1, "{name}: unmatched predictions = C1 FP");
        let missed = e
            .lesions
            .iter()
            .filter(|l| l.gt_label.is_some() && l.pred_labels.is_empty());
        assert_eq!(missed.clone().count() as u64, m.fn_c1);
        assert!(missed.into_iter().all(|l| l.dice == 0.0));
        let gt_mtv: f64 = e
            .lesions
            .iter()
            .filter(|l| l.gt_label.is_some())
            .map(|l| l.gt_mtv_ml)
            .sum();
        close(gt_mtv, m.gt_tmtv_ml, &format!("{name} Σ lesion MTV"));
    }
}

#[test]
fn grid_mismatches_are_clear_errors() {
    let a = Affine::from_spacing_origin([2.0, 2.0, 3.0], [0.0; 3]).unwrap();
    let gt = Volume::filled([4, 4, 4], 0u8, a).unwrap();
    let small = Volume::filled([4, 4, 3], 0u8, a).unwrap();
    let err = evaluate_case("c", &small, &gt, None, Connectivity::Eighteen).unwrap_err();
    assert!(
        err.to_string().contains("prediction vs ground truth"),
        "{err}"
    );
    let shifted = gt
        .clone()
        .with_affine(Affine::from_spacing_origin([2.0, 2.0, 3.0], [0.5, 0.0, 0.0]).unwrap());
    assert!(evaluate_case("c", &shifted, &gt, None, Connectivity::Eighteen).is_err());
    let pet = Volume::filled([4, 4, 5], 1.0f32, a).unwrap();
    let err = evaluate_case("c", &gt, &gt, Some(&pet), Connectivity::Eighteen).unwrap_err();
    assert!(err.to_string().contains("ground truth vs PET"), "{err}");
}

#[test]
fn without_pet_c3_and_uptake_are_undefined() {
    let a = Affine::from_spacing_origin([1.0; 3], [0.0; 3]).unwrap();
    let mut gt = Volume::filled([5, 5, 5], 0u8, a).unwrap();
    gt.data_mut()[[1, 1, 1]] = 1;
    let e = evaluate_case("c", &gt, &gt, None, Connectivity::Six).unwrap();
    assert_eq!(e.patient.tp_c3, None);
    assert!(e.patient.f1_c3.is_nan() && e.patient.gt_suvmax.is_nan());
    assert_eq!(e.patient.dice, 1.0);
    let json = serde_json::to_value(&e.patient).unwrap();
    assert!(json["tp_c3"].is_null() && json["f1_c3"].is_null());
    for key in [
        "dice",
        "fpv_ml",
        "fnv_ml",
        "tp_c1",
        "fn_c3",
        "f1_c3",
        "dmax_cm",
        "n_gt_lesions",
        "n_pred_lesions",
    ] {
        assert!(json.get(key).is_some(), "missing key {key}");
    }
}
