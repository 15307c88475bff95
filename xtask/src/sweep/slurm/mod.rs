//! The SLURM executor: submit the grid's unfinished cells as one job
//! array, record the job, and follow it to its end.
//!
//! * [`script`]: the sbatch script (one array task per unfinished cell, each
//!   running `xtask sweep run-cell`: the same markers and resume rules as
//!   the local executor), written to `results/NAME/slurm/sweep.sbatch`.
//! * [`jobs`]: `results/NAME/slurm/jobs.json`, one entry per submission
//!   (job id, log folder, the cell of each array task).
//! * [`queue`]: parsing `sbatch --parsable`, `squeue` and `sacct` output.
//! * [`follow`]: polling `squeue` until every task has ended, final states
//!   from `sacct` (else the last `squeue` listing, else the `DONE`
//!   markers), and the scheduler column of `sweep status`.
//!
//! [`submit`] follows the job by default and fails, naming each failed
//! task's cell and log, when a task did not complete; `--no-follow`
//! returns right after `sbatch` and `sweep follow` re-attaches later.
//! Stopping a follow (Ctrl-C) does not cancel the job (`scancel` does).

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

pub mod follow;
pub mod jobs;
pub mod queue;
pub mod script;

use super::grid::Grid;
use super::{state, CellState, Layout, DONE};

/// What `sweep --executor slurm` does after writing the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only write the script.
    DryRun,
    /// Submit, record the job and return.
    Detach,
    /// Submit, record the job and follow it, polling `squeue` this often.
    Follow(Duration),
}

/// `results/NAME/slurm`: the script, the task logs and `jobs.json`.
pub fn dir(layout: &Layout) -> std::path::PathBuf {
    layout.results.join("slurm")
}

fn abs(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Writes the job-array script of the grid's unfinished cells and, unless
/// `mode` is a dry run, submits it with `sbatch --parsable`, records the job
/// in `jobs.json` and (in follow mode) follows it. `grid_path` and `petseg`
/// are what every array task runs with.
pub fn submit(
    grid: &Grid,
    layout: &Layout,
    grid_path: &Path,
    petseg: &Path,
    mode: Mode,
) -> Result<()> {
    let resources = grid
        .slurm
        .as_ref()
        .with_context(|| format!("{} has no [slurm] table", grid_path.display()))?;
    let cells: Vec<_> = grid
        .cells()
        .into_iter()
        .filter(|c| state(layout, c) != CellState::Done)
        .collect();
    if cells.is_empty() {
        print!("{}", super::status(grid, layout, &Default::default()));
        return Ok(());
    }
    let dir = dir(layout);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = grid_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sweep");
    let text = script::script(
        name,
        &cells,
        resources,
        &std::env::current_exe().context("locating the xtask binary")?,
        &abs(grid_path),
        &abs(petseg),
        &std::env::current_dir()?,
        &abs(&dir),
    );
    let path = dir.join("sweep.sbatch");
    let tmp = dir.join("sweep.sbatch.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {} ({} array tasks)", path.display(), cells.len());
    if mode == Mode::DryRun {
        return Ok(());
    }
    let o = match std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("sbatch not found on PATH: the SLURM executor needs SLURM's client commands (or run with --dry-run to only write the script)")
        }
        r => r.context("running sbatch")?,
    };
    anyhow::ensure!(
        o.status.success(),
        "sbatch failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    let sub = jobs::Submission {
        job_id: queue::parse_sbatch(&String::from_utf8_lossy(&o.stdout))?,
        submitted_unix_s: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        log_dir: abs(&dir),
        cells: cells.iter().map(|c| c.name.clone()).collect(),
    };
    jobs::append(&dir, sub.clone())?;
    println!(
        "submitted job {} (recorded in {})",
        sub.job_id,
        dir.join(jobs::FILE).display()
    );
    match mode {
        Mode::Follow(poll) => follow_job(layout, &sub, poll),
        _ => {
            println!(
                "not following it: `cargo xtask sweep follow --grid {g}` re-attaches, \
                 `cargo xtask sweep status --grid {g}` shows the cells",
                g = grid_path.display()
            );
            Ok(())
        }
    }
}

fn follow_job(layout: &Layout, sub: &jobs::Submission, poll: Duration) -> Result<()> {
    let finals = follow::follow(
        sub,
        &follow::SlurmCommands,
        poll,
        &|cell| layout.results.join(cell).join(DONE).is_file(),
        &mut std::io::stdout(),
    )?;
    follow::check(sub.job_id, &finals)
}

/// Follows the recorded job `job`, or the last one recorded (`sweep
/// follow`); fails like [`submit`] when a task did not complete.
pub fn follow_recorded(layout: &Layout, job: Option<u64>, poll: Duration) -> Result<()> {
    let dir = dir(layout);
    let subs = jobs::load(&dir)?;
    let sub = match job {
        Some(id) => subs
            .iter()
            .rev()
            .find(|s| s.job_id == id)
            .with_context(|| {
                format!(
                    "job {id} is not recorded in {}",
                    dir.join(jobs::FILE).display()
                )
            })?,
        None => subs.last().with_context(|| {
            format!(
                "no SLURM job recorded in {} (submit with --executor slurm first)",
                dir.join(jobs::FILE).display()
            )
        })?,
    };
    println!(
        "following job {} ({} array tasks)",
        sub.job_id,
        sub.cells.len()
    );
    follow_job(layout, sub, poll)
}

/// The scheduler column of `sweep status` (cell → `slurm JOB_TASK STATE …`)
/// and notes, when the sweep has recorded SLURM jobs; empty otherwise.
pub fn status_column(
    grid: &Grid,
    layout: &Layout,
) -> Result<(std::collections::BTreeMap<String, String>, Vec<String>)> {
    let subs = jobs::load(&dir(layout))?;
    if subs.is_empty() {
        return Ok(Default::default());
    }
    let cells: Vec<String> = grid.cells().into_iter().map(|c| c.name).collect();
    Ok(follow::cell_states(&subs, &cells, &follow::SlurmCommands))
}
