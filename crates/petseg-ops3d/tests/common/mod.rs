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
/// finite differences in f64, on [`sampled_entries`] of each input.
pub fn grad_check(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    finite_difference_check(name, inputs, f, 1e-6, Tolerance::PerEntry(1e-6));
}

/// [`grad_check`] for f32 inputs of an op that is linear in each of them
/// (a convolution in its input, in its weight and in its bias), so that the
/// f32 kernels the networks run are checked, not the f64 reference route.
/// Linearity makes a central difference exact for any step, so a large one
/// (0.5) keeps the f32 rounding of the outputs far below the tolerance; the
/// loss itself is summed in f64. What remains is the f32 rounding of the
/// analytic gradient, sums of up to `o·27` products, hence the tolerance of
/// 1e-4 relative to the gradient's largest entry (as the kernels' unit tests
/// measure against the gemm route).
pub fn grad_check_linear_f32(
    name: &str,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let inputs: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to_dtype(DType::F32).unwrap())
        .collect();
    finite_difference_check(name, &inputs, f, 0.5, Tolerance::OfLargest(1e-4));
}

/// Up to 40 entries of a tensor of `len` elements: all of them for small
/// tensors, else the first, the last and random ones (seeded by `seed`), so
/// that the samples fall on every coordinate, not on one column (a fixed
/// stride that divides `W` or `H·W` would check one border column only).
fn sampled_entries(len: usize, seed: u64) -> Vec<usize> {
    const SAMPLES: usize = 40;
    if len <= SAMPLES {
        return (0..len).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picked: Vec<usize> = (0..SAMPLES - 2)
        .map(|_| rng.random_range(1..len - 1))
        .chain([0, len - 1])
        .collect();
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// The bound on `|fd − analytic|` of one entry.
#[derive(Clone, Copy)]
enum Tolerance {
    /// Relative to `max(1, |fd|)`.
    PerEntry(f64),
    /// Relative to `max(1, largest |analytic| of the input's gradient)`.
    OfLargest(f64),
}

/// The checker of [`grad_check`] and [`grad_check_linear_f32`]: the inputs
/// keep their dtype, entries move by `±h` (the difference is taken between
/// the perturbed values as stored), and the error must stay within `tol`.
fn finite_difference_check(
    name: &str,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    h: f64,
    tol: Tolerance,
) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts).unwrap();
    // r in the output's dtype for the backward, and exactly those values in f64
    let r = rand_t(999, y.dims()).to_dtype(y.dtype()).unwrap();
    let r64 = r.to_dtype(DType::F64).unwrap();
    let loss = |ins: &[Tensor]| -> f64 {
        f(ins)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .mul(&r64)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let grads = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    for (k, v) in vars.iter().enumerate() {
        let g = grads
            .get(v)
            .unwrap_or_else(|| panic!("{name}: no gradient for input {k}"));
        assert_eq!(
            g.dims(),
            inputs[k].dims(),
            "{name}: gradient shape of input {k}"
        );
        let (g, dtype) = (to_vec(g), inputs[k].dtype());
        let base = to_vec(&inputs[k]);
        let largest = g.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let mut worst = 0.0f64;
        for i in sampled_entries(base.len(), k as u64) {
            // the perturbed input as stored, and the entry's value in it
            let moved = |delta: f64| {
                let mut p = base.clone();
                p[i] += delta;
                let t = Tensor::from_vec(p, inputs[k].dims(), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let value = to_vec(&t)[i];
                let mut ins = inputs.to_vec();
                ins[k] = t;
                (loss(&ins), value)
            };
            let ((up, hi), (down, lo)) = (moved(h), moved(-h));
            let num = (up - down) / (hi - lo);
            let (scale, bound) = match tol {
                Tolerance::PerEntry(b) => ((1.0f64).max(num.abs()), b),
                Tolerance::OfLargest(b) => (largest, b),
            };
            let err = (num - g[i]).abs() / scale;
            worst = worst.max(err);
            assert!(
                err < bound,
                "{name}: input {k} entry {i}: analytic {} vs finite difference {num}",
                g[i]
            );
        }
        eprintln!("{name}: input {k}: worst relative error {worst:.2e}");
    }
}
