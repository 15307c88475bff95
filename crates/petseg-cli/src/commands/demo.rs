//! `petseg demo`: the whole pipeline on synthetic data, end to end —
//! synthetic cohort → split → train a small SegResNet with L1DFL → predict
//! the held-out cases → evaluate → a short report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use petseg_eval::{evaluate_case, Connectivity};
use petseg_io::manifest::{Fold, Manifest, Split};
use petseg_io::nifti::{read_nifti_f32, write_nifti};
use petseg_io::phantom::{write_cohort_with, PhantomConfig, Size};
use petseg_models::Segmenter;
use petseg_train::config::RunConfig;
use petseg_train::data::read_label;
use petseg_train::predict::{predict_case, PredictConfig};
use petseg_train::trainer::{files, train, Progress, TrainOptions};
use petseg_train::{BlendMode, DeviceSpec, Precision, SlidingWindowConfig};

use super::predict::load_models;

/// Arguments of `petseg demo`.
///
/// Example (about 5 minutes on 2 cores; held-out mean DSC 0.56–0.67 with the
/// defaults, depending on the build's rounding; `crates/petseg-train/README.md`):
///   petseg demo --out petseg-demo
/// A 1-minute smoke run:
///   petseg demo --out /tmp/demo --quick
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Output folder (data/, run/, predictions/, report.md).
    #[arg(long, default_value = "petseg-demo")]
    pub out: PathBuf,
    /// Seed of the cohort, the split and the training.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Number of synthetic cases (8 are held out for testing, 2 for validation).
    #[arg(long, default_value_t = 30)]
    pub cases: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Lowest lesion SUVmax of the cohort. The demo's default (8) makes every
    /// lesion stand out of bowel, liver and spleen uptake so that a few minutes
    /// of CPU training can learn them; 3 keeps the study's full distribution
    /// (about a fifth of the lesions as faint as bowel loops), which needs far
    /// longer training.
    #[arg(long, default_value_t = 8.0)]
    pub lesion_suv_min: f64,
    /// Smallest lesion volume (ml) of the cohort (study distribution: 0.5).
    #[arg(long, default_value_t = 1.0)]
    pub lesion_volume_min_ml: f64,
    /// A tiny run (8 cases, 2 epochs) that checks the pipeline, not the accuracy.
    #[arg(long)]
    pub quick: bool,
    /// Device for training and prediction: cpu, cuda or cuda:N (CUDA needs a
    /// petseg built with --features cuda).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Network precision for training and prediction: f32 or bf16 autocast.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

/// Test cases held out of training (2 with `--quick`).
const N_TEST: usize = 8;
/// Validation cases.
const N_VAL: usize = 2;
/// Training patch edge (voxels of 4 mm).
const PATCH: usize = 32;
/// Sliding-window edge for validation and prediction. The small SegResNet's
/// GroupNorm (one channel per group at full resolution) makes its output
/// depend on the window's content, so the window is larger than the training
/// patch (crates/petseg-train/README.md, "The demo recipe").
const WINDOW: usize = 48;

/// The demo's run config. It departs from the study's recipe (lr 2e-4,
/// random affine p = 0.5, 128³ patches at 2 mm) because the demo has about
/// 2000 small optimiser steps on 2 CPU cores: lr 1e-2, no affine, batches of 2
/// patches of 32³ at 4 mm (crates/petseg-train/README.md, "The demo recipe").
fn run_config(out: &std::path::Path, seed: u64, epochs: usize, steps: usize) -> Result<RunConfig> {
    let text = format!(
        r#"
seed = {seed}
run_dir = {run_dir:?}
[data]
manifest = {manifest:?}
fold = 0
[model]
name = "segresnet"
init_filters = 8
blocks_down = [1, 2, 2]
blocks_up = [1, 1]
[loss]
name = "l1dfl"
[preprocess]
spacing_mm = [4.0, 4.0, 4.0]
[augment]
patch_size = [{PATCH}, {PATCH}, {PATCH}]
[augment.affine]
prob = 0.0
[optimizer]
lr = 1e-2
[schedule]
epochs = {epochs}
batch_size = 2
steps_per_epoch = {steps}
warmup_epochs = 1
grad_clip = 10.0
[validation]
every_epochs = 50
window = {{ roi = [{WINDOW}, {WINDOW}, {WINDOW}], overlap = 0.25, mode = "gaussian" }}
"#,
        run_dir = out.join("run").display().to_string(),
        manifest = out.join("data").join("manifest.json").display().to_string(),
    );
    let cfg: RunConfig = toml::from_str(&text).context("demo config")?;
    cfg.validate().context("demo config")?;
    Ok(cfg)
}

/// Runs `petseg demo`.
pub fn run(args: Args) -> Result<()> {
    let t_all = Instant::now();
    // Before the cohort is written: a device this build cannot use.
    let device = args.device.open()?;
    let (n_cases, n_test, epochs, steps) = if args.quick {
        (8, 2, 2, 2)
    } else {
        (args.cases.max(N_TEST + N_VAL + 2), N_TEST, args.epochs, 10)
    };
    // write_cohort_with creates the folder once the cohort config is valid.
    let data = args.out.join("data");

    eprintln!(
        "[1/5] writing {n_cases} synthetic PSMA PET/CT cases to {}",
        data.display()
    );
    let mut cohort = PhantomConfig::new(Size::Small);
    cohort.lesion_suv_max_range.0 = args.lesion_suv_min;
    cohort.lesion_volume_range_ml.0 = args.lesion_volume_min_ml;
    let mut manifest = write_cohort_with(&data, &cohort, n_cases, args.seed, |c| {
        eprintln!("  {} ({} lesions, {:.1} s)", c.id, c.n_lesions, c.seconds)
    })
    .context("writing the synthetic cohort")?;

    eprintln!(
        "[2/5] split by patient: ~{n_test} test, ~{N_VAL} validation cases, the rest training"
    );
    // Whole patients go to one partition (a patient may have several scans).
    let mut patients: Vec<Vec<String>> = manifest
        .patients()
        .into_values()
        .map(|ids| ids.into_iter().map(String::from).collect())
        .collect();
    let mut take = |n: usize| -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            match patients.pop() {
                Some(ids) => out.extend(ids),
                None => break,
            }
        }
        out
    };
    let test = take(n_test);
    let val_ids = take(N_VAL);
    let train_ids: Vec<String> = patients.into_iter().flatten().collect();
    anyhow::ensure!(
        !train_ids.is_empty(),
        "{n_cases} cases leave no training patient; use more --cases"
    );
    manifest.split = Some(Split {
        seed: args.seed,
        test: test.clone(),
        folds: vec![Fold {
            train: train_ids,
            val: val_ids,
        }],
    });
    let mpath = data.join("manifest.json");
    manifest
        .save(&mpath)
        .with_context(|| format!("writing {}", mpath.display()))?;

    eprintln!("[3/5] training a small SegResNet with L1DFL ({epochs} epochs × {steps} steps)");
    let mut cfg = run_config(&args.out, args.seed, epochs, steps)?;
    cfg.device = args.device;
    cfg.precision = args.precision;
    let t_train = Instant::now();
    let summary = train(
        &cfg,
        &TrainOptions {
            progress: Progress::Auto,
            ..Default::default()
        },
    )
    .context("training")?;
    let train_s = t_train.elapsed().as_secs_f64();

    eprintln!("[4/5] predicting the {} held-out cases", test.len());
    // The final weights, not the best-validation ones: with two validation
    // cases the best epoch is noise.
    let weights = cfg.run_dir.join(files::MODEL_LAST);
    let models = load_models(&cfg.model, cfg.preprocess, &[weights], &device)?;
    let nets: Vec<&dyn Segmenter> = models.nets.iter().map(|n| n.as_ref()).collect();
    let pc = PredictConfig {
        window: SlidingWindowConfig {
            roi: [WINDOW; 3],
            overlap: 0.25,
            mode: BlendMode::Gaussian,
            ..Default::default()
        },
        // Flip TTA: the mean of the 8 flipped predictions steadies the small network.
        tta: true,
        precision: args.precision,
        ..Default::default()
    };
    let pred_dir = args.out.join("predictions");
    std::fs::create_dir_all(&pred_dir)
        .with_context(|| format!("creating {}", pred_dir.display()))?;
    let reloaded = Manifest::load(&mpath)?;

    eprintln!("[5/5] evaluating");
    let mut rows = Vec::new();
    for id in &test {
        let c = reloaded
            .case(id)
            .context("test case missing from the manifest")?;
        let ct = read_nifti_f32(reloaded.resolve(&c.ct))?;
        let pet = read_nifti_f32(reloaded.resolve(&c.pet))?;
        let pred = predict_case(&nets, &device, &ct, &pet, &models.preprocess, &pc)
            .with_context(|| format!("predicting {id}"))?;
        write_nifti(pred_dir.join(format!("{id}.nii.gz")), &pred.mask)?;
        let label_path = c.label.as_ref().context("synthetic cases have labels")?;
        let gt = read_label(&reloaded.resolve(label_path))?;
        let ev = evaluate_case(id, &pred.mask, &gt, Some(&pet), Connectivity::Eighteen)
            .with_context(|| format!("evaluating {id}"))?;
        eprintln!("  {id}: DSC {:.3}", ev.patient.dice);
        rows.push((id.clone(), c.n_lesions.unwrap_or(0), ev.patient));
    }
    let dscs: Vec<f64> = rows
        .iter()
        .map(|r| r.2.dice)
        .filter(|d| d.is_finite())
        .collect();
    let mean = if dscs.is_empty() {
        f64::NAN
    } else {
        dscs.iter().sum::<f64>() / dscs.len() as f64
    };
    let total_s = t_all.elapsed().as_secs_f64();
    let mut report = String::from("# petseg demo\n\n");
    report.push_str(&format!(
        "{n_cases} synthetic cases (seed {}; lesions SUVmax ≥ {}, ≥ {} ml), SegResNet (init 8) + L1DFL, \
         {epochs} epochs × {steps} steps of 2 patches of {PATCH}³ at 4 mm, on {} in {}.\n\n",
        args.seed, args.lesion_suv_min, args.lesion_volume_min_ml, args.device, args.precision
    ));
    report.push_str("| case | GT lesions | DSC | FPV (ml) | FNV (ml) |\n|---|---|---|---|---|\n");
    for (id, n, m) in &rows {
        report.push_str(&format!(
            "| {id} | {n} | {:.3} | {:.2} | {:.2} |\n",
            m.dice, m.fpv_ml, m.fnv_ml
        ));
    }
    report.push_str(&format!(
        "\nMean DSC over held-out cases with lesions: **{mean:.3}** ({} cases).\n",
        dscs.len()
    ));
    if let Some(last) = summary.epochs.iter().rev().find_map(|e| e.val_dsc) {
        report.push_str(&format!(
            "Validation mean DSC of the final weights {last:.3}; predictions use the final weights with flip TTA.\n"
        ));
    }
    report.push_str(&format!("Training {train_s:.0} s, total {total_s:.0} s.\n"));
    let rpath = args.out.join("report.md");
    std::fs::write(&rpath, &report).with_context(|| format!("writing {}", rpath.display()))?;
    println!("{report}");
    eprintln!("report: {}", rpath.display());
    Ok(())
}
