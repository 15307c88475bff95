//! The training loop (`docs/method/training.md`): AdamW with a per-epoch cosine schedule,
//! background batch production, validation by sliding window, best and
//! last checkpoints, per-epoch logs, exact resume.
//!
//! Batches are prepared on the CPU and moved to the run's device; the
//! network's `Var`s live there (f32 master weights); the optimiser update
//! and the loss run on the CPU in f32 (see [`crate::compute`] for bf16).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use petseg_augment::PreparedCase;
use petseg_io::manifest::Manifest;
use petseg_models::Segmenter;

use crate::checkpoint::{
    load_checkpoint, read_state, remove_stale_temporaries, save_checkpoint, save_weights,
    write_atomic, TrainState,
};
use crate::compute::DeviceSpec;
use crate::config::RunConfig;
use crate::data::{fold_ids, load_cases};
use crate::error::{Result, TrainError};
use crate::optim::{clip_grad_norm, cosine_lr, AdamW};
use crate::predict::{argmax, ensemble_probabilities, PredictConfig};
use crate::producer::{for_each_batch, Batch};

/// File names inside a run folder.
pub mod files {
    /// The resolved run config.
    pub const CONFIG: &str = "config.toml";
    /// The resumable checkpoint (weights + optimiser + state).
    pub const CHECKPOINT: &str = "checkpoint_last.safetensors";
    /// Weights after the last finished epoch.
    pub const MODEL_LAST: &str = "model_last.safetensors";
    /// Weights of the best validation epoch.
    pub const MODEL_BEST: &str = "model_best.safetensors";
    /// Per-epoch log, CSV.
    pub const LOG_CSV: &str = "log.csv";
    /// Per-epoch log, JSON lines.
    pub const LOG_JSONL: &str = "log.jsonl";
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A progress bar on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines on stderr, one per epoch.
    Plain,
    /// Nothing.
    Quiet,
}

/// Options of one invocation (not part of the run's identity).
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue the run in `run_dir` from its last checkpoint.
    pub resume: bool,
    /// Stop (as if killed) after this many global optimiser steps, with
    /// [`TrainError::Stopped`]: for tests of resume and for time-boxed runs.
    pub stop_after_steps: Option<u64>,
    /// Progress display.
    pub progress: Progress,
    /// Compute on this device instead of the config's `device` (also on
    /// resume, where the run otherwise continues on the checkpoint's
    /// device). The run config saved from then on records it.
    pub device: Option<DeviceSpec>,
}

/// One row of the per-epoch log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Learning rate used in the epoch.
    pub lr: f64,
    /// Validation mean foreground DSC, if validated this epoch.
    pub val_dsc: Option<f64>,
    /// Wall-clock seconds of the epoch (training + validation).
    pub seconds: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The per-epoch log rows of this invocation.
    pub epochs: Vec<EpochLog>,
    /// Best validation mean DSC and its epoch.
    pub best: Option<(f64, usize)>,
    /// Optimiser steps taken in total.
    pub global_step: u64,
}

/// Trains the run described by `cfg` (or resumes it), loading the cases
/// of `cfg.data` from the manifest. With `opts.resume`, the run config is
/// the checkpoint's and `cfg` only supplies the run folder (the device is
/// the checkpoint's unless `opts.device` is set).
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<TrainSummary> {
    let cfg = if opts.resume {
        let mut saved = read_state(&cfg.run_dir.join(files::CHECKPOINT))?.config;
        saved.run_dir = cfg.run_dir.clone(); // the folder may have moved
        saved
    } else {
        cfg.clone()
    };
    cfg.validate()?;
    opts.device.unwrap_or(cfg.device).check_compiled()?;
    let manifest = Manifest::load(&cfg.data.manifest)?;
    let (train_ids, val_ids) = fold_ids(&manifest, cfg.data.fold)?;
    if train_ids.is_empty() {
        return Err(TrainError::Config(format!(
            "fold {} of {} has no training case",
            cfg.data.fold,
            cfg.data.manifest.display()
        )));
    }
    let train_cases = load_cases(&manifest, &train_ids, &cfg.preprocess, true)?;
    let val_cases = load_cases(&manifest, &val_ids, &cfg.preprocess, true)?;
    train_on(&cfg, &train_cases, &val_cases, opts)
}

/// Trains on already prepared cases (what [`train`] does after loading).
pub fn train_on(
    cfg: &RunConfig,
    train_cases: &[PreparedCase],
    val_cases: &[PreparedCase],
    opts: &TrainOptions,
) -> Result<TrainSummary> {
    let mut cfg = cfg.clone();
    if let Some(d) = opts.device {
        cfg.device = d;
    }
    let cfg = &cfg;
    cfg.validate()?;
    if train_cases.is_empty() {
        return Err(TrainError::Config("the training set is empty".into()));
    }
    // Before anything is written: a device this build cannot use is an error.
    let device = cfg.device.open()?;
    if let Some(w) = cfg.precision.slow_on(&device) {
        if opts.progress != Progress::Quiet {
            eprintln!("{w}");
        }
    }
    let dir = &cfg.run_dir;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::file(dir, e))?;
    remove_stale_temporaries(dir)?;
    let varmap = VarMap::new();
    let net = cfg.model.build_seeded(&varmap, cfg.seed, &device)?;
    let vars: Vec<(String, Var)> = {
        let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let plain_vars: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(vars, cfg.optimizer)?;
    let loss_fn = cfg.loss.build()?;
    let s = &cfg.schedule;
    let steps = s
        .steps_per_epoch
        .unwrap_or(train_cases.len().div_ceil(s.batch_size));
    let mut state = if opts.resume {
        let loaded = load_checkpoint(&dir.join(files::CHECKPOINT), &varmap)?;
        let mut saved = loaded.state.config.clone();
        saved.run_dir = cfg.run_dir.clone();
        saved.device = cfg.device; // a run may continue on another device
        if saved != *cfg {
            return Err(TrainError::Config(
                "the checkpoint was written by a different run config; resume uses the checkpoint's own config".into(),
            ));
        }
        opt.load_state(loaded.moments)?;
        truncate_logs(dir, loaded.state.epoch)?;
        TrainState {
            config: cfg.clone(),
            ..loaded.state
        }
    } else {
        write_atomic(&dir.join(files::CONFIG), cfg.to_toml()?.as_bytes())?;
        truncate_logs(dir, 0)?;
        TrainState {
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            lr: cosine_lr(cfg.optimizer.lr, 0, s.epochs, s.warmup_epochs),
            epoch_loss_sum: 0.0,
            optimizer_steps: Default::default(),
            best: None,
            config: cfg.clone(),
        }
    };
    let progress = match opts.progress {
        Progress::Auto if std::io::stderr().is_terminal() => Progress::Auto,
        Progress::Auto => Progress::Plain,
        p => p,
    };
    let p = cfg.augment.patch_size;
    let mut rows = Vec::new();
    for epoch in state.epoch..s.epochs {
        let t0 = Instant::now();
        let lr = cosine_lr(cfg.optimizer.lr, epoch, s.epochs, s.warmup_epochs);
        opt.set_learning_rate(lr);
        state.lr = lr;
        let first = if epoch == state.epoch {
            state.step_in_epoch
        } else {
            0
        };
        if first == 0 {
            state.epoch_loss_sum = 0.0;
        }
        let bar = (progress == Progress::Auto).then(|| {
            let b = indicatif::ProgressBar::new(steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(format!("{}/{}", epoch + 1, s.epochs));
            b.set_position(first as u64);
            b
        });
        for_each_batch(
            train_cases,
            &cfg.augment,
            cfg.seed,
            epoch,
            (first, steps),
            s.batch_size,
            cfg.loader.queue_depth,
            |step, batch| {
                let loss = train_step(
                    net.as_ref(),
                    &*loss_fn,
                    &mut opt,
                    &plain_vars,
                    &batch,
                    p,
                    cfg,
                    &device,
                    state.global_step,
                )?;
                if !loss.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        loss,
                        epoch,
                        step: state.global_step,
                        run_dir: dir.clone(),
                    });
                }
                state.global_step += 1;
                state.epoch_loss_sum += loss as f64;
                state.step_in_epoch = step + 1;
                if let Some(b) = &bar {
                    b.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
                    b.inc(1);
                }
                if cfg
                    .checkpoint_every_steps
                    .is_some_and(|k| state.global_step % k == 0)
                    && step + 1 < steps
                {
                    state.optimizer_steps = opt
                        .state()
                        .iter()
                        .map(|(k, m)| (k.clone(), m.step))
                        .collect();
                    save_checkpoint(&dir.join(files::CHECKPOINT), &varmap, opt.state(), &state)?;
                }
                if opts
                    .stop_after_steps
                    .is_some_and(|n| state.global_step >= n)
                {
                    return Err(TrainError::Stopped(state.global_step));
                }
                Ok(())
            },
        )?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let train_loss = state.epoch_loss_sum / steps as f64;
        let v = &cfg.validation;
        let validate =
            v.every_epochs > 0 && ((epoch + 1) % v.every_epochs == 0 || epoch + 1 == s.epochs);
        let val_dsc = if validate {
            let frozen = cfg.model.build_frozen(&varmap, &device)?;
            validation_dsc(frozen.as_ref(), &device, val_cases, cfg)?
        } else {
            None
        };
        if let Some(d) = val_dsc {
            if state.best.is_none_or(|(b, _)| d > b) {
                state.best = Some((d, epoch));
                save_weights(&varmap, &dir.join(files::MODEL_BEST))?;
            }
        }
        let row = EpochLog {
            epoch,
            train_loss,
            lr,
            val_dsc,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if progress != Progress::Quiet {
            let val = val_dsc.map_or(String::new(), |d| format!(" val DSC {d:.4}"));
            eprintln!(
                "epoch {}/{} loss {:.4} lr {:.2e}{val} ({:.1} s)",
                epoch + 1,
                s.epochs,
                train_loss,
                lr,
                row.seconds
            );
        }
        append_log(dir, &row)?;
        rows.push(row);
        state.epoch = epoch + 1;
        state.step_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        state.lr = cosine_lr(cfg.optimizer.lr, epoch + 1, s.epochs, s.warmup_epochs);
        state.optimizer_steps = opt
            .state()
            .iter()
            .map(|(k, m)| (k.clone(), m.step))
            .collect();
        save_weights(&varmap, &dir.join(files::MODEL_LAST))?;
        save_checkpoint(&dir.join(files::CHECKPOINT), &varmap, opt.state(), &state)?;
    }
    Ok(TrainSummary {
        run_dir: dir.clone(),
        epochs: rows,
        best: state.best,
        global_step: state.global_step,
    })
}

/// One optimiser step; returns the loss (the step is skipped when it is
/// not finite, so the weights stay those of the last good step).
fn train_step(
    net: &dyn Segmenter,
    loss_fn: &dyn petseg_losses::SegLoss,
    opt: &mut AdamW,
    vars: &[Var],
    batch: &Batch,
    p: [usize; 3],
    cfg: &RunConfig,
    device: &Device,
    global_step: u64,
) -> Result<f32> {
    let b = batch.batch_size;
    // Autocast: the input in the run's precision (the layers cast their f32
    // parameters to it), the logits back to f32 for the loss.
    let x = Tensor::from_slice(&batch.image, (b, 2, p[0], p[1], p[2]), device)?
        .to_dtype(cfg.precision.dtype())?;
    let y = Tensor::from_slice(&batch.label, (b, 1, p[0], p[1], p[2]), device)?;
    net.set_dropout_seed(cfg.seed ^ global_step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let logits = net.forward_t(&x, true)?.to_dtype(DType::F32)?;
    let loss = loss_fn.forward(&logits, &y)?;
    let value = loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
    if !value.is_finite() {
        return Ok(value);
    }
    let mut grads = loss.backward()?;
    if let Some(c) = cfg.schedule.grad_clip {
        clip_grad_norm(vars, &mut grads, c)?;
    }
    opt.step(&grads)?;
    Ok(value)
}

/// Dice similarity `2|P∩G| / (|P| + |G|)`; `None` when `G` is empty.
pub fn dice(pred: &[u8], truth: &[u8]) -> Option<f64> {
    let (mut inter, mut p, mut g) = (0usize, 0usize, 0usize);
    for (&a, &b) in pred.iter().zip(truth) {
        let (a, b) = (a > 0, b > 0);
        inter += usize::from(a && b);
        p += usize::from(a);
        g += usize::from(b);
    }
    (g > 0).then(|| 2.0 * inter as f64 / (p + g) as f64)
}

/// Mean foreground DSC over the validation cases with a non-empty label
/// (on the network grid); `None` when there is none.
pub fn validation_dsc(
    net: &dyn Segmenter,
    device: &Device,
    cases: &[PreparedCase],
    cfg: &RunConfig,
) -> Result<Option<f64>> {
    let pc = PredictConfig {
        window: cfg.validation.window,
        precision: cfg.precision,
        ..Default::default()
    };
    let k = cfg.model.out_channels();
    let mut scores = Vec::new();
    for case in cases {
        let Some(label) = case.label() else { continue };
        if !label.iter().any(|&v| v > 0) {
            continue;
        }
        let probs = ensemble_probabilities(&[net], device, case, &pc)?;
        if let Some(d) = dice(&argmax(&probs, k), label) {
            scores.push(d);
        }
    }
    Ok((!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64))
}

fn append_log(dir: &Path, row: &EpochLog) -> Result<()> {
    use std::io::Write;
    let csv = dir.join(files::LOG_CSV);
    let new = !csv.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&csv)
        .map_err(|e| TrainError::file(&csv, e))?;
    let mut text = String::new();
    if new {
        text.push_str("epoch,train_loss,lr,val_dsc,seconds\n");
    }
    let val = row.val_dsc.map_or(String::new(), |d| format!("{d:.6}"));
    text.push_str(&format!(
        "{},{:.6},{:.6e},{val},{:.3}\n",
        row.epoch, row.train_loss, row.lr, row.seconds
    ));
    f.write_all(text.as_bytes())
        .map_err(|e| TrainError::file(&csv, e))?;
    let jsonl = dir.join(files::LOG_JSONL);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jsonl)
        .map_err(|e| TrainError::file(&jsonl, e))?;
    let line = serde_json::to_string(row).map_err(|e| TrainError::Config(e.to_string()))?;
    writeln!(f, "{line}").map_err(|e| TrainError::file(&jsonl, e))
}

/// Drops log rows of epochs ≥ `from_epoch` (a resumed run rewrites them).
fn truncate_logs(dir: &Path, from_epoch: usize) -> Result<()> {
    for (name, is_csv) in [(files::LOG_CSV, true), (files::LOG_JSONL, false)] {
        let path = dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let kept: String = text
            .lines()
            .enumerate()
            .filter(|(i, line)| {
                if is_csv && *i == 0 {
                    return true;
                }
                let epoch = if is_csv {
                    line.split(',').next().and_then(|e| e.parse::<usize>().ok())
                } else {
                    serde_json::from_str::<EpochLog>(line).ok().map(|r| r.epoch)
                };
                epoch.is_some_and(|e| e < from_epoch)
            })
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes())?;
    }
    Ok(())
}
