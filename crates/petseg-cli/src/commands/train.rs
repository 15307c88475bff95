//! `petseg train`: train a network from a run config (TOML), or resume one.

use std::path::PathBuf;

use anyhow::{Context, Result};
use petseg_train::config::RunConfig;
use petseg_train::trainer::{files, train, Progress, TrainOptions};
use petseg_train::{DeviceSpec, Precision};

/// Arguments of `petseg train`.
///
/// Every option of the run config can be set on the command line with
/// `--set section.field=value` (TOML syntax for the value), and the most
/// common ones have their own flags. The resolved config is saved as
/// `RUN_DIR/config.toml`.
///
/// Example:
///   petseg train --config run.toml --epochs 300 --set augment.patch_size=[96,96,96]
///   petseg train --run-dir runs/l1dfl --resume
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The run config (TOML). Optional with --resume.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in the run folder from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Run folder (overrides `run_dir`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Dataset manifest (overrides `data.manifest`).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Fold of the manifest's split (overrides `data.fold`).
    #[arg(long)]
    pub fold: Option<usize>,
    /// Seed (overrides `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Network name: segresnet or attention_unet (overrides `model.name`).
    #[arg(long)]
    pub model: Option<String>,
    /// Loss name: l1dfl, dice, dice_focal, dice_ce, focal (overrides `loss.name`).
    #[arg(long)]
    pub loss: Option<String>,
    /// Epochs (overrides `schedule.epochs`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size (overrides `schedule.batch_size`).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (overrides `optimizer.lr`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Cubic patch size in voxels (overrides `augment.patch_size`).
    #[arg(long)]
    pub patch_size: Option<usize>,
    /// Validate every N epochs (overrides `validation.every_epochs`).
    #[arg(long)]
    pub val_every: Option<usize>,
    /// Any option as `section.field=value` (TOML value), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Stop after this many optimiser steps (time-boxed runs; resume later).
    #[arg(long)]
    pub stop_after_steps: Option<u64>,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Device: cpu, cuda or cuda:N (overrides `device`; CUDA needs a petseg
    /// built with --features cuda). With --resume, continue on this device.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Precision: f32 or bf16 autocast (overrides `precision`; a resumed run
    /// keeps its own).
    #[arg(long, conflicts_with = "resume")]
    pub precision: Option<Precision>,
}

/// Sets `path` (dotted) in a TOML table, creating tables on the way.
pub fn set_path(root: &mut toml::Table, path: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts
        .pop()
        .filter(|s| !s.is_empty())
        .with_context(|| format!("empty key in {path:?}"))?;
    let mut t = root;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("{path}: {p} is not a table"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// Parses a `--set` value as TOML, falling back to a string.
fn parse_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Builds the run config from the file, the flags and `--set` overrides.
pub fn resolve(args: &Args) -> Result<RunConfig> {
    let mut root: toml::Table = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => toml::Table::new(),
    };
    for (key, default) in [("model.name", "segresnet"), ("loss.name", "l1dfl")] {
        let (section, _) = key.split_once('.').expect("dotted");
        if !root.contains_key(section) {
            set_path(&mut root, key, toml::Value::String(default.into()))?;
        }
    }
    let mut flag = |key: &str, v: Option<toml::Value>| -> Result<()> {
        match v {
            Some(v) => set_path(&mut root, key, v),
            None => Ok(()),
        }
    };
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| toml::Value::String(p.display().to_string()))
    };
    flag("run_dir", path(&args.run_dir))?;
    flag("data.manifest", path(&args.manifest))?;
    flag(
        "data.fold",
        args.fold.map(|v| toml::Value::Integer(v as i64)),
    )?;
    flag("seed", args.seed.map(|v| toml::Value::Integer(v as i64)))?;
    if let Some(m) = &args.model {
        // A new network name starts from that network's defaults.
        set_path(
            &mut root,
            "model",
            toml::Value::Table(toml::Table::from_iter([(
                "name".to_string(),
                toml::Value::String(m.clone()),
            )])),
        )?;
    }
    if let Some(l) = &args.loss {
        set_path(
            &mut root,
            "loss",
            toml::Value::Table(toml::Table::from_iter([(
                "name".to_string(),
                toml::Value::String(l.clone()),
            )])),
        )?;
    }
    let mut flag = |key: &str, v: Option<toml::Value>| -> Result<()> {
        match v {
            Some(v) => set_path(&mut root, key, v),
            None => Ok(()),
        }
    };
    flag(
        "schedule.epochs",
        args.epochs.map(|v| toml::Value::Integer(v as i64)),
    )?;
    flag(
        "schedule.batch_size",
        args.batch_size.map(|v| toml::Value::Integer(v as i64)),
    )?;
    flag("optimizer.lr", args.lr.map(toml::Value::Float))?;
    flag(
        "augment.patch_size",
        args.patch_size
            .map(|p| toml::Value::Array(vec![toml::Value::Integer(p as i64); 3])),
    )?;
    flag(
        "validation.every_epochs",
        args.val_every.map(|v| toml::Value::Integer(v as i64)),
    )?;
    flag("device", args.device.map(|d| toml::Value::String(d.into())))?;
    flag(
        "precision",
        args.precision.map(|p| toml::Value::String(p.to_string())),
    )?;
    for s in &args.set {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s:?}: expected KEY=VALUE"))?;
        set_path(&mut root, k.trim(), parse_value(v.trim()))?;
    }
    let cfg: RunConfig = toml::Value::Table(root)
        .try_into()
        .context("the run config (file + flags) is not valid")?;
    cfg.validate().context("invalid run config")?;
    Ok(cfg)
}

/// Runs `petseg train`.
pub fn run(args: Args) -> Result<()> {
    let opts = TrainOptions {
        resume: args.resume,
        stop_after_steps: args.stop_after_steps,
        progress: if args.plain {
            Progress::Plain
        } else {
            Progress::Auto
        },
        device: args.device,
    };
    let cfg = if args.resume && args.config.is_none() {
        let dir = args
            .run_dir
            .clone()
            .context("--resume needs --run-dir (or --config)")?;
        let ckpt = dir.join(files::CHECKPOINT);
        let mut c = petseg_train::checkpoint::read_state(&ckpt)
            .with_context(|| format!("reading the checkpoint {}", ckpt.display()))?
            .config;
        c.run_dir = dir;
        c
    } else {
        resolve(&args)?
    };
    // A device this build cannot use fails here, before anything is written.
    opts.device.unwrap_or(cfg.device).check_compiled()?;
    eprintln!("run folder: {}", cfg.run_dir.display());
    let summary =
        train(&cfg, &opts).with_context(|| format!("training run {}", cfg.run_dir.display()))?;
    match summary.best {
        Some((d, e)) => eprintln!("best validation mean DSC {d:.4} at epoch {}", e + 1),
        None => eprintln!("no validation DSC (no labelled validation case or validation off)"),
    }
    eprintln!("weights: {}", cfg.run_dir.join(files::MODEL_LAST).display());
    Ok(())
}
