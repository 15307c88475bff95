//! Our AdamW against torch.optim.AdamW (fixture from scripts/make_adamw_fixture.py).

use candle_core::{Device, Tensor, Var};
use petseg_train::optim::{AdamW, AdamWConfig};

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn matches_torch_adamw_including_lr_change() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/adamw.json");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dev = Device::Cpu;
    let a = Var::from_tensor(&Tensor::from_vec(floats(&fx["init"]["a"]), (3, 4), &dev).unwrap())
        .unwrap();
    let b =
        Var::from_tensor(&Tensor::from_vec(floats(&fx["init"]["b"]), 5, &dev).unwrap()).unwrap();
    let cfg = AdamWConfig {
        lr: fx["lr"].as_f64().unwrap(),
        weight_decay: fx["weight_decay"].as_f64().unwrap(),
        ..Default::default()
    };
    let mut opt = AdamW::new(
        [("a".to_string(), a.clone()), ("b".to_string(), b.clone())],
        cfg,
    )
    .unwrap();
    for step in fx["steps"].as_array().unwrap() {
        opt.set_learning_rate(step["lr"].as_f64().unwrap());
        // Build a GradStore through a linear function whose gradient is the fixture's.
        let ga = Tensor::from_vec(floats(&step["grad_a"]), (3, 4), &dev).unwrap();
        let gb = Tensor::from_vec(floats(&step["grad_b"]), 5, &dev).unwrap();
        let loss = ((a.as_tensor() * &ga).unwrap().sum_all().unwrap()
            + (b.as_tensor() * &gb).unwrap().sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads).unwrap();
        let close = |got: Vec<f32>, want: Vec<f32>, what: &str| {
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "{what}: {g} vs {w}"
                );
            }
        };
        close(
            a.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            floats(&step["a"]),
            "a",
        );
        close(b.as_tensor().to_vec1().unwrap(), floats(&step["b"]), "b");
        close(
            opt.state()["a"].exp_avg.clone(),
            floats(&step["exp_avg_a"]),
            "exp_avg a",
        );
        close(
            opt.state()["b"].exp_avg_sq.clone(),
            floats(&step["exp_avg_sq_b"]),
            "exp_avg_sq b",
        );
    }
}
