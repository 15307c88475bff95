//! A checkpoint interrupted mid-write is never left corrupt.
//!
//! A child process (this test binary, re-run on the ignored test
//! `child_writes_checkpoints_until_killed`) writes a large checkpoint over
//! and over, each generation's tensor values equal to its step counter; the
//! parent SIGKILLs it at varying moments. After every kill the checkpoint
//! must load, and its tensor must agree with its own metadata (no mix of
//! two generations, no truncation). The test also requires that some kills
//! really landed inside a write (a temporary file was left behind), and that
//! the trainer's start-up clean-up removes those temporaries.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use candle_core::{DType, Device};
use candle_nn::{Init, VarMap};
use petseg_train::checkpoint::{
    load_checkpoint, remove_stale_temporaries, save_checkpoint, TrainState,
};
use petseg_train::optim::Moments;

/// Where the child writes; set only in the child's environment.
const CHILD_DIR_VAR: &str = "PETSEG_TEST_CHECKPOINT_KILL_DIR";
const CHILD_TEST: &str = "child_writes_checkpoints_until_killed";
/// 8 Mi floats: a ~100 MB checkpoint (weights + two moments), so that a
/// write takes long enough to be interrupted.
const N: usize = 8 << 20;

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint_last.safetensors")
}

/// A `VarMap` holding one variable `w` of `N` values, all `value`.
fn varmap_filled(value: f64) -> VarMap {
    let varmap = VarMap::new();
    varmap
        .get(N, "w", Init::Const(value), DType::F32, &Device::Cpu)
        .unwrap();
    varmap
}

#[test]
#[ignore = "the child process of checkpoint_killed_mid_write_is_never_corrupt"]
fn child_writes_checkpoints_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let config = common::tiny_config(&dir, 1);
    for generation in 1u64.. {
        let value = generation as f32;
        let varmap = varmap_filled(generation as f64);
        let moments = BTreeMap::from([(
            "w".to_string(),
            Moments {
                exp_avg: vec![value; N],
                exp_avg_sq: vec![value; N],
                step: generation,
            },
        )]);
        let state = TrainState {
            epoch: 0,
            step_in_epoch: 0,
            global_step: generation,
            lr: 1e-3,
            epoch_loss_sum: 0.0,
            optimizer_steps: BTreeMap::from([("w".to_string(), generation)]),
            best: None,
            config: config.clone(),
        };
        save_checkpoint(&checkpoint_path(&dir), &varmap, &moments, &state).unwrap();
        println!("saved {generation}");
    }
}

/// Loads the checkpoint and checks that weights, moments and metadata all
/// come from one generation; returns it.
fn verified_generation(dir: &Path) -> u64 {
    let varmap = varmap_filled(0.0);
    let loaded = load_checkpoint(&checkpoint_path(dir), &varmap)
        .unwrap_or_else(|e| panic!("checkpoint left corrupt by a kill: {e}"));
    let generation = loaded.state.global_step;
    let expect = generation as f32;
    let w: Vec<f32> = varmap.data().lock().unwrap()["w"]
        .as_tensor()
        .to_vec1()
        .unwrap();
    assert!(w.iter().all(|&x| x == expect), "weights mix generations");
    let m = &loaded.moments["w"];
    assert_eq!(m.step, generation);
    assert!(m.exp_avg.iter().chain(&m.exp_avg_sq).all(|&x| x == expect));
    generation
}

fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains(".tmp-")
        })
        .count()
}

#[test]
fn checkpoint_killed_mid_write_is_never_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exe = std::env::current_exe().unwrap();
    let mut kills_mid_write = 0;
    let mut last_generation = 0;
    for attempt in 0..40u64 {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", CHILD_TEST, "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_DIR_VAR, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for a first complete checkpoint, then kill at a moment that
        // varies from attempt to attempt.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let saved = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("saved ")));
        assert!(saved.is_some(), "the child wrote no checkpoint");
        std::thread::sleep(Duration::from_millis(attempt * 37 % 400));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        drop(lines);

        let generation = verified_generation(dir);
        assert!(generation >= 1);
        last_generation = last_generation.max(generation);
        let left = temporaries(dir);
        if left > 0 {
            kills_mid_write += 1;
            assert_eq!(remove_stale_temporaries(dir).unwrap(), left);
            assert_eq!(temporaries(dir), 0);
            assert_eq!(verified_generation(dir), generation);
        }
        if kills_mid_write >= 2 && attempt >= 3 {
            break;
        }
    }
    assert!(
        kills_mid_write > 0,
        "no kill landed inside a checkpoint write, so the test proved nothing"
    );
    assert!(last_generation >= 1);
}

#[test]
fn stale_temporary_detection_leaves_other_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for name in [
        ".checkpoint_last.safetensors.tmp-123",
        ".log.csv.tmp-9",
        "model_best.safetensors",
        "notes.tmp-1",
        ".config.toml.tmp-abc",
    ] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    assert_eq!(remove_stale_temporaries(dir).unwrap(), 2);
    let mut left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".config.toml.tmp-abc",
            "model_best.safetensors",
            "notes.tmp-1"
        ]
    );
    assert_eq!(remove_stale_temporaries(&dir.join("missing")).unwrap(), 0);
}
