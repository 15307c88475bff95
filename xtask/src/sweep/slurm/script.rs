//! The sbatch job-array script of a sweep: one array task per unfinished
//! cell, each running `xtask sweep run-cell` (same markers, so the same
//! resumability rules as the local executor). Resources come from the
//! grid's `[slurm]` table. Task `i` logs to `LOG_DIR/<array job id>_<i>.out`
//! ([`super::jobs::Submission::log`]).

use std::fmt::Write as _;
use std::path::Path;

use crate::sweep::grid::{CellSpec, Slurm};

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The sbatch script for `cells` (at least one), run from `workdir`.
pub fn script(
    name: &str,
    cells: &[CellSpec],
    resources: &Slurm,
    xtask: &Path,
    grid: &Path,
    petseg: &Path,
    workdir: &Path,
    log_dir: &Path,
) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(s, "#SBATCH --job-name=petseg-{name}");
    let _ = writeln!(s, "#SBATCH --array=0-{}", cells.len().saturating_sub(1));
    let _ = writeln!(s, "#SBATCH --output={}/%A_%a.out", log_dir.display());
    for option in resources.sbatch_options() {
        let _ = writeln!(s, "#SBATCH {option}");
    }
    s += "set -euo pipefail\n";
    let _ = writeln!(s, "cd {}", quote(&workdir.display().to_string()));
    s += "CELLS=(";
    for c in cells {
        let _ = write!(s, " {}", quote(&c.name));
    }
    s += " )\n";
    let _ = writeln!(
        s,
        "exec {} sweep run-cell --grid {} --petseg {} --cell \"${{CELLS[$SLURM_ARRAY_TASK_ID]}}\"",
        quote(&xtask.display().to_string()),
        quote(&grid.display().to_string()),
        quote(&petseg.display().to_string())
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_script_has_resources_and_cells() {
        let cell = |n: &str| CellSpec {
            name: n.into(),
            network: "segresnet".into(),
            loss: "dice".into(),
            fold: 0,
            extra: Vec::new(),
            device: Default::default(),
            precision: None,
        };
        let r = Slurm {
            partition: Some("gpu".into()),
            gpus: Some(1),
            cpus: Some(8),
            mem: Some("64G".into()),
            time: Some("72:00:00".into()),
        };
        let s = script(
            "paper",
            &[cell("a__dice__fold0"), cell("b'x")],
            &r,
            Path::new("/x/xtask"),
            Path::new("sweeps/paper.toml"),
            Path::new("target/release/petseg"),
            Path::new("/work"),
            Path::new("results/paper/slurm"),
        );
        for line in [
            "#SBATCH --array=0-1",
            "#SBATCH --partition=gpu",
            "#SBATCH --gpus=1",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --mem=64G",
            "#SBATCH --time=72:00:00",
            "#SBATCH --output=results/paper/slurm/%A_%a.out",
            "cd '/work'",
            "CELLS=( 'a__dice__fold0' 'b'\\''x' )",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
        assert!(s.contains("sweep run-cell --grid 'sweeps/paper.toml'"));
        let no_gpu = Slurm { gpus: Some(0), ..r };
        assert!(!script(
            "p",
            &[cell("a")],
            &no_gpu,
            Path::new("x"),
            Path::new("g"),
            Path::new("p"),
            Path::new("/"),
            Path::new("l")
        )
        .contains("--gpus"));
    }
}
