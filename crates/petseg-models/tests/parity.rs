//! Output and first-training-step parity with MONAI 1.6.1 on small networks
//! (fixtures from `scripts/make_fixtures.py`).

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use petseg_models::{weights, AttentionUnetConfig, ModelConfig, SegResNetConfig, Segmenter};

use common::{fixture, load_fixture, max_abs, max_abs_diff};

fn small_segresnet() -> ModelConfig {
    ModelConfig::SegResNet(SegResNetConfig {
        init_filters: 4,
        blocks_down: vec![1, 2, 1],
        blocks_up: vec![1, 1],
        norm_groups: 2,
        ..Default::default()
    })
}

fn small_attention_unet() -> ModelConfig {
    ModelConfig::AttentionUnet(AttentionUnetConfig {
        channels: vec![4, 8, 16],
        strides: vec![2, 2],
        ..Default::default()
    })
}

fn build_and_load(cfg: &ModelConfig, file: &str) -> (VarMap, Box<dyn Segmenter>) {
    let varmap = VarMap::new();
    let net = cfg.build_seeded(&varmap, 1, &Device::Cpu).unwrap();
    weights::load_weights(&varmap, &fixture(file)).unwrap();
    (varmap, net)
}

/// The loss of `make_fixtures.py`: `mean(softmax(y, 1)[:, 1] · (x[:, 0] > 0))`.
fn loss(y: &Tensor, x: &Tensor) -> Tensor {
    let p = candle_nn::ops::softmax(y, 1)
        .unwrap()
        .narrow(1, 1, 1)
        .unwrap();
    let m = x
        .narrow(1, 0, 1)
        .unwrap()
        .gt(0.0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    (p * m).unwrap().mean_all().unwrap()
}

fn check_eval(cfg: &ModelConfig, name: &str) {
    let reference = load_fixture("reference.safetensors");
    let (_, net) = build_and_load(cfg, &format!("{name}_small.safetensors"));
    let x = &reference["input"];
    let y = net.forward_t(x, false).unwrap();
    let expected = &reference[&format!("{name}.eval_output")];
    let diff = max_abs_diff(&y, expected);
    assert!(
        diff < 1e-4,
        "{name}: eval output differs from MONAI by {diff} (output scale {})",
        max_abs(expected)
    );
}

fn check_train_step(cfg: &ModelConfig, name: &str) {
    let reference = load_fixture("reference.safetensors");
    let (varmap, net) = build_and_load(cfg, &format!("{name}_small.safetensors"));
    let x = &reference["input"];
    let l = loss(&net.forward_t(x, true).unwrap(), x);
    let expected = reference[&format!("{name}.train_loss")]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0];
    let got = l.to_scalar::<f32>().unwrap();
    assert!(
        ((got - expected) / expected).abs() < 1e-5,
        "{name}: loss {got} vs MONAI {expected}"
    );
    let grads = l.backward().unwrap();
    let vars = varmap.data().lock().unwrap();
    let prefix = format!("{name}.grad.");
    let mut checked = 0;
    for (key, expected) in reference.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        let param = &key[prefix.len()..];
        let var = vars
            .get(param)
            .unwrap_or_else(|| panic!("{param} not in the network"));
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {param}"));
        let (diff, scale) = (max_abs_diff(g, expected), max_abs(expected));
        assert!(
            scale > 0.0,
            "{param}: MONAI gradient is zero, the check would be empty"
        );
        assert!(
            diff <= 1e-4 * scale,
            "{name}: gradient of {param} differs by {diff} (scale {scale})"
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "{name}: only {checked} gradients in the fixture"
    );
    // Running statistics after the train-mode forward (momentum 0.1, unbiased variance).
    let prefix = format!("{name}.after_train.");
    for (key, expected) in reference.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        let buffer = &key[prefix.len()..];
        let diff = max_abs_diff(vars[buffer].as_tensor(), expected);
        assert!(
            diff < 1e-5,
            "{name}: {buffer} after the train step differs by {diff}"
        );
    }
}

#[test]
fn segresnet_eval_output_matches_monai() {
    check_eval(&small_segresnet(), "segresnet");
}

#[test]
fn attention_unet_eval_output_matches_monai() {
    check_eval(&small_attention_unet(), "attention_unet");
}

#[test]
fn segresnet_train_step_matches_monai() {
    check_train_step(&small_segresnet(), "segresnet");
}

#[test]
fn attention_unet_train_step_matches_monai() {
    check_train_step(&small_attention_unet(), "attention_unet");
    let reference = load_fixture("reference.safetensors");
    assert!(
        reference
            .keys()
            .any(|k| k.starts_with("attention_unet.after_train.")),
        "fixture has running stats"
    );
}

/// The `.pt` checkpoint (`{"state_dict": {"module." + key: …}, "epoch": 3}`, zip format)
/// loads to the same weights as the safetensors file.
#[test]
fn wrapped_ddp_pt_checkpoint_loads_like_safetensors() {
    let cfg = small_attention_unet();
    let (a, _) = build_and_load(&cfg, "attention_unet_small.safetensors");
    let b = VarMap::new();
    cfg.build_seeded(&b, 2, &Device::Cpu).unwrap();
    let summary = weights::load_weights(&b, &fixture("attention_unet_small_ddp.pt")).unwrap();
    assert_eq!(summary.wrapper_key, Some("state_dict"));
    assert_eq!(summary.stripped_prefixes, vec!["module."]);
    assert_eq!(
        summary.ignored.len(),
        14,
        "one num_batches_tracked per BatchNorm"
    );
    assert_eq!(summary.loaded, a.data().lock().unwrap().len());
    let (a, b) = (a.data().lock().unwrap(), b.data().lock().unwrap());
    for (k, v) in a.iter() {
        assert_eq!(max_abs_diff(v.as_tensor(), b[k].as_tensor()), 0.0, "{k}");
    }
}

/// Eval mode is deterministic and does not touch the running statistics; train mode
/// updates them.
#[test]
fn eval_mode_leaves_running_stats_alone() {
    let cfg = small_attention_unet();
    let (varmap, net) = build_and_load(&cfg, "attention_unet_small.safetensors");
    let x = &load_fixture("reference.safetensors")["input"];
    let key = "model.0.conv.0.adn.N.running_mean";
    let before = varmap.data().lock().unwrap()[key]
        .as_tensor()
        .copy()
        .unwrap();
    let y1 = net.forward_t(x, false).unwrap();
    let y2 = net.forward_t(x, false).unwrap();
    assert_eq!(max_abs_diff(&y1, &y2), 0.0);
    assert_eq!(
        max_abs_diff(&before, varmap.data().lock().unwrap()[key].as_tensor()),
        0.0
    );
    net.forward_t(x, true).unwrap();
    assert!(max_abs_diff(&before, varmap.data().lock().unwrap()[key].as_tensor()) > 0.0);
}

/// A frozen network (plain tensors, no autograd graph) gives MONAI's eval
/// output bit for bit like the `Var`-backed one, and records no graph.
fn check_frozen(cfg: &ModelConfig, name: &str) {
    let reference = load_fixture("reference.safetensors");
    let (varmap, net) = build_and_load(cfg, &format!("{name}_small.safetensors"));
    let frozen = cfg.build_frozen(&varmap, &Device::Cpu).unwrap();
    let x = &reference["input"];
    let y_var = net.forward_t(x, false).unwrap();
    let y_frozen = frozen.forward_t(x, false).unwrap();
    assert_eq!(max_abs_diff(&y_var, &y_frozen), 0.0, "{name}");
    let var_grads = y_var.sum_all().unwrap().backward().unwrap();
    let frozen_grads = y_frozen.sum_all().unwrap().backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let weight = data
        .iter()
        .find(|(k, _)| k.ends_with("weight"))
        .map(|(_, v)| v.as_tensor())
        .unwrap();
    assert!(
        var_grads.get(weight).is_some(),
        "{name}: the Var net tracks"
    );
    assert!(
        frozen_grads.get(weight).is_none(),
        "{name}: frozen net tracked a weight"
    );
}

#[test]
fn frozen_networks_match_and_record_no_graph() {
    check_frozen(&small_segresnet(), "segresnet");
    check_frozen(&small_attention_unet(), "attention_unet");
}
