//! The special behaviours of the losses: L1DFL histogram edges, uniform β, β outside the
//! gradient path; label and dtype handling; thread-count independence.

mod common;

use candle_core::{DType, Device, Tensor, D};
use common::{grad_errors, load_case, rel, value_and_grad};
use petseg_losses::{BinEdges, DiceLoss, FocalLoss, L1Dfl, LossError, SegLoss, L1DFL_SMOOTH};

#[test]
fn values_on_bin_edges_go_to_the_bin_that_starts_there() {
    for (eps, bins) in [(0.1, 11), (0.05, 21)] {
        let e = BinEdges::new(eps).unwrap();
        assert_eq!(e.len(), bins);
        assert_eq!(e.width(0), eps / 2.0);
        assert_eq!(e.width(bins - 1), eps / 2.0);
        assert_eq!(e.width(1), eps);
        for k in 1..bins {
            let edge = e.edges()[k - 1];
            assert_eq!(edge, ((2 * k - 1) as f64 * eps / 2.0) as f32);
            assert_eq!(
                e.bin_of(edge),
                k,
                "eps {eps}: edge {edge} belongs to bin {k}"
            );
            assert_eq!(
                e.bin_of(edge.next_down()),
                k - 1,
                "eps {eps}: just below {edge}"
            );
            assert_eq!(e.bin_of(edge.next_up()), k);
        }
        assert_eq!(e.bin_of(0.0), 0);
        assert_eq!(e.bin_of(1.0), bins - 1, "1.0 is inside the closed last bin");
    }
    // the documented edges themselves: 0.05 → bin 1, 0.95 → bin 10 (ε = 0.1)
    let e = BinEdges::new(0.1).unwrap();
    assert_eq!(e.bin_of(0.05), 1);
    assert_eq!(e.bin_of(0.15), 2);
    assert_eq!(e.bin_of(0.95), 10);
    assert_eq!(e.bin_of(0.949_999_9), 9);
}

#[test]
fn bin_width_must_divide_one() {
    for bad in [0.03, 0.0, -0.1, f64::NAN, 0.7] {
        assert!(
            matches!(
                BinEdges::new(bad),
                Err(LossError::InvalidParameter {
                    field: "epsilon",
                    ..
                })
            ),
            "{bad}"
        );
    }
}

/// Logits `[1, 2, V, 1, 1]` whose `g = |p − y|` sits at the given values, with labels alternating.
fn inputs_with_g(g: &[f32]) -> (Tensor, Tensor) {
    let n = g.len();
    let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
    let mut logits = vec![0f32; 2 * n];
    for (i, (&gi, &y)) in g.iter().zip(&labels).enumerate() {
        let p1 = if y == 1 { 1.0 - gi as f64 } else { gi as f64 };
        logits[n + i] = (p1 / (1.0 - p1)).ln() as f32; // x0 = 0 → p1 = σ(x1)
    }
    let dev = Device::Cpu;
    (
        Tensor::from_vec(logits, (1, 2, n, 1, 1), &dev).unwrap(),
        Tensor::from_vec(labels, (1, 1, n, 1, 1), &dev).unwrap(),
    )
}

#[test]
fn uniform_g_gives_equal_beta_and_reduces_to_squared_dice() {
    let edges = BinEdges::new(0.1).unwrap();
    // counts proportional to the bin widths: 2 voxels in each half bin, 4 in each full bin
    let mut g = Vec::new();
    for k in 0..edges.len() {
        let (centre, reps) = match k {
            0 => (0.02, 2),
            10 => (0.98, 2),
            _ => (k as f32 * 0.1, 4),
        };
        g.extend(std::iter::repeat_n(centre, reps));
    }
    let (logits, labels) = inputs_with_g(&g);
    // β over all B×C×voxels entries, from the softmax of the logits
    let p = candle_nn::ops::softmax(&logits, 1).unwrap();
    let y1 = labels.to_dtype(DType::F32).unwrap();
    let y = Tensor::cat(&[y1.affine(-1.0, 1.0).unwrap(), y1], 1).unwrap();
    let gv = (p - y)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let beta = edges.beta(&gv);
    assert!(
        beta.iter().all(|&b| b == beta[0]),
        "β not uniform: {beta:?}"
    );
    assert!(
        (beta[0] - 1.0).abs() < 1e-6,
        "β = N·w/n = 1 here, got {}",
        beta[0]
    );

    let l1dfl = L1Dfl::default()
        .forward(&logits, &labels)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let focal = FocalLoss::default()
        .forward(&logits, &labels)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let s = L1DFL_SMOOTH / beta[0] as f64;
    let squared = DiceLoss {
        squared_pred: true,
        smooth_nr: s,
        smooth_dr: s,
        ..DiceLoss::default()
    };
    let dice = squared
        .forward(&logits, &labels)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!(
        (l1dfl - focal - dice).abs() < 1e-6,
        "L1DFL − focal = {} but squared Dice = {dice}",
        l1dfl - focal
    );
    assert!(dice > 0.01, "a non-trivial Dice: {dice}");
}

/// L1DFL written with candle ops, β computed on the side and fed in as a constant tensor.
fn l1dfl_with_detached_beta(logits: &Tensor, labels: &Tensor, eps: f64) -> Tensor {
    let p = candle_nn::ops::softmax(logits, 1).unwrap();
    let y1 = labels.to_dtype(DType::F32).unwrap();
    let y = Tensor::cat(&[y1.affine(-1.0, 1.0).unwrap(), y1], 1).unwrap();
    let g = (&p - &y)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let beta =
        Tensor::from_vec(BinEdges::new(eps).unwrap().beta(&g), p.shape(), p.device()).unwrap(); // a leaf: no gradient
    let spatial = |t: Tensor| t.flatten_from(2).unwrap().sum(D::Minus1).unwrap();
    let num = spatial((&beta * (&p * &y).unwrap()).unwrap())
        .affine(2.0, L1DFL_SMOOTH)
        .unwrap();
    let den = spatial((&beta * (p.sqr().unwrap() + y.sqr().unwrap()).unwrap()).unwrap())
        .affine(1.0, L1DFL_SMOOTH)
        .unwrap();
    let wdice = (num / den)
        .unwrap()
        .mean_all()
        .unwrap()
        .affine(-1.0, 1.0)
        .unwrap();
    let lp = candle_nn::ops::log_softmax(logits, 1).unwrap();
    let focal = (lp.exp().unwrap().affine(-1.0, 1.0).unwrap().sqr().unwrap() * lp)
        .unwrap()
        .mul(&y)
        .unwrap()
        .mean_all()
        .unwrap()
        .neg()
        .unwrap();
    (wdice + focal).unwrap()
}

#[test]
fn beta_is_outside_the_gradient_path() {
    for case in ["sparse", "batch2"] {
        let arrays = load_case(case);
        let (logits, labels) = (&arrays["logits"], &arrays["labels"]);
        for eps in [0.1, 0.05] {
            let loss = L1Dfl {
                epsilon: eps,
                gamma: 2.0,
            };
            let (value, grad) = value_and_grad(&loss, logits, labels);
            let var = candle_core::Var::from_tensor(logits).unwrap();
            let reference = l1dfl_with_detached_beta(var.as_tensor(), labels, eps);
            let grads = reference.backward().unwrap();
            let grad_ref = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let (l2, max) = grad_errors(&grad, &grad_ref);
            let v = reference.to_scalar::<f32>().unwrap() as f64;
            assert!(rel(value, v) < 1e-5, "{case} ε={eps}: value {value} vs {v}");
            assert!(l2 < 1e-5 && max < 1e-5, "{case} ε={eps}: gradient differs from the detached-β version: l2 {l2:e} max {max:e}");
        }
    }
}

#[test]
fn every_label_dtype_gives_the_same_loss() {
    let arrays = load_case("batch2");
    let (logits, labels) = (&arrays["logits"], &arrays["labels"]);
    let loss = L1Dfl::default();
    let (v0, g0) = value_and_grad(&loss, logits, labels);
    for dtype in [
        DType::U32,
        DType::I64,
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
    ] {
        let (v, g) = value_and_grad(&loss, logits, &labels.to_dtype(dtype).unwrap());
        assert_eq!(v, v0, "{dtype:?}");
        assert_eq!(g, g0, "{dtype:?}");
    }
}

#[test]
fn half_precision_logits_are_computed_in_f32() {
    let arrays = load_case("sparse");
    let labels = &arrays["labels"];
    let logits16 = arrays["logits"].to_dtype(DType::BF16).unwrap();
    let loss = DiceLoss::default();
    let var = candle_core::Var::from_tensor(&logits16).unwrap();
    let value = loss.forward(var.as_tensor(), labels).unwrap();
    assert_eq!(value.dtype(), DType::F32);
    let grad = value
        .backward()
        .unwrap()
        .get(var.as_tensor())
        .unwrap()
        .clone();
    assert_eq!(grad.dtype(), DType::BF16);
    let (v32, _) = value_and_grad(&loss, &logits16.to_dtype(DType::F32).unwrap(), labels);
    assert!(rel(value.to_scalar::<f32>().unwrap() as f64, v32) < 1e-6);
}

/// The error message of a failed loss evaluation (a `LossError` wrapped in a candle error).
fn error_text(r: candle_core::Result<Tensor>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn bad_labels_and_shapes_are_clear_errors() {
    let dev = Device::Cpu;
    let logits = Tensor::zeros((1, 2, 3, 3, 3), DType::F32, &dev).unwrap();
    let mut y = vec![0f32; 27];
    y[5] = 2.0;
    let labels = Tensor::from_vec(y.clone(), (1, 1, 3, 3, 3), &dev).unwrap();
    let e = error_text(DiceLoss::default().forward(&logits, &labels));
    assert!(
        e.contains(
            &LossError::Label {
                value: "2".into(),
                index: 5,
                classes: 2
            }
            .to_string()
        ),
        "{e}"
    );
    y[5] = 0.5;
    let labels = Tensor::from_vec(y, (1, 1, 3, 3, 3), &dev).unwrap();
    let e = error_text(L1Dfl::default().forward(&logits, &labels));
    assert!(e.contains("label value 0.5 at flat index 5"), "{e}");
    let labels = Tensor::zeros((1, 1, 3, 3, 2), DType::U8, &dev).unwrap();
    let e = error_text(DiceLoss::default().forward(&logits, &labels));
    assert!(
        e.contains("bad labels shape [1, 1, 3, 3, 2]") && e.contains("[1, 1, 3, 3, 3]"),
        "{e}"
    );
    let one_class = Tensor::zeros((1, 1, 3, 3, 3), DType::F32, &dev).unwrap();
    let e = error_text(DiceLoss::default().forward(&one_class, &labels));
    assert!(e.contains("bad logits shape [1, 1, 3, 3, 3]"), "{e}");
    let bad = L1Dfl {
        epsilon: 0.03,
        gamma: 2.0,
    };
    let e = error_text(bad.forward(
        &logits,
        &Tensor::zeros((1, 1, 3, 3, 3), DType::U8, &dev).unwrap(),
    ));
    assert!(e.contains("`epsilon` = 0.03"), "{e}");
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    // 2 × 24³ voxels: several work chunks per image
    let dev = Device::Cpu;
    let n = 2 * 2 * 24 * 24 * 24;
    let values: Vec<f32> = (0..n).map(|i| 3.0 * (i as f32 * 0.618).sin()).collect(); // deterministic
    let logits = Tensor::from_vec(values, (2, 2, 24, 24, 24), &dev).unwrap();
    let labels = logits.narrow(1, 1, 1).unwrap().gt(1.5).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| value_and_grad(&petseg_losses::DiceFocalLoss::default(), &logits, &labels))
    };
    let (v1, g1) = run(1);
    let (v3, g3) = run(3);
    assert_eq!(v1.to_bits(), v3.to_bits());
    assert_eq!(g1, g3);
}
