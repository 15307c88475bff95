//! Value and gradient parity with MONAI 1.6.1 / PyTorch (fixtures from `scripts/make_fixtures.py`).

mod common;

use common::{grad_errors, load_case, load_meta, rel, value_and_grad};
use petseg_losses::LossConfig;

const TOL: f64 = 1e-5;

fn check_case(case: &str) {
    let meta = load_meta();
    let arrays = load_case(case);
    let (logits, labels) = (&arrays["logits"], &arrays["labels"]);
    let losses = meta["cases"][case]["losses"]
        .as_object()
        .expect("losses of the case");
    assert!(losses.len() >= 11, "fixture has {} losses", losses.len());
    let mut failures = Vec::new();
    for (name, entry) in losses {
        let config: LossConfig = serde_json::from_value(entry["config"].clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let loss = config.build().unwrap();
        let (value, grad) = value_and_grad(loss.as_ref(), logits, labels);
        let reference = entry["value"].as_f64().unwrap();
        let grad_ref = arrays[&format!("grad_{name}")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let (g_l2, g_max) = grad_errors(&grad, &grad_ref);
        let v_err = rel(value, reference);
        println!("{case:>15} {name:<20} value {value:.8} ref {reference:.8} rel {v_err:.1e}  grad l2 {g_l2:.1e} max {g_max:.1e}");
        if v_err > TOL || g_l2 > TOL || g_max > TOL {
            failures.push(format!(
                "{name}: value rel {v_err:.2e}, grad l2 {g_l2:.2e}, grad max {g_max:.2e}"
            ));
        }
    }
    assert!(failures.is_empty(), "{case}: {failures:#?}");
}

#[test]
fn parity_sparse_foreground() {
    check_case("sparse");
}

#[test]
fn parity_empty_foreground() {
    check_case("empty");
}

#[test]
fn parity_all_foreground() {
    check_case("all_foreground");
}

#[test]
fn parity_batch_of_two() {
    check_case("batch2");
}
