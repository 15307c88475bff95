//! Parsing what SLURM's client commands print (pure functions, tested on
//! captured text).
//!
//! * `sbatch --parsable`: `JOBID` or `JOBID;CLUSTER`.
//! * `squeue --jobs=ID -t all -r -h -o '%i|%T|%r'`: one line per array task,
//!   `JOBID_TASK|STATE|REASON`; `-t all` keeps finished tasks listed until
//!   the controller purges them (`MinJobAge`, default 300 s).
//! * `sacct -j ID -X -n -P -o JobID,State,ExitCode,Elapsed`: one line per
//!   array task, `JOBID_TASK|STATE|EXIT:SIGNAL|ELAPSED` (states such as
//!   `CANCELLED by 0` are cut to their first word).
//!
//! Array-task ids are written `123_4`, or `123_[0-3,7%2]` for tasks not
//! yet split off the array record; both are expanded. Job steps
//! (`123_4.batch`, `123_4.extern`) and non-array jobs are skipped.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

/// The `squeue` output format ([`parse_squeue`]).
pub const SQUEUE_FORMAT: &str = "%i|%T|%r";
/// The `sacct` fields ([`parse_sacct`]).
pub const SACCT_FIELDS: &str = "JobID,State,ExitCode,Elapsed";

/// States after which an array task never runs again.
const TERMINAL: [&str; 10] = [
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
];

/// Order of states in the count line; others follow alphabetically.
const ORDER: [&str; 6] = [
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "COMPLETED",
    "FAILED",
];

/// Whether `state` is final (every state not in SLURM's list of final
/// states, including unknown ones, counts as still queued).
pub fn is_terminal(state: &str) -> bool {
    TERMINAL.contains(&state)
}

/// The scheduler's view of one array task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// SLURM state name (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …).
    pub state: String,
    /// `EXIT:SIGNAL` (sacct only).
    pub exit_code: Option<String>,
    /// Run time `[D-]HH:MM:SS` (sacct only).
    pub elapsed: Option<String>,
    /// Why pending or why it ended (squeue only; `None` when SLURM says `None`).
    pub reason: Option<String>,
}

/// Array task statuses keyed by (array job id, task id).
pub type Tasks = BTreeMap<(u64, u32), TaskStatus>;

/// The job id printed by `sbatch --parsable` (`123` or `123;cluster`).
pub fn parse_sbatch(stdout: &str) -> Result<u64> {
    let t = stdout.trim();
    let id = t.split(';').next().unwrap_or_default();
    id.parse()
        .with_context(|| format!("sbatch --parsable printed {t:?}, expected a job id"))
}

/// Expands `0-3,7%2` (the `%` limit ignored) into task ids.
fn expand_ranges(s: &str) -> Option<Vec<u32>> {
    let s = s.split('%').next()?;
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// Parses an array-task id field: `Some((job, tasks))` for `123_4` or
/// `123_[0-3]`, `None` for job steps (`123_4.batch`) and non-array jobs.
pub fn parse_task_id(field: &str) -> Result<Option<(u64, Vec<u32>)>> {
    let f = field.trim();
    let bad = || format!("job id {f:?}: expected JOBID_TASK or JOBID_[RANGES]");
    if f.contains('.') {
        return Ok(None);
    }
    let Some((job, task)) = f.split_once('_') else {
        f.parse::<u64>().with_context(bad)?;
        return Ok(None);
    };
    let job: u64 = job.parse().with_context(bad)?;
    let tasks = match task.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(r) => expand_ranges(r),
        None => task.parse().ok().map(|t| vec![t]),
    }
    .with_context(bad)?;
    Ok(Some((job, tasks)))
}

/// The first word of a state (`CANCELLED by 0` → `CANCELLED`), without
/// sacct's truncation mark `+`.
fn state_name(s: &str) -> String {
    s.split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches('+')
        .to_string()
}

fn parse_lines(
    text: &str,
    fields: usize,
    what: &str,
    make: impl Fn(&[&str]) -> TaskStatus,
) -> Result<Tasks> {
    let mut out = Tasks::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != fields {
            bail!(
                "{what} line {}: {line:?} has {} fields, expected {fields}",
                n + 1,
                f.len()
            );
        }
        let Some((job, tasks)) =
            parse_task_id(f[0]).with_context(|| format!("{what} line {}", n + 1))?
        else {
            continue;
        };
        let status = make(&f);
        if status.state.is_empty() {
            bail!("{what} line {}: {line:?} has no state", n + 1);
        }
        for t in tasks {
            out.insert((job, t), status.clone());
        }
    }
    Ok(out)
}

/// Parses `squeue -h -r -o '%i|%T|%r'` output ([`SQUEUE_FORMAT`]).
pub fn parse_squeue(text: &str) -> Result<Tasks> {
    parse_lines(text, 3, "squeue", |f| TaskStatus {
        state: state_name(f[1]),
        exit_code: None,
        elapsed: None,
        reason: Some(f[2].trim().to_string()).filter(|r| !r.is_empty() && r != "None"),
    })
}

/// Parses `sacct -n -P -o JobID,State,ExitCode,Elapsed` output
/// ([`SACCT_FIELDS`]).
pub fn parse_sacct(text: &str) -> Result<Tasks> {
    parse_lines(text, 4, "sacct", |f| TaskStatus {
        state: state_name(f[1]),
        exit_code: Some(f[2].trim().to_string()),
        elapsed: Some(f[3].trim().to_string()),
        reason: None,
    })
}

/// Whether a failed `squeue --jobs=ID` only says the job is not known
/// (any more): purged after `MinJobAge`, or never submitted.
pub fn job_unknown(stderr: &str) -> bool {
    stderr.contains("Invalid job id specified")
}

/// `PENDING 2, RUNNING 1, COMPLETED 3` (plus `not listed N` for tasks
/// absent from `listed` among `n_tasks`).
pub fn count_line(listed: &[&TaskStatus], n_tasks: usize) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in listed {
        *counts.entry(s.state.as_str()).or_default() += 1;
    }
    let rank = |s: &str| ORDER.iter().position(|o| *o == s).unwrap_or(ORDER.len());
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by_key(|(s, _)| (rank(s), s.to_string()));
    let mut parts: Vec<String> = v.iter().map(|(s, n)| format!("{s} {n}")).collect();
    if n_tasks > listed.len() {
        parts.push(format!("not listed {}", n_tasks - listed.len()));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from the one-node cluster of `xtask/scripts/slurm-smoke.sh`
    /// (slurm-wlm 22.05.8): an array of 4 tasks on 2 CPUs, task 2 exiting 3.
    const SQUEUE_RUNNING: &str =
        "5_1|COMPLETED|None\n5_0|COMPLETED|None\n5_2|PENDING|Resources\n5_3|PENDING|Resources\n";
    const SQUEUE_DONE: &str =
        "5_3|COMPLETED|None\n5_1|COMPLETED|None\n5_0|COMPLETED|None\n5_2|FAILED|NonZeroExitCode\n";
    /// sacct of a cluster with slurmdbd (format of slurm 22.05's `-P`).
    const SACCT: &str = "\
4242_0|COMPLETED|0:0|00:01:02
4242_0.batch|COMPLETED|0:0|00:01:02
4242_1|FAILED|1:0|00:00:03
4242_2|CANCELLED by 1000|0:15|00:00:10
4242_[3-5,8%2]|PENDING|0:0|00:00:00
4242_6|RUNNING|0:0|00:00:40
4242_6.extern|RUNNING|0:0|00:00:40
";

    #[test]
    fn sbatch_job_ids() {
        assert_eq!(parse_sbatch("1234\n").unwrap(), 1234);
        assert_eq!(parse_sbatch("77;cluster-a\n").unwrap(), 77);
        let e = parse_sbatch("Submitted batch job 5\n").unwrap_err();
        assert!(format!("{e:#}").contains("Submitted batch job 5"), "{e:#}");
    }

    #[test]
    fn task_ids() {
        assert_eq!(parse_task_id("12_3").unwrap(), Some((12, vec![3])));
        assert_eq!(
            parse_task_id("12_[0-2,5%4]").unwrap(),
            Some((12, vec![0, 1, 2, 5]))
        );
        assert_eq!(parse_task_id("12_3.batch").unwrap(), None);
        assert_eq!(parse_task_id("12").unwrap(), None);
        assert!(parse_task_id("x_1").is_err());
        assert!(parse_task_id("12_[3-1]").is_err());
        assert!(parse_task_id("12_a").is_err());
    }

    #[test]
    fn squeue_lines() {
        let t = parse_squeue(SQUEUE_RUNNING).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[&(5, 0)].state, "COMPLETED");
        assert_eq!(t[&(5, 0)].reason, None);
        assert_eq!(t[&(5, 2)].state, "PENDING");
        assert_eq!(t[&(5, 2)].reason.as_deref(), Some("Resources"));
        assert_eq!(t.values().filter(|s| is_terminal(&s.state)).count(), 2);
        let done = parse_squeue(SQUEUE_DONE).unwrap();
        assert!(done.values().all(|s| is_terminal(&s.state)));
        assert_eq!(done[&(5, 2)].state, "FAILED");
        assert_eq!(done[&(5, 2)].reason.as_deref(), Some("NonZeroExitCode"));
        assert!(parse_squeue("").unwrap().is_empty());
        let e = parse_squeue("1_0|RUNNING\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 1"), "{e:#}");
    }

    #[test]
    fn sacct_lines() {
        let t = parse_sacct(SACCT).unwrap();
        let ids: Vec<u32> = t.keys().map(|k| k.1).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 8]);
        assert_eq!(t[&(4242, 0)].exit_code.as_deref(), Some("0:0"));
        assert_eq!(t[&(4242, 0)].elapsed.as_deref(), Some("00:01:02"));
        assert_eq!(t[&(4242, 1)].state, "FAILED");
        assert_eq!(t[&(4242, 2)].state, "CANCELLED");
        assert_eq!(t[&(4242, 4)].state, "PENDING");
        assert!(parse_sacct("4242_0|COMPLETED|0:0\n").is_err());
    }

    #[test]
    fn counts_in_a_fixed_order() {
        let t = parse_sacct(SACCT).unwrap();
        let listed: Vec<&TaskStatus> = t.values().collect();
        assert_eq!(
            count_line(&listed, 10),
            "PENDING 4, RUNNING 1, COMPLETED 1, FAILED 1, CANCELLED 1, not listed 2"
        );
        assert_eq!(count_line(&[], 0), "");
    }

    #[test]
    fn unknown_job_message() {
        assert!(job_unknown(
            "slurm_load_jobs error: Invalid job id specified\n"
        ));
        assert!(!job_unknown(
            "slurm_load_jobs error: Unable to contact slurm controller"
        ));
    }
}
