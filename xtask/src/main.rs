//! `cargo xtask`: project chores that are code, not shell scripts.
//!
//! * `split`: patient-grouped, scenario-stratified train/val/test splits,
//!   written into a manifest (and optionally nnU-Net's `splits_final.json`).
//! * `report`: the study's tables, figures and a self-contained HTML page
//!   from a results folder of `petseg evaluate` outputs.
//! * `sweep`: a resumable grid of train → predict → evaluate cells.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use petseg_io::manifest::Manifest;

mod report;
mod split;
mod sweep;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "petseg project chores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Split a manifest's cases by patient, stratified by lesion scenario.
    #[command(after_help = "Examples:\n  \
        cargo xtask split --manifest cohort/manifest.json --out data-manifests/phantom.json --test 4 --val 4 --seed 1\n  \
        cargo xtask split --manifest cohort/manifest.json --out data-manifests/phantom-5fold.json --folds 5 --seed 1 --nnunet nnunet/Dataset501")]
    Split(SplitArgs),
    /// Tables, figures and an HTML page from results/NAME/<network>__<loss>[__fold<k>]/patients.csv.
    #[command(
        after_help = "Example:\n  cargo xtask report --results results/smoke --out results/smoke/report"
    )]
    Report(ReportArgs),
    /// Run (or resume) a grid of train → predict → evaluate cells; `sweep status` shows it.
    #[command(after_help = "Examples:\n  \
        cargo xtask sweep --grid sweeps/smoke.toml --jobs 1\n  \
        cargo xtask sweep --grid sweeps/paper.toml --dry-run\n  \
        cargo xtask sweep --grid sweeps/paper.toml --executor slurm --poll-secs 60\n  \
        cargo xtask sweep --grid sweeps/paper.toml --executor slurm --no-follow\n  \
        cargo xtask sweep follow --grid sweeps/paper.toml\n  \
        cargo xtask sweep status --grid sweeps/smoke.toml")]
    Sweep(SweepArgs),
}

#[derive(Debug, clap::Args)]
struct SweepArgs {
    /// `status`: show the state of every cell (and, for a SLURM-run grid,
    /// its array task's scheduler state); `follow`: follow the last
    /// recorded SLURM job (or `--job`) to its end; `run-cell`: run the
    /// cell `--cell` (what each SLURM array task does).
    #[arg(value_parser = ["status", "follow", "run-cell"])]
    action: Option<String>,
    /// The cell of `run-cell`.
    #[arg(long, required_if_eq("action", "run-cell"))]
    cell: Option<String>,
    /// The grid file (sweeps/NAME.toml); writes results/NAME and runs/NAME.
    #[arg(long)]
    grid: PathBuf,
    /// Where cells run: `local`, or `slurm` (writes the job-array script
    /// RESULTS/slurm/sweep.sbatch, submits it with `sbatch`, records the
    /// job in RESULTS/slurm/jobs.json and follows it to its end; with
    /// --dry-run only writes it).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    executor: String,
    /// Cells run at the same time.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Print the commands each unfinished cell would run, run nothing.
    #[arg(long)]
    dry_run: bool,
    /// SLURM: return right after submitting instead of following the job
    /// (`sweep follow` re-attaches).
    #[arg(long, visible_alias = "detach")]
    no_follow: bool,
    /// SLURM: seconds between two `squeue` polls while following.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    poll_secs: u64,
    /// `follow`: the recorded job to follow (default: the last one).
    #[arg(long)]
    job: Option<u64>,
    /// The petseg binary (default: `target/release/petseg`, or for a grid
    /// whose cells run on CUDA the CUDA build `target-cuda/release/petseg`
    /// of `tools/cuda-check.sh`).
    #[arg(long)]
    petseg: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The results folder (one sub-folder per cell, each with patients.csv).
    #[arg(long)]
    results: PathBuf,
    /// Output folder (default: RESULTS/report); replaced atomically.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The loss tested (one-tailed, greater) against every other loss.
    #[arg(long, default_value = "l1dfl")]
    proposed: String,
}

#[derive(Debug, clap::Args)]
struct SplitArgs {
    /// The manifest to split.
    #[arg(long)]
    manifest: PathBuf,
    /// Where to write the manifest with its split.
    #[arg(long)]
    out: PathBuf,
    /// Number of test cases.
    #[arg(long, default_value_t = 0)]
    test: usize,
    /// Number of validation cases (hold-out mode; conflicts with --folds).
    #[arg(long, conflicts_with = "folds")]
    val: Option<usize>,
    /// Number of cross-validation folds.
    #[arg(long)]
    folds: Option<usize>,
    /// Seed of the shuffle.
    #[arg(long)]
    seed: u64,
    /// Case tags to stratify by as well (e.g. `--stratify-tag tracer`).
    #[arg(long = "stratify-tag")]
    stratify_tags: Vec<String>,
    /// Also write nnU-Net's `dataset.json` and `splits_final.json` here.
    #[arg(long)]
    nnunet: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Split(args) => run_split(args),
        Command::Sweep(args) => run_sweep(args),
        Command::Report(args) => {
            let out = args.out.unwrap_or_else(|| args.results.join("report"));
            for p in report::run(&args.results, &out, &args.proposed)? {
                println!("wrote {}", p.display());
            }
            Ok(())
        }
    }
}

fn run_sweep(args: SweepArgs) -> Result<()> {
    let grid = sweep::grid::Grid::load(&args.grid)?;
    let layout = sweep::Layout::for_grid(&args.grid)?;
    let petseg = args
        .petseg
        .clone()
        .unwrap_or_else(|| sweep::default_petseg(&grid));
    let exec = sweep::Local {
        petseg: petseg.clone(),
    };
    let poll = std::time::Duration::from_secs(args.poll_secs);
    match (args.action.as_deref(), &args.cell) {
        (Some("status"), _) => {
            let (column, notes) = sweep::slurm::status_column(&grid, &layout)?;
            print!("{}", sweep::status(&grid, &layout, &column));
            for n in notes {
                println!("note: {n}");
            }
            return Ok(());
        }
        (Some("follow"), _) => return sweep::slurm::follow_recorded(&layout, args.job, poll),
        (Some(_), Some(cell)) => return sweep::run_one(&grid, &layout, &exec, cell),
        _ => {}
    }
    if args.executor == "slurm" {
        let mode = if args.dry_run {
            sweep::slurm::Mode::DryRun
        } else if args.no_follow {
            sweep::slurm::Mode::Detach
        } else {
            sweep::slurm::Mode::Follow(poll)
        };
        if mode != sweep::slurm::Mode::DryRun {
            ensure_petseg(&petseg, &grid)?;
        }
        return sweep::slurm::submit(&grid, &layout, &args.grid, &petseg, mode);
    }
    if args.dry_run {
        if let Some(r) = &grid.slurm {
            println!(
                "# slurm resources (not used by the local executor): {}",
                r.sbatch_options().join(" ")
            );
        }
        for cell in grid.cells() {
            let steps = sweep::plan(&grid, &layout, &cell);
            if steps.is_empty() {
                println!("# {}: done", cell.name);
            }
            for (_, a) in steps {
                let quoted: Vec<String> = a
                    .iter()
                    .map(|w| {
                        if w.contains(' ') {
                            format!("'{w}'")
                        } else {
                            w.clone()
                        }
                    })
                    .collect();
                println!("{} {}", petseg.display(), quoted.join(" "));
            }
        }
        return Ok(());
    }
    ensure_petseg(&petseg, &grid)?;
    let failed = sweep::run(&grid, &layout, &exec, args.jobs)?;
    print!("{}", sweep::status(&grid, &layout, &Default::default()));
    anyhow::ensure!(failed.is_empty(), "cells failed: {}", failed.join(", "));
    Ok(())
}

/// The `petseg` binary a sweep runs exists (how to build it otherwise).
fn ensure_petseg(petseg: &std::path::Path, grid: &sweep::grid::Grid) -> Result<()> {
    anyhow::ensure!(
        petseg.is_file(),
        "petseg binary {} not found ({}, or --petseg PATH)",
        petseg.display(),
        sweep::build_hint(grid)
    );
    Ok(())
}

fn run_split(args: SplitArgs) -> Result<()> {
    let mut manifest = Manifest::load(&args.manifest)?;
    let plan = match (args.folds, args.val) {
        (Some(folds), _) => split::SplitPlan::KFold {
            folds,
            test: args.test,
        },
        (None, val) => split::SplitPlan::Holdout {
            test: args.test,
            val: val.unwrap_or(0),
        },
    };
    let s = split::make_split(&manifest, &plan, args.seed, &args.stratify_tags)?;
    print!("{}", split::summary(&manifest, &s));
    manifest.split = Some(s);
    if let Some(dir) = &args.nnunet {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_json(&dir.join("dataset.json"), &manifest.nnunet_dataset_json())?;
        let splits = manifest.nnunet_splits_json().expect("split was just set");
        write_json(&dir.join("splits_final.json"), &splits)?;
    }
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    manifest.save(&args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
