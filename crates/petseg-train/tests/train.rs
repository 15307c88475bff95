//! Training loop behaviour: exact resume, NaN handling, logs, checkpoints.

mod common;

use common::{sphere_case, tiny_config};
use petseg_train::checkpoint::read_state;
use petseg_train::trainer::{files, train_on, Progress, TrainOptions};
use petseg_train::TrainError;

fn quiet() -> TrainOptions {
    TrainOptions {
        progress: Progress::Quiet,
        ..Default::default()
    }
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_run() {
    let train: Vec<_> = (0..3).map(|i| sphere_case(i, false)).collect();
    let val = vec![sphere_case(5, false)];
    let tmp = tempfile::tempdir().unwrap();
    let a = tiny_config(&tmp.path().join("a"), 3);
    let sa = train_on(&a, &train, &val, &quiet()).unwrap();
    assert_eq!(sa.global_step, 6);
    assert!(sa.best.is_some());

    let b = tiny_config(&tmp.path().join("b"), 3);
    // Stop mid-epoch 1 (after global step 3 of 2 per epoch), as if killed.
    let stop = TrainOptions {
        stop_after_steps: Some(3),
        ..quiet()
    };
    match train_on(&b, &train, &val, &stop) {
        Err(TrainError::Stopped(3)) => {}
        other => panic!("expected a stop after step 3, got {other:?}"),
    }
    let st = read_state(&b.run_dir.join(files::CHECKPOINT)).unwrap();
    assert_eq!((st.epoch, st.step_in_epoch, st.global_step), (1, 1, 3));
    let resume = TrainOptions {
        resume: true,
        ..quiet()
    };
    let sb = train_on(&b, &train, &val, &resume).unwrap();
    assert_eq!(sb.global_step, 6);
    for f in [files::MODEL_LAST, files::MODEL_BEST] {
        let wa = std::fs::read(a.run_dir.join(f)).unwrap();
        let wb = std::fs::read(b.run_dir.join(f)).unwrap();
        assert!(
            wa == wb,
            "{f} differs between the resumed and the uninterrupted run"
        );
    }
    assert_eq!(sa.best, sb.best);
    // The log of the resumed run has each epoch exactly once, same losses.
    let la = std::fs::read_to_string(a.run_dir.join(files::LOG_JSONL)).unwrap();
    let lb = std::fs::read_to_string(b.run_dir.join(files::LOG_JSONL)).unwrap();
    let strip = |s: &str| -> Vec<(usize, String, Option<String>)> {
        s.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["epoch"].as_u64().unwrap() as usize,
                    v["train_loss"].to_string(),
                    v["val_dsc"].as_f64().map(|d| d.to_string()),
                )
            })
            .collect()
    };
    assert_eq!(strip(&la), strip(&lb));
    assert_eq!(strip(&la).len(), 3);
    // Config saved in the run folder.
    let saved = std::fs::read_to_string(a.run_dir.join(files::CONFIG)).unwrap();
    assert!(saved.contains("l1dfl"));
}

#[test]
fn nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint() {
    // An absurd learning rate drives the weights to overflow within a few
    // steps, and the loss becomes NaN.
    let train: Vec<_> = (0..2).map(|i| sphere_case(i, false)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(&tmp.path().join("run"), 3);
    cfg.optimizer.lr = 1e38;
    cfg.validation.every_epochs = 0;
    let err = train_on(&cfg, &train, &[], &quiet()).unwrap_err();
    let msg = err.to_string();
    let TrainError::NonFiniteLoss { step, .. } = err else {
        panic!("expected a non-finite loss error, got {msg}");
    };
    assert!(
        msg.contains("not finite") && msg.contains("last good checkpoint"),
        "{msg}"
    );
    // The checkpoint on disk is the last good step's, and it loads.
    let st = read_state(&cfg.run_dir.join(files::CHECKPOINT)).unwrap();
    assert!(
        st.global_step <= step && st.global_step >= 1,
        "{} vs {step}",
        st.global_step
    );
    let varmap = candle_nn::VarMap::new();
    cfg.model
        .build_seeded(&varmap, 0, &candle_core::Device::Cpu)
        .unwrap();
    petseg_train::checkpoint::load_checkpoint(&cfg.run_dir.join(files::CHECKPOINT), &varmap)
        .unwrap();
}

#[test]
fn empty_training_set_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(&tmp.path().join("run"), 1);
    let err = train_on(&cfg, &[], &[], &quiet()).unwrap_err();
    assert!(err.to_string().contains("training set is empty"), "{err}");
}

#[test]
fn training_reduces_the_loss() {
    let train: Vec<_> = (0..4).map(|i| sphere_case(i, false)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(&tmp.path().join("run"), 8);
    cfg.validation.every_epochs = 0;
    cfg.checkpoint_every_steps = None;
    let s = train_on(&cfg, &train, &[], &quiet()).unwrap();
    let first = s.epochs[0].train_loss;
    let last = s.epochs.last().unwrap().train_loss;
    assert!(last < first, "loss did not decrease: {first} -> {last}");
}
