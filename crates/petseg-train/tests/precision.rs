//! Devices and precision in training: bf16 autocast on the CPU (losses
//! close to f32, gradients to every f32 variable, f32 checkpoints that load
//! into an f32 network, exact resume), configs without the new fields, and
//! CUDA refused cleanly by a build without the `cuda` feature.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{sphere_case, tiny_config};
use petseg_models::is_buffer;
use petseg_train::checkpoint::{load_checkpoint, read_state};
use petseg_train::config::RunConfig;
use petseg_train::trainer::{files, train_on, Progress, TrainOptions, TrainSummary};
use petseg_train::{DeviceSpec, Precision, TrainError};

fn quiet() -> TrainOptions {
    TrainOptions {
        progress: Progress::Quiet,
        ..Default::default()
    }
}

/// Three one-step epochs (so each epoch's loss is one step's), validation
/// (by sliding window, in the run's precision) after the last.
fn config(dir: &Path, precision: Precision) -> RunConfig {
    let mut cfg = tiny_config(dir, 3);
    cfg.schedule.steps_per_epoch = Some(1);
    cfg.validation.every_epochs = 3;
    cfg.precision = precision;
    cfg
}

fn run(cfg: &RunConfig, opts: &TrainOptions) -> Result<TrainSummary, TrainError> {
    let train: Vec<_> = (0..3).map(|i| sphere_case(i, false)).collect();
    train_on(cfg, &train, &[sphere_case(5, false)], opts)
}

/// Every tensor of a safetensors file is f32; returns the keys.
fn f32_keys(path: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "{k} in {path:?}");
            k
        })
        .collect()
}

/// bf16 training steps give finite losses close to the f32 run's first
/// loss (same weights, same batch: the first step's loss differs only by
/// the forward pass's roundings, ~2e-3 relative for these networks, see
/// petseg-models' tests/autocast.rs; we allow 2e-2). Every trainable
/// variable receives a gradient (AdamW keeps moments for exactly those),
/// the checkpoint and weights are f32 under MONAI's keys, and they load
/// into an f32 network.
#[test]
fn bf16_training_is_close_to_f32_and_saves_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let c32 = config(&tmp.path().join("f32"), Precision::F32);
    let c16 = config(&tmp.path().join("bf16"), Precision::Bf16);
    let s32 = run(&c32, &quiet()).unwrap();
    let s16 = run(&c16, &quiet()).unwrap();
    let (l32, l16) = (s32.epochs[0].train_loss, s16.epochs[0].train_loss);
    println!(
        "losses f32 {:?} bf16 {:?}",
        s32.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
        s16.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>()
    );
    assert!(
        ((l16 - l32) / l32).abs() <= 2e-2,
        "first loss: bf16 {l16} vs f32 {l32}"
    );
    assert!(l16 != l32, "the bf16 run computed in f32");
    for e in &s16.epochs {
        assert!(e.train_loss.is_finite(), "{e:?}");
    }
    let dsc = s16.epochs.last().unwrap().val_dsc.expect("validated");
    assert!((0.0..=1.0).contains(&dsc), "{dsc}");

    let ckpt = c16.run_dir.join(files::CHECKPOINT);
    let state = read_state(&ckpt).unwrap();
    assert_eq!(state.config.precision, Precision::Bf16);
    let trainable: BTreeSet<String> = c16
        .model
        .param_shapes()
        .unwrap()
        .into_keys()
        .filter(|k| !is_buffer(k))
        .collect();
    let stepped: BTreeSet<String> = state.optimizer_steps.keys().cloned().collect();
    assert_eq!(stepped, trainable, "variables without a gradient");
    assert!(state.optimizer_steps.values().all(|&s| s == 3));
    // f32 throughout, same keys as the f32 run's files.
    assert_eq!(
        f32_keys(&ckpt),
        f32_keys(&c32.run_dir.join(files::CHECKPOINT))
    );
    let weights = f32_keys(&c16.run_dir.join(files::MODEL_LAST));
    assert_eq!(weights, f32_keys(&c32.run_dir.join(files::MODEL_LAST)));
    assert!(weights.contains("convInit.conv.weight"));

    // The bf16 run's checkpoint and weights load into an f32 network.
    let varmap = VarMap::new();
    let net = c32.model.build_seeded(&varmap, 0, &Device::Cpu).unwrap();
    load_checkpoint(&ckpt, &varmap).unwrap();
    let x = Tensor::ones((1, 2, 16, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let y = net.forward(&x).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    let fresh = VarMap::new();
    c32.model.build_seeded(&fresh, 0, &Device::Cpu).unwrap();
    petseg_models::weights::load_weights(&fresh, &c16.run_dir.join(files::MODEL_LAST)).unwrap();
    let a = varmap.data().lock().unwrap();
    let b = fresh.data().lock().unwrap();
    for (k, v) in a.iter() {
        let d: f32 = (v.as_tensor() - b[k].as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0, "{k}: checkpoint and model_last differ");
    }
}

/// A bf16 run interrupted mid-run and resumed gives the same weights as an
/// uninterrupted bf16 run (the CPU path is deterministic in bf16 too), and
/// the resumed run keeps bf16.
#[test]
fn bf16_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let a = config(&tmp.path().join("a"), Precision::Bf16);
    let b = config(&tmp.path().join("b"), Precision::Bf16);
    run(&a, &quiet()).unwrap();
    let stop = TrainOptions {
        stop_after_steps: Some(2),
        ..quiet()
    };
    assert!(matches!(run(&b, &stop), Err(TrainError::Stopped(2))));
    // The resumed run takes the checkpoint's config (bf16) whatever the
    // caller's precision says.
    let mut again = b.clone();
    again.precision = Precision::F32;
    run(
        &again,
        &TrainOptions {
            resume: true,
            ..quiet()
        },
    )
    .unwrap_err(); // train_on checks that the config matches the checkpoint's
    run(
        &b,
        &TrainOptions {
            resume: true,
            ..quiet()
        },
    )
    .unwrap();
    for f in [files::MODEL_LAST, files::MODEL_BEST] {
        let wa = std::fs::read(a.run_dir.join(f)).unwrap();
        let wb = std::fs::read(b.run_dir.join(f)).unwrap();
        assert!(wa == wb, "{f} differs between resumed and uninterrupted");
    }
}

/// Configs and checkpoints from before `device` and `precision` existed
/// still load (serde defaults: CPU, f32); the new fields parse and round
/// trip; bad values name the field.
#[test]
fn configs_without_the_new_fields_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(&tmp.path().join("run"), 1);
    assert_eq!(
        (cfg.device, cfg.precision),
        (DeviceSpec::Cpu, Precision::F32)
    );
    let toml_text = cfg.to_toml().unwrap();
    assert!(toml_text.contains("device = \"cpu\"") && toml_text.contains("precision = \"f32\""));
    // An old checkpoint's state: the config JSON without the two fields.
    let mut state = serde_json::json!({
        "epoch": 1, "step_in_epoch": 0, "global_step": 2, "lr": 0.01,
        "epoch_loss_sum": 0.0, "optimizer_steps": {}, "best": null,
        "config": serde_json::to_value(&cfg).unwrap(),
    });
    let old = state["config"].as_object_mut().unwrap();
    assert!(old.remove("device").is_some() && old.remove("precision").is_some());
    let parsed: petseg_train::checkpoint::TrainState = serde_json::from_value(state).unwrap();
    assert_eq!(parsed.config, cfg);

    let rest = toml_text
        .replace("device = \"cpu\"\n", "")
        .replace("precision = \"f32\"\n", "");
    let parsed: RunConfig = toml::from_str(&format!(
        "device = \"cuda:1\"\nprecision = \"bf16\"\n{rest}"
    ))
    .unwrap();
    assert_eq!(
        (parsed.device, parsed.precision),
        (DeviceSpec::Cuda(1), Precision::Bf16)
    );
    assert_eq!(
        toml::from_str::<RunConfig>(&parsed.to_toml().unwrap()).unwrap(),
        parsed
    );
    for (bad, value) in [
        ("precision = \"fp16\"", "fp16"),
        ("device = \"gpu0\"", "gpu0"),
    ] {
        let err = toml::from_str::<RunConfig>(&format!("{bad}\n{rest}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(value), "{err}");
    }
}

/// Without the `cuda` feature, a CUDA device (in the config or as the
/// per-invocation override) is refused before the run folder is created.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_fails_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&tmp.path().join("in-config"), Precision::F32);
    cfg.device = DeviceSpec::Cuda(0);
    let overridden = config(&tmp.path().join("override"), Precision::Bf16);
    let opts = TrainOptions {
        device: Some(DeviceSpec::Cuda(1)),
        ..quiet()
    };
    for (c, o) in [(&cfg, &quiet()), (&overridden, &opts)] {
        match run(c, o) {
            Err(TrainError::Device(msg)) => assert!(
                msg.contains("built without the `cuda` feature")
                    && msg.contains("rebuild with --features cuda"),
                "{msg}"
            ),
            other => panic!("expected a device error, got {other:?}"),
        }
        assert!(!c.run_dir.exists(), "{:?} was created", c.run_dir);
    }
}
