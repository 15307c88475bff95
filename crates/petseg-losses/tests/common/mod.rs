//! Shared helpers of the integration tests: fixture loading and comparisons.
#![allow(dead_code)] // each test binary uses a subset

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Tensor, Var};
use petseg_losses::SegLoss;

/// Path of a file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The arrays of `case_<case>.npz`.
pub fn load_case(case: &str) -> HashMap<String, Tensor> {
    let path = fixture(&format!("case_{case}.npz"));
    Tensor::read_npz(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// `fixtures.json`.
pub fn load_meta() -> serde_json::Value {
    let path = fixture("fixtures.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixtures.json"))
        .expect("valid JSON")
}

/// Value and gradient of a loss at `logits`.
pub fn value_and_grad(loss: &dyn SegLoss, logits: &Tensor, labels: &Tensor) -> (f64, Vec<f32>) {
    let var = Var::from_tensor(logits).unwrap();
    let value = loss.forward(var.as_tensor(), labels).unwrap();
    let grads = value.backward().unwrap();
    let g = grads
        .get(var.as_tensor())
        .expect("gradient w.r.t. logits")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    (value.to_scalar::<f32>().unwrap() as f64, g)
}

/// `‖a − b‖₂ / ‖b‖₂` (absolute when b is 0) and `max|a − b| / max|b|`.
pub fn grad_errors(a: &[f32], b: &[f32]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut d2, mut b2, mut dmax, mut bmax) = (0f64, 0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let d = (x as f64 - y as f64).abs();
        d2 += d * d;
        b2 += (y as f64) * (y as f64);
        dmax = dmax.max(d);
        bmax = bmax.max((y as f64).abs());
    }
    let norm = |n: f64, d: f64| if d > 0.0 { n / d } else { n };
    (norm(d2.sqrt(), b2.sqrt()), norm(dmax, bmax))
}

/// `|a − b| / |b|` (absolute when b is 0).
pub fn rel(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        a.abs()
    } else {
        (a - b).abs() / b.abs()
    }
}
