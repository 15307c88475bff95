//! Live cross-checks with the Python peers (SciPy, cc3d) on seeded random
//! and structured masks generated here. Skipped with a notice when python3,
//! scipy or numpy is missing, unless `CI` is set (then they fail).

mod common;

use petseg_eval::stats::{wilcoxon, Alternative};
use petseg_eval::{label, Connectivity};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn labelling_equals_scipy_and_cc3d_live() {
    let mut masks: Vec<([usize; 3], Vec<u8>)> = Vec::new();
    for (t, (shape, p)) in [
        ([17, 13, 11], 0.2),
        ([24, 20, 16], 0.35),
        ([9, 31, 7], 0.5),
        ([32, 32, 8], 0.28),
    ]
    .into_iter()
    .enumerate()
    {
        masks.push((shape, common::random_mask(shape, p, 100 + t as u64)));
    }
    // Structured: a diagonal lattice where only edge/corner contacts join.
    let shape = [12, 12, 12];
    let mut lattice = vec![0u8; 12 * 12 * 12];
    for k in 0..12 {
        for j in 0..12 {
            for i in 0..12 {
                if (i + j + k) % 2 == 0 && (i * j + k) % 3 != 0 {
                    lattice[i + 12 * (j + 12 * k)] = 1;
                }
            }
        }
    }
    masks.push((shape, lattice));
    let mut reqs = Vec::new();
    for (shape, mask) in &masks {
        for conn in [6u32, 18, 26] {
            reqs.push(
                json!({"op": "label", "shape": shape, "mask_hex": hex(mask), "connectivity": conn}),
            );
        }
    }
    let Some(answers) = common::python_reference(&json!({"op": "batch", "requests": reqs})) else {
        return;
    };
    let mut answers = answers.as_array().unwrap().iter();
    for (shape, mask) in &masks {
        for conn in [6u32, 18, 26] {
            let ans = answers.next().unwrap();
            let cc = label(mask, *shape, Connectivity::from_number(conn).unwrap()).unwrap();
            let want: Vec<u32> = ans["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(cc.labels(), &want[..], "shape {shape:?} conn {conn}");
            if let Some(c3) = ans.get("cc3d_labels") {
                let c3: Vec<u32> = c3
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(cc.labels(), &c3[..], "cc3d, shape {shape:?} conn {conn}");
            }
        }
    }
}

#[test]
fn wilcoxon_equals_scipy_live() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut cases = Vec::new();
    for n in [6usize, 12, 25, 49, 50, 51, 90] {
        for rounded in [false, true] {
            let x: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
            let y: Vec<f64> = x
                .iter()
                .map(|v| {
                    let d: f64 = rng.random::<f64>() * 0.4 - 0.15;
                    let d = if rounded {
                        (d * 10.0).round() / 10.0
                    } else {
                        d
                    };
                    v - d
                })
                .collect();
            for (alt, name) in [
                (Alternative::Greater, "greater"),
                (Alternative::Less, "less"),
                (Alternative::TwoSided, "two-sided"),
            ] {
                for corr in [false, true] {
                    cases.push((n, rounded, x.clone(), y.clone(), alt, name, corr));
                }
            }
        }
    }
    let reqs: Vec<_> = cases
        .iter()
        .map(|(_, _, x, y, _, name, corr)| json!({"op": "wilcoxon", "x": x, "y": y, "alternative": name, "correction": corr}))
        .collect();
    let Some(answers) = common::python_reference(&json!({"op": "batch", "requests": reqs})) else {
        return;
    };
    for ((n, rounded, x, y, alt, name, corr), ans) in cases.iter().zip(answers.as_array().unwrap())
    {
        let r = wilcoxon(x, y, *alt, *corr).unwrap();
        let want = ans["pvalue"].as_f64().unwrap();
        assert!(
            (r.p_value - want).abs() < 1e-9,
            "n={n} rounded={rounded} {name} corr={corr}: {} vs {want} ({:?})",
            r.p_value,
            r.method
        );
    }
}
