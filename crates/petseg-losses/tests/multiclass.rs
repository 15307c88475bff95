//! More than two classes (the kernel's general-C path; the fixtures are two-class): values
//! against a plain f64 implementation of the formulas in this file, gradients against its
//! central finite differences (β held fixed for L1DFL, as the loss detaches it).

mod common;

use candle_core::{Device, Tensor};
use common::{grad_errors, rel, value_and_grad};
use petseg_losses::{
    BinEdges, DiceCeLoss, DiceFocalLoss, DiceLoss, FocalLoss, L1Dfl, SegLoss, L1DFL_SMOOTH,
};

/// `[B, C, S]` logits and `[B, S]` classes in f64.
struct Case {
    b: usize,
    c: usize,
    s: usize,
    x: Vec<f64>,
    t: Vec<usize>,
}

impl Case {
    /// Deterministic logits with a spread of margins; S = 5·4·3 = 60 voxels (not a multiple
    /// of the kernel's block, so the partial-block path runs too).
    fn new(b: usize, c: usize) -> Self {
        let s = 60;
        let x = (0..b * c * s)
            .map(|i| 2.5 * ((i as f64) * 0.731).sin() + 0.7 * ((i as f64) * 0.117).cos())
            .collect();
        let t = (0..b * s).map(|i| (i * 7 + i / 5) % c).collect();
        Self { b, c, s, x, t }
    }

    fn tensors(&self) -> (Tensor, Tensor) {
        let dev = Device::Cpu;
        let x: Vec<f32> = self.x.iter().map(|&v| v as f32).collect();
        let t: Vec<u8> = self.t.iter().map(|&v| v as u8).collect();
        (
            Tensor::from_vec(x, (self.b, self.c, 5, 4, 3), &dev).unwrap(),
            Tensor::from_vec(t, (self.b, 1, 5, 4, 3), &dev).unwrap(),
        )
    }

    /// Softmax over channels `from..C` of voxel `v` of image `b` (indexed by channel).
    fn softmax(&self, x: &[f64], b: usize, v: usize, from: usize) -> Vec<f64> {
        let at = |c: usize| x[(b * self.c + c) * self.s + v];
        let m = (from..self.c).map(at).fold(f64::MIN, f64::max);
        let z: f64 = (from..self.c).map(|c| (at(c) - m).exp()).sum();
        (0..self.c)
            .map(|c| if c < from { 0.0 } else { (at(c) - m).exp() / z })
            .collect()
    }

    fn y(&self, b: usize, v: usize, c: usize) -> f64 {
        f64::from(u8::from(self.t[b * self.s + v] == c))
    }
}

/// MONAI Dice (softmax, one-hot, smooth 1e-5), mean over B × kept channels.
fn dice(k: &Case, x: &[f64], include_background: bool) -> f64 {
    let from = usize::from(!include_background);
    let mut total = 0.0;
    for b in 0..k.b {
        let (mut i, mut p, mut y) = (vec![0.0; k.c], vec![0.0; k.c], vec![0.0; k.c]);
        for v in 0..k.s {
            let pr = k.softmax(x, b, v, 0);
            for c in 0..k.c {
                i[c] += pr[c] * k.y(b, v, c);
                p[c] += pr[c];
                y[c] += k.y(b, v, c);
            }
        }
        for c in from..k.c {
            total += 1.0 - (2.0 * i[c] + 1e-5) / (p[c] + y[c] + 1e-5);
        }
    }
    total / (k.b * (k.c - from)) as f64
}

/// Softmax focal loss (γ = 2), MONAI's: softmax over the kept channels, mean over
/// B × kept channels × voxels.
fn softmax_focal(k: &Case, x: &[f64], include_background: bool) -> f64 {
    let from = usize::from(!include_background);
    let mut total = 0.0;
    for b in 0..k.b {
        for v in 0..k.s {
            let t = k.t[b * k.s + v];
            if t >= from {
                let pt = k.softmax(x, b, v, from)[t];
                total -= (1.0 - pt).powi(2) * pt.ln();
            }
        }
    }
    total / (k.b * (k.c - from) * k.s) as f64
}

/// MONAI sigmoid focal loss (γ = 2, no α) over all channels.
fn sigmoid_focal(k: &Case, x: &[f64]) -> f64 {
    let mut total = 0.0;
    for b in 0..k.b {
        for v in 0..k.s {
            for c in 0..k.c {
                let sign = 2.0 * k.y(b, v, c) - 1.0;
                let u = -sign * x[(b * k.c + c) * k.s + v];
                let q = 1.0 / (1.0 + (-u).exp());
                let softplus = u.max(0.0) + (-u.abs()).exp().ln_1p();
                total += q * q * softplus;
            }
        }
    }
    total / (k.b * k.c * k.s) as f64
}

/// Cross-entropy, mean over B × voxels.
fn ce(k: &Case, x: &[f64]) -> f64 {
    let mut total = 0.0;
    for b in 0..k.b {
        for v in 0..k.s {
            total -= k.softmax(x, b, v, 0)[k.t[b * k.s + v]].ln();
        }
    }
    total / (k.b * k.s) as f64
}

/// β of every (b, c, voxel) entry at `x` (L1DFL histogram over all entries, ε = 0.1).
fn l1_beta(k: &Case, x: &[f64]) -> Vec<f64> {
    let bins = BinEdges::new(0.1).unwrap();
    let mut g = Vec::new();
    for b in 0..k.b {
        for c in 0..k.c {
            for v in 0..k.s {
                g.push((k.softmax(x, b, v, 0)[c] as f32 - k.y(b, v, c) as f32).abs());
            }
        }
    }
    bins.beta(&g).into_iter().map(f64::from).collect()
}

/// L1DFL with the given per-entry β: 1 − mean_{b,c} (2Σβpy + s)/(Σβ(p² + y²) + s) plus the
/// softmax focal loss.
fn l1dfl(k: &Case, x: &[f64], beta: &[f64]) -> f64 {
    let mut w = 0.0;
    for b in 0..k.b {
        for c in 0..k.c {
            let (mut num, mut den) = (0.0, 0.0);
            for v in 0..k.s {
                let (p, y) = (k.softmax(x, b, v, 0)[c], k.y(b, v, c));
                let be = beta[(b * k.c + c) * k.s + v];
                num += be * p * y;
                den += be * (p * p + y * y);
            }
            w += (2.0 * num + L1DFL_SMOOTH) / (den + L1DFL_SMOOTH);
        }
    }
    1.0 - w / (k.b * k.c) as f64 + softmax_focal(k, x, true)
}

/// Central differences of `f` at every logit of `x`.
fn numeric_grad(x: &[f64], f: &dyn Fn(&[f64]) -> f64) -> Vec<f32> {
    let h = 1e-4;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + h;
            let up = f(&x);
            x[i] = x0 - h;
            let down = f(&x);
            x[i] = x0;
            ((up - down) / (2.0 * h)) as f32
        })
        .collect()
}

fn check(name: &str, k: &Case, loss: &dyn SegLoss, f: &dyn Fn(&[f64]) -> f64) {
    let (logits, labels) = k.tensors();
    let (value, grad) = value_and_grad(loss, &logits, &labels);
    // the reference at the f32-rounded logits the kernel sees
    let x32: Vec<f64> = k.x.iter().map(|&v| f64::from(v as f32)).collect();
    let reference = f(&x32);
    assert!(
        rel(value, reference) < 1e-5,
        "{name}: value {value} vs {reference}"
    );
    let (l2, max) = grad_errors(&grad, &numeric_grad(&x32, f));
    assert!(
        l2 < 1e-4 && max < 1e-4,
        "{name}: gradient errors {l2:e} {max:e}"
    );
}

#[test]
fn three_and_four_classes_match_the_formulas() {
    for (b, c) in [(1, 3), (2, 4)] {
        let k = Case::new(b, c);
        let n = format!("B={b} C={c}");
        let dice_nobg = DiceLoss {
            include_background: false,
            ..DiceLoss::default()
        };
        check(&format!("dice {n}"), &k, &DiceLoss::default(), &|x| {
            dice(&k, x, true)
        });
        check(&format!("dice no bg {n}"), &k, &dice_nobg, &|x| {
            dice(&k, x, false)
        });
        check(&format!("focal {n}"), &k, &FocalLoss::default(), &|x| {
            softmax_focal(&k, x, true)
        });
        let focal_nobg = FocalLoss {
            include_background: false,
            ..FocalLoss::default()
        };
        check(&format!("focal no bg {n}"), &k, &focal_nobg, &|x| {
            softmax_focal(&k, x, false)
        });
        check(
            &format!("dice_focal {n}"),
            &k,
            &DiceFocalLoss::default(),
            &|x| dice(&k, x, true) + sigmoid_focal(&k, x),
        );
        check(&format!("dice_ce {n}"), &k, &DiceCeLoss::default(), &|x| {
            dice(&k, x, true) + ce(&k, x)
        });
        let x32: Vec<f64> = k.x.iter().map(|&v| f64::from(v as f32)).collect();
        let beta = l1_beta(&k, &x32);
        check(&format!("l1dfl {n}"), &k, &L1Dfl::default(), &|x| {
            l1dfl(&k, x, &beta)
        });
    }
}
