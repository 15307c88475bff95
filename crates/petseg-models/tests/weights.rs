//! Seeded initialisation, safetensors save/load round trips and checkpoint errors.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use petseg_models::{weights, AttentionUnetConfig, ModelConfig, ModelError, SegResNetConfig};

use common::{fixture, max_abs, max_abs_diff};

fn tiny_attention_unet() -> ModelConfig {
    ModelConfig::AttentionUnet(AttentionUnetConfig {
        channels: vec![4, 8, 16],
        strides: vec![2, 2],
        ..Default::default()
    })
}

fn tiny_segresnet() -> ModelConfig {
    ModelConfig::SegResNet(SegResNetConfig {
        init_filters: 4,
        blocks_down: vec![1, 2, 1],
        blocks_up: vec![1, 1],
        norm_groups: 2,
        ..Default::default()
    })
}

fn values(varmap: &VarMap) -> Vec<(String, Vec<f32>)> {
    let data = varmap.data().lock().unwrap();
    let mut out: Vec<_> = data
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    for cfg in [tiny_attention_unet(), tiny_segresnet()] {
        let (a, b, c) = (VarMap::new(), VarMap::new(), VarMap::new());
        cfg.build_seeded(&a, 7, &Device::Cpu).unwrap();
        cfg.build_seeded(&b, 7, &Device::Cpu).unwrap();
        cfg.build_seeded(&c, 8, &Device::Cpu).unwrap();
        let (va, vb, vc) = (values(&a), values(&b), values(&c));
        let bits = |v: &[(String, Vec<f32>)]| -> Vec<u32> {
            v.iter()
                .flat_map(|(_, x)| x.iter().map(|f| f.to_bits()))
                .collect()
        };
        assert_eq!(bits(&va), bits(&vb));
        assert_ne!(bits(&va), bits(&vc));
        assert_eq!(va.len(), cfg.param_shapes().unwrap().len());
    }
}

/// PyTorch's default initialisers: conv weights and biases in ±1/√fan_in (transposed convs
/// use the output channels in fan_in), norm weights 1, biases 0, running var 1, PReLU 0.25.
#[test]
fn initialisation_follows_pytorch_defaults() {
    let varmap = VarMap::new();
    tiny_attention_unet()
        .build_seeded(&varmap, 3, &Device::Cpu)
        .unwrap();
    let vals: std::collections::HashMap<_, _> = values(&varmap).into_iter().collect();
    let check_uniform = |key: &str, fan_in: usize| {
        let v = &vals[key];
        let bound = 1.0 / (fan_in as f32).sqrt();
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            max <= bound && max > 0.8 * bound,
            "{key}: max |w| {max}, bound {bound}"
        );
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.1 * bound, "{key}: mean {mean}");
    };
    check_uniform("model.0.conv.0.conv.weight", 2 * 27);
    check_uniform("model.1.submodule.1.merge.conv.weight", 16 * 27);
    check_uniform("model.1.submodule.1.upconv.up.conv.weight", 8 * 27); // [16, 8, 3, 3, 3]
    let all =
        |key: &str, x: f32| assert!(vals[key].iter().all(|&v| v == x), "{key} should be all {x}");
    all("model.0.conv.0.adn.N.weight", 1.0);
    all("model.0.conv.0.adn.N.bias", 0.0);
    all("model.0.conv.0.adn.N.running_mean", 0.0);
    all("model.0.conv.0.adn.N.running_var", 1.0);
    all("model.1.merge.adn.A.weight", 0.25);
}

#[test]
fn save_then_load_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    for cfg in [tiny_attention_unet(), tiny_segresnet()] {
        let a = VarMap::new();
        cfg.build_seeded(&a, 11, &Device::Cpu).unwrap();
        weights::save_weights(&a, &path).unwrap();
        let b = VarMap::new();
        cfg.build_seeded(&b, 12, &Device::Cpu).unwrap();
        let summary = weights::load_weights(&b, &path).unwrap();
        assert_eq!((summary.wrapper_key, summary.ignored.len()), (None, 0));
        assert_eq!(values(&a), values(&b));
        // The saved keys are exactly MONAI's (minus num_batches_tracked).
        let saved = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let mut keys: Vec<_> = saved.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            cfg.param_shapes().unwrap().into_keys().collect::<Vec<_>>()
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}

#[test]
fn mismatched_checkpoint_lists_keys_and_changes_nothing() {
    // SegResNet weights into an AttentionUnet-shaped VarMap … and a shape mismatch.
    let varmap = VarMap::new();
    tiny_attention_unet()
        .build_seeded(&varmap, 5, &Device::Cpu)
        .unwrap();
    let before = values(&varmap);
    let err = weights::load_weights(&varmap, &fixture("segresnet_small.safetensors")).unwrap_err();
    let ModelError::KeyMismatch {
        missing,
        unexpected,
        mismatched,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(
        missing.contains(&"model.2.conv.weight".to_string()),
        "{err}"
    );
    assert!(
        unexpected.contains(&"convInit.conv.weight".to_string()),
        "{err}"
    );
    assert!(mismatched.is_empty());
    let msg = err.to_string();
    assert!(
        msg.contains("segresnet_small.safetensors")
            && msg.contains("missing keys")
            && msg.contains("unexpected keys"),
        "{msg}"
    );
    assert_eq!(values(&varmap), before, "nothing was loaded");

    let wide = VarMap::new();
    let cfg = ModelConfig::AttentionUnet(AttentionUnetConfig {
        channels: vec![4, 8, 16],
        strides: vec![2, 2],
        out_channels: 3,
        ..Default::default()
    });
    cfg.build_seeded(&wide, 5, &Device::Cpu).unwrap();
    let err =
        weights::load_weights(&wide, &fixture("attention_unet_small.safetensors")).unwrap_err();
    let ModelError::KeyMismatch {
        missing,
        unexpected,
        mismatched,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(missing.is_empty() && unexpected.is_empty(), "{err}");
    assert_eq!(
        mismatched[0],
        ("model.2.conv.bias".to_string(), vec![2], vec![3]),
        "{err}"
    );
    assert!(
        err.to_string().contains("checkpoint [2] vs network [3]"),
        "{err}"
    );
}

#[test]
fn unreadable_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let varmap = VarMap::new();
    tiny_segresnet()
        .build_seeded(&varmap, 5, &Device::Cpu)
        .unwrap();

    let missing = dir.path().join("absent.pt");
    let err = weights::load_weights(&varmap, &missing).unwrap_err();
    assert!(
        matches!(err, ModelError::Io { .. }) && err.to_string().contains("absent.pt"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint").unwrap();
    let err = weights::load_weights(&varmap, &garbage).unwrap_err();
    assert!(
        matches!(err, ModelError::Checkpoint { .. })
            && err.to_string().contains("garbage.safetensors"),
        "{err}"
    );

    let legacy = dir.path().join("legacy.pth");
    std::fs::write(&legacy, [0x80u8, 0x02, 0x8a, 0x0a]).unwrap();
    let err = weights::load_weights(&varmap, &legacy).unwrap_err();
    assert!(err.to_string().contains("legacy"), "{err}");
}

#[test]
fn ddp_prefix_is_stripped_from_safetensors_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ddp.safetensors");
    let a = VarMap::new();
    tiny_segresnet().build_seeded(&a, 1, &Device::Cpu).unwrap();
    let prefixed: std::collections::HashMap<String, Tensor> = a
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (format!("module._orig_mod.{k}"), v.as_tensor().clone()))
        .collect();
    candle_core::safetensors::save(&prefixed, &path).unwrap();
    let b = VarMap::new();
    tiny_segresnet().build_seeded(&b, 2, &Device::Cpu).unwrap();
    let summary = weights::load_weights(&b, &path).unwrap();
    assert_eq!(summary.stripped_prefixes, vec!["module.", "_orig_mod."]);
    assert_eq!(values(&a), values(&b));
}

#[test]
fn forward_rejects_bad_inputs() {
    let varmap = VarMap::new();
    let net = tiny_segresnet()
        .build_seeded(&varmap, 0, &Device::Cpu)
        .unwrap();
    let bad_channels = Tensor::zeros((1, 3, 8, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(net
        .forward(&bad_channels)
        .unwrap_err()
        .to_string()
        .contains("3 channels"));
    let bad_size = Tensor::zeros((1, 2, 8, 8, 6), DType::F32, &Device::Cpu).unwrap();
    assert!(net
        .forward(&bad_size)
        .unwrap_err()
        .to_string()
        .contains("multiple of 4"));
    let bad_rank = Tensor::zeros((2, 8, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(net.forward(&bad_rank).is_err());
}

/// Dropout masks follow the seed: same seed, same train-mode output; other seed, other output.
#[test]
fn dropout_is_seeded() {
    let cfg = ModelConfig::AttentionUnet(AttentionUnetConfig {
        channels: vec![4, 8],
        strides: vec![2],
        dropout: 0.3,
        ..Default::default()
    });
    let varmap = VarMap::new();
    let net = cfg.build_seeded(&varmap, 9, &Device::Cpu).unwrap();
    let x = Tensor::ones((1, 2, 8, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let y_eval = net.forward_t(&x, false).unwrap();
    assert_eq!(
        max_abs_diff(&y_eval, &net.forward_t(&x, false).unwrap()),
        0.0,
        "eval has no dropout"
    );
    net.set_dropout_seed(1);
    let a = net.forward_t(&x, true).unwrap();
    net.set_dropout_seed(1);
    let b = net.forward_t(&x, true).unwrap();
    net.set_dropout_seed(2);
    let c = net.forward_t(&x, true).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert!(max_abs_diff(&a, &c) > 1e-3 * max_abs(&a));
}
