//! Helpers shared by the integration tests: seeded data and a finite-difference
//! gradient checker that works in f64.
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded f64 tensor with entries in U(-1, 1).
pub fn rand_t(seed: u64, shape: &[usize]) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

pub fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    to_vec(a)
        .iter()
        .zip(to_vec(b))
        .fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// Checks the analytic gradient of `loss = Σ f(inputs) ⊙ r` (r a fixed random
/// tensor, so no symmetry can hide errors) for every input against central
/// finite differences in f64, on up to 40 entries per input.
pub fn grad_check(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts).unwrap();
    let r = rand_t(999, y.dims());
    let loss = |ins: &[Tensor]| -> f64 {
        f(ins)
            .unwrap()
            .mul(&r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let grads = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let h = 1e-6;
    for (k, v) in vars.iter().enumerate() {
        let g = grads
            .get(v)
            .unwrap_or_else(|| panic!("{name}: no gradient for input {k}"));
        assert_eq!(
            g.dims(),
            inputs[k].dims(),
            "{name}: gradient shape of input {k}"
        );
        let g = to_vec(g);
        let base = to_vec(&inputs[k]);
        let step = (base.len() / 40).max(1);
        let mut worst = 0.0f64;
        for i in (0..base.len()).step_by(step) {
            let eval = |delta: f64| {
                let mut p = base.clone();
                p[i] += delta;
                let mut ins = inputs.to_vec();
                ins[k] = Tensor::from_vec(p, inputs[k].dims(), &Device::Cpu).unwrap();
                loss(&ins)
            };
            let num = (eval(h) - eval(-h)) / (2.0 * h);
            let err = (num - g[i]).abs() / (1.0f64).max(num.abs());
            worst = worst.max(err);
            assert!(
                err < 1e-6,
                "{name}: input {k} entry {i}: analytic {} vs finite difference {num}",
                g[i]
            );
        }
        eprintln!("{name}: input {k}: worst relative error {worst:.2e}");
    }
}
