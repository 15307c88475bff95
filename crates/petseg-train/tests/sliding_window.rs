//! Sliding-window inference against MONAI 1.6.1 `sliding_window_inference`
//! (fixtures from scripts/make_sw_fixtures.py): constant and Gaussian
//! blending, overlap 0.25 and 0.5, sw batch 1–3, and volumes smaller than the roi.

use std::path::PathBuf;

use petseg_train::{sliding_window_inference, BlendMode, SlidingWindowConfig};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sliding_window")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture_dir().join(name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn mat(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// The fixture's predictor, in f64 like the Python one.
fn predictor(w: &[Vec<f64>], b: &[f64], m: &[Vec<f64>], x: &[f32], n: usize) -> Vec<f32> {
    let per = x.len() / n / 2;
    let mut out = vec![0f32; x.len()];
    for s in 0..n {
        let ch = |c: usize| &x[(s * 2 + c) * per..(s * 2 + c + 1) * per];
        let means: Vec<f64> = (0..2)
            .map(|c| ch(c).iter().map(|&v| v as f64).sum::<f64>() / per as f64)
            .collect();
        for k in 0..2 {
            let bias = b[k] + m[k][0] * means[0] + m[k][1] * means[1];
            for v in 0..per {
                let z = w[k][0] * ch(0)[v] as f64 + w[k][1] * ch(1)[v] as f64 + bias;
                out[(s * 2 + k) * per + v] = (1.0 / (1.0 + (-z).exp())) as f32;
            }
        }
    }
    out
}

#[test]
fn matches_monai_sliding_window_inference() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("cases.json")).unwrap())
            .unwrap();
    let (w, m) = (mat(&meta["W"]), mat(&meta["M"]));
    let b: Vec<f64> = meta["B"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let cases = meta["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    let mut modes = std::collections::BTreeSet::new();
    for case in cases {
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let roi: Vec<usize> = case["roi"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let cfg = SlidingWindowConfig {
            roi: [roi[0], roi[1], roi[2]],
            overlap: case["overlap"].as_f64().unwrap(),
            mode: case["mode"].as_str().unwrap().parse::<BlendMode>().unwrap(),
            sigma_scale: 0.125,
            sw_batch_size: case["sw_batch_size"].as_u64().unwrap() as usize,
            cval: 0.0,
        };
        modes.insert((format!("{:?}", cfg.mode), (cfg.overlap * 100.0) as u32));
        let x = read_f32(case["input"].as_str().unwrap());
        let expect = read_f32(case["output"].as_str().unwrap());
        let got =
            sliding_window_inference(&x, 2, [shape[0], shape[1], shape[2]], 2, &cfg, |win, n| {
                Ok(predictor(&w, &b, &m, win, n))
            })
            .unwrap();
        assert_eq!(got.len(), expect.len());
        let max_diff = got
            .iter()
            .zip(&expect)
            .map(|(a, e)| (a - e).abs())
            .fold(0f32, f32::max);
        assert!(max_diff <= 1e-4, "{case}: max abs diff {max_diff}");
        // The blend must matter: a single whole-volume prediction differs.
        if shape.iter().zip(&roi).all(|(s, r)| s > r) {
            let whole = predictor(&w, &b, &m, &x, 1);
            let d = whole
                .iter()
                .zip(&expect)
                .map(|(a, e)| (a - e).abs())
                .fold(0f32, f32::max);
            assert!(d > 1e-2, "fixture is not sensitive to windowing ({d})");
        }
    }
    assert_eq!(
        modes.len(),
        4,
        "constant/gaussian × overlap 0.25/0.5 all covered"
    );
}
