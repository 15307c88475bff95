//! The record of a sweep's SLURM submissions: `results/NAME/slurm/jobs.json`,
//! a JSON array with one entry appended per `sbatch` (never rewritten in
//! place: read, append, write a temp file, rename).
//!
//! ```json
//! [{"job_id": 4242, "submitted_unix_s": 1795000000,
//!   "log_dir": "/abs/results/smoke/slurm",
//!   "cells": ["segresnet__dice__fold0", "segresnet__l1dfl__fold0"]}]
//! ```
//!
//! `cells[i]` is array task `i`; its log is `LOG_DIR/<job_id>_<i>.out`.
//! `sweep follow` follows the last entry; `sweep status` looks up, for each
//! cell, the last submission that ran it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// File name of the record, in `results/NAME/slurm/`.
pub const FILE: &str = "jobs.json";

/// One `sbatch` of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// The array job id (`sbatch --parsable`).
    pub job_id: u64,
    /// When it was submitted (seconds since the Unix epoch).
    pub submitted_unix_s: u64,
    /// Folder of the tasks' logs.
    pub log_dir: PathBuf,
    /// Cell of each array task, by task id.
    pub cells: Vec<String>,
}

impl Submission {
    /// The log of array task `task`.
    pub fn log(&self, task: u32) -> PathBuf {
        self.log_dir.join(format!("{}_{task}.out", self.job_id))
    }
}

/// Reads the record in `dir` (empty when there is none).
pub fn load(dir: &Path) -> Result<Vec<Submission>> {
    let path = dir.join(FILE);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON array of {{job_id, submitted_unix_s, log_dir, cells}}",
            path.display()
        )
    })
}

/// Appends `sub` to the record in `dir`.
pub fn append(dir: &Path, sub: Submission) -> Result<()> {
    let mut all = load(dir)?;
    all.push(sub);
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(&all)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// For `cell`, the last submission that ran it and its task id.
pub fn last_run_of<'a>(subs: &'a [Submission], cell: &str) -> Option<(&'a Submission, u32)> {
    subs.iter().rev().find_map(|s| {
        s.cells
            .iter()
            .position(|c| c == cell)
            .and_then(|i| u32::try_from(i).ok())
            .map(|i| (s, i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(job_id: u64, cells: &[&str]) -> Submission {
        Submission {
            job_id,
            submitted_unix_s: 1,
            log_dir: "/r/slurm".into(),
            cells: cells.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn appends_and_finds_the_last_run() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        append(dir.path(), sub(10, &["a", "b"])).unwrap();
        append(dir.path(), sub(11, &["b"])).unwrap();
        let all = load(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        let (s, t) = last_run_of(&all, "b").unwrap();
        assert_eq!((s.job_id, t), (11, 0));
        let (s, t) = last_run_of(&all, "a").unwrap();
        assert_eq!((s.job_id, t), (10, 0));
        assert!(last_run_of(&all, "c").is_none());
        assert_eq!(s.log(3), PathBuf::from("/r/slurm/10_3.out"));
        std::fs::write(dir.path().join(FILE), "{}").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("jobs.json"), "{e:#}");
    }
}
