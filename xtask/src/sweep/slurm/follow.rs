//! Following a submitted job array to its end, and the scheduler's view of
//! each cell for `sweep status`.
//!
//! While any array task is queued or running, `squeue --jobs=ID -t all -r`
//! is polled every `poll` and a count line is printed whenever it changes
//! (`[00:01:10] job 42: PENDING 1, RUNNING 1, COMPLETED 2`). Then the final
//! state of each task is taken from, in order of preference:
//!
//! 1. `sacct` (the accounting database: states, exit codes, run times, kept
//!    for good) — needs `AccountingStorageType=accounting_storage/slurmdbd`;
//! 2. the last `squeue -t all` listing (the controller keeps finished tasks
//!    for `MinJobAge`, default 300 s) — all a cluster without accounting
//!    (`accounting_storage/none`, e.g. the CI's one-node cluster) offers;
//! 3. the cell's `DONE` marker (`COMPLETED`), else `UNKNOWN`.
//!
//! A task failed when its final state is not `COMPLETED`, or when it is but
//! its cell has no `DONE` marker.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::jobs::{last_run_of, Submission};
use super::queue::{
    count_line, is_terminal, job_unknown, parse_sacct, parse_squeue, TaskStatus, Tasks,
    SACCT_FIELDS, SQUEUE_FORMAT,
};

/// Why a scheduler query gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The command is not on `PATH`.
    Missing(&'static str),
    /// It ran and failed: what it printed.
    Failed(String),
}

/// The two queries of a follow (the real commands, or a fake in tests).
pub trait Scheduler {
    /// Stdout of `squeue --jobs=IDS -t all -r -h -o '%i|%T|%r'`.
    fn squeue(&self, jobs: &[u64]) -> Result<String, QueryError>;
    /// Stdout of `sacct -j IDS -X -n -P -o JobID,State,ExitCode,Elapsed`.
    fn sacct(&self, jobs: &[u64]) -> Result<String, QueryError>;
}

/// SLURM's client commands on `PATH`.
pub struct SlurmCommands;

fn run_tool(prog: &'static str, args: &[String]) -> Result<String, QueryError> {
    match Command::new(prog).args(args).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(QueryError::Missing(prog)),
        Err(e) => Err(QueryError::Failed(format!("{prog}: {e}"))),
        Ok(o) if !o.status.success() => {
            let mut msg = String::from_utf8_lossy(&o.stderr).trim().to_string();
            if msg.is_empty() {
                msg = String::from_utf8_lossy(&o.stdout).trim().to_string();
            }
            Err(QueryError::Failed(format!(
                "{prog} failed ({}): {msg}",
                o.status
            )))
        }
        Ok(o) => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
    }
}

fn id_list(jobs: &[u64]) -> String {
    jobs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Scheduler for SlurmCommands {
    fn squeue(&self, jobs: &[u64]) -> Result<String, QueryError> {
        let args = [
            format!("--jobs={}", id_list(jobs)),
            "-t".into(),
            "all".into(),
            "-r".into(),
            "-h".into(),
            "-o".into(),
            SQUEUE_FORMAT.into(),
        ];
        run_tool("squeue", &args)
    }

    fn sacct(&self, jobs: &[u64]) -> Result<String, QueryError> {
        let args = [
            "-j".into(),
            id_list(jobs),
            "-X".into(),
            "-n".into(),
            "-P".into(),
            "-o".into(),
            SACCT_FIELDS.into(),
        ];
        run_tool("sacct", &args)
    }
}

/// Consecutive failed `squeue` calls tolerated (a busy controller times
/// out now and then) before the follow gives up.
const MAX_SQUEUE_FAILURES: u32 = 5;

/// An `squeue` answer: a job the controller does not know (any more) is an
/// empty listing, another failure a message; a missing `squeue` is an error.
fn squeue_tasks(answer: Result<String, QueryError>) -> Result<Result<Tasks, String>> {
    match answer {
        Ok(text) => Ok(Ok(parse_squeue(&text)?)),
        Err(QueryError::Failed(msg)) if job_unknown(&msg) => Ok(Ok(Tasks::new())),
        Err(QueryError::Failed(msg)) => Ok(Err(msg)),
        Err(QueryError::Missing(p)) => bail!(
            "{p} not found on PATH: following a SLURM job needs SLURM's client commands \
             (submit with --no-follow to skip following)"
        ),
    }
}

/// `sacct` of `jobs`, or a note saying why there is none.
fn sacct_tasks(sched: &dyn Scheduler, jobs: &[u64]) -> Result<Result<Tasks, String>> {
    Ok(match sched.sacct(jobs) {
        Ok(text) => Ok(parse_sacct(&text)?),
        Err(QueryError::Missing(p)) => Err(format!("{p} not found on PATH")),
        Err(QueryError::Failed(msg)) => Err(format!(
            "no accounting ({msg}; a cluster without slurmdbd has \
             AccountingStorageType=accounting_storage/none)"
        )),
    })
}

/// Where a final state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The accounting database.
    Sacct,
    /// The controller's last listing.
    Squeue,
    /// The cell's `DONE` marker (no scheduler record left).
    Marker,
}

/// The final state of one array task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalTask {
    /// Array task id.
    pub task: u32,
    /// Its cell.
    pub cell: String,
    /// The scheduler's (or the marker's) verdict.
    pub status: TaskStatus,
    /// Where `status` came from.
    pub source: Source,
    /// Whether the cell's `DONE` marker exists.
    pub cell_done: bool,
    /// The task's log.
    pub log: PathBuf,
}

impl FinalTask {
    /// Completed, with its cell finished.
    pub fn ok(&self) -> bool {
        self.status.state == "COMPLETED" && self.cell_done
    }

    /// `array task 1 (cell): FAILED exit 1:0; log …`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "array task {} ({}): {}",
            self.task, self.cell, self.status.state
        );
        if let Some(e) = &self.status.exit_code {
            s += &format!(" exit {e}");
        }
        if let Some(r) = &self.status.reason {
            s += &format!(" ({r})");
        }
        if self.status.state == "COMPLETED" && !self.cell_done {
            s += ", but the cell has no DONE marker";
        }
        s + &format!("; log {}", self.log.display())
    }
}

/// Picks each task's final state (see the module docs).
fn final_states(
    sub: &Submission,
    acct: Option<&Tasks>,
    listing: &Tasks,
    cell_done: &dyn Fn(&str) -> bool,
) -> Vec<FinalTask> {
    (0u32..)
        .zip(&sub.cells)
        .map(|(task, cell)| {
            let key = (sub.job_id, task);
            let terminal = |t: Option<&Tasks>| -> Option<TaskStatus> {
                t.and_then(|t| t.get(&key))
                    .filter(|s| is_terminal(&s.state))
                    .cloned()
            };
            let done = cell_done(cell);
            let (status, source) = if let Some(s) = terminal(acct) {
                (s, Source::Sacct)
            } else if let Some(s) = terminal(Some(listing)) {
                (s, Source::Squeue)
            } else {
                let state = if done { "COMPLETED" } else { "UNKNOWN" };
                let status = TaskStatus {
                    state: state.into(),
                    exit_code: None,
                    elapsed: None,
                    reason: Some("no scheduler record; from the DONE marker".into()),
                };
                (status, Source::Marker)
            };
            FinalTask {
                task,
                cell: cell.clone(),
                status,
                source,
                cell_done: done,
                log: sub.log(task),
            }
        })
        .collect()
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Follows `sub` until none of its tasks is queued or running, printing a
/// count line to `out` on every change; returns every task's final state.
/// `cell_done` tells whether a cell's `DONE` marker exists.
pub fn follow(
    sub: &Submission,
    sched: &dyn Scheduler,
    poll: Duration,
    cell_done: &dyn Fn(&str) -> bool,
    out: &mut dyn Write,
) -> Result<Vec<FinalTask>> {
    let job = sub.job_id;
    let start = Instant::now();
    let mut last_line = String::new();
    let mut failures = 0;
    let listing = loop {
        let tasks = match squeue_tasks(sched.squeue(&[job]))? {
            Ok(t) => t,
            Err(msg) => {
                failures += 1;
                if failures >= MAX_SQUEUE_FAILURES {
                    bail!("squeue failed {failures} times in a row following job {job}: {msg}");
                }
                writeln!(out, "warning: {msg} (retrying)")?;
                std::thread::sleep(poll);
                continue;
            }
        };
        failures = 0;
        let mine: Tasks = tasks.into_iter().filter(|(k, _)| k.0 == job).collect();
        let listed: Vec<&TaskStatus> = mine.values().collect();
        let line = count_line(&listed, sub.cells.len());
        if line != last_line {
            writeln!(out, "[{}] job {job}: {line}", clock(start.elapsed()))?;
            out.flush()?;
            last_line = line;
        }
        if listed.iter().all(|s| is_terminal(&s.state)) {
            break mine;
        }
        std::thread::sleep(poll);
    };
    let acct = match sacct_tasks(sched, &[job])? {
        Ok(t) => Some(t),
        Err(note) => {
            writeln!(
                out,
                "note: sacct: {note}; final states from squeue, else the cells' DONE markers"
            )?;
            None
        }
    };
    let finals = final_states(sub, acct.as_ref(), &listing, cell_done);
    let statuses: Vec<&TaskStatus> = finals.iter().map(|f| &f.status).collect();
    writeln!(
        out,
        "[{}] job {job} ended: {}",
        clock(start.elapsed()),
        count_line(&statuses, finals.len())
    )?;
    Ok(finals)
}

/// The last non-empty line of a task's log, when it can be read.
fn last_log_line(log: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// An error naming every task of `finals` that did not complete (its cell,
/// state, log, and the log's last line when readable), or `Ok` when all did.
pub fn check(job: u64, finals: &[FinalTask]) -> Result<()> {
    let bad: Vec<String> = finals
        .iter()
        .filter(|f| !f.ok())
        .map(|f| match last_log_line(&f.log) {
            Some(l) => format!("{}\n    last log line: {l}", f.describe()),
            None => f.describe(),
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bail!(
        "{} of {} array tasks of job {job} did not complete:\n  {}",
        bad.len(),
        finals.len(),
        bad.join("\n  ")
    )
}

/// For `sweep status`: each cell's array task in the last submission that
/// ran it, with its scheduler state (`slurm 42_1 COMPLETED exit 0:0
/// 00:01:02`), plus notes on where the states came from. Never fails: a
/// scheduler that cannot be asked leaves a note.
pub fn cell_states(
    subs: &[Submission],
    cells: &[String],
    sched: &dyn Scheduler,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut notes = Vec::new();
    let runs: Vec<(&String, (&Submission, u32))> = cells
        .iter()
        .filter_map(|c| last_run_of(subs, c).map(|r| (c, r)))
        .collect();
    let mut jobs: Vec<u64> = runs.iter().map(|(_, (s, _))| s.job_id).collect();
    jobs.sort_unstable();
    jobs.dedup();
    if jobs.is_empty() {
        return (BTreeMap::new(), notes);
    }
    let tasks = match sacct_tasks(sched, &jobs) {
        Ok(Ok(t)) => Some(t),
        Ok(Err(note)) => {
            notes.push(format!("sacct: {note}"));
            let listing = match sched.squeue(&jobs) {
                Err(QueryError::Missing(p)) => Ok(Err(format!("{p} not found on PATH"))),
                answer => squeue_tasks(answer),
            };
            match listing {
                Ok(Ok(t)) => {
                    notes.push(
                        "scheduler states from squeue, which forgets a task MinJobAge \
                         (default 300 s) after it ends"
                            .into(),
                    );
                    Some(t)
                }
                Ok(Err(msg)) => {
                    notes.push(format!("squeue: {msg}"));
                    None
                }
                Err(e) => {
                    notes.push(format!("{e:#}"));
                    None
                }
            }
        }
        Err(e) => {
            notes.push(format!("sacct output: {e:#}"));
            None
        }
    };
    let mut out = BTreeMap::new();
    for (cell, (sub, task)) in runs {
        let mut s = format!("slurm {}_{task}", sub.job_id);
        match tasks.as_ref().map(|t| t.get(&(sub.job_id, task))) {
            Some(Some(st)) => {
                s += &format!(" {}", st.state);
                if let Some(e) = &st.exit_code {
                    s += &format!(" exit {e}");
                }
                if let Some(e) = &st.elapsed {
                    s += &format!(" {e}");
                }
                if let Some(r) = &st.reason {
                    s += &format!(" ({r})");
                }
            }
            Some(None) => s += " not listed",
            None => s += " state unknown",
        }
        out.insert(cell.clone(), s);
    }
    (out, notes)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    /// Plays back scripted squeue answers (the last one repeats) and one
    /// sacct answer.
    struct Fake {
        squeue: RefCell<VecDeque<Result<String, QueryError>>>,
        sacct: Result<String, QueryError>,
        calls: RefCell<Vec<String>>,
    }

    impl Fake {
        fn new(squeue: &[Result<&str, QueryError>], sacct: Result<&str, QueryError>) -> Fake {
            Fake {
                squeue: RefCell::new(squeue.iter().map(|r| r.clone().map(String::from)).collect()),
                sacct: sacct.map(String::from),
                calls: RefCell::new(Vec::new()),
            }
        }
    }

    impl Scheduler for Fake {
        fn squeue(&self, jobs: &[u64]) -> Result<String, QueryError> {
            self.calls.borrow_mut().push(format!("squeue {jobs:?}"));
            let mut q = self.squeue.borrow_mut();
            if q.len() > 1 {
                q.pop_front().unwrap()
            } else {
                q[0].clone()
            }
        }
        fn sacct(&self, jobs: &[u64]) -> Result<String, QueryError> {
            self.calls.borrow_mut().push(format!("sacct {jobs:?}"));
            self.sacct.clone()
        }
    }

    fn sub() -> Submission {
        Submission {
            job_id: 7,
            submitted_unix_s: 0,
            log_dir: "/r/slurm".into(),
            cells: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    const DISABLED: &str = "sacct failed (exit status: 1): Slurm accounting storage is disabled";

    fn run(fake: &Fake, done: &[&str]) -> (Result<Vec<FinalTask>>, String) {
        let mut out = Vec::new();
        let done: Vec<String> = done.iter().map(|s| s.to_string()).collect();
        let r = follow(
            &sub(),
            fake,
            Duration::ZERO,
            &|c| done.iter().any(|d| d == c),
            &mut out,
        );
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn follows_until_the_end_and_prefers_sacct() {
        let fake = Fake::new(
            &[
                Ok("7_0|PENDING|Resources\n7_1|PENDING|Resources\n7_2|PENDING|Resources\n"),
                Ok("7_0|RUNNING|None\n7_1|PENDING|Resources\n7_2|PENDING|Resources\n"),
                Ok("7_0|RUNNING|None\n7_1|PENDING|Resources\n7_2|PENDING|Resources\n"),
                Err(QueryError::Failed("squeue: Socket timed out".into())),
                Ok("7_0|COMPLETED|None\n7_1|RUNNING|None\n7_2|RUNNING|None\n"),
                Ok("7_0|COMPLETED|None\n7_1|FAILED|NonZeroExitCode\n7_2|COMPLETED|None\n"),
            ],
            Ok("7_0|COMPLETED|0:0|00:01:00\n7_1|FAILED|2:0|00:00:05\n7_1.batch|FAILED|2:0|00:00:05\n7_2|COMPLETED|0:0|00:02:00\n"),
        );
        let (r, out) = run(&fake, &["a", "c"]);
        let finals = r.unwrap();
        let lines: Vec<&str> = out.lines().collect();
        // One line per change, the retry warned about, then the end.
        assert_eq!(lines.len(), 6, "{out}");
        assert!(lines[0].ends_with("job 7: PENDING 3"), "{out}");
        assert!(lines[1].ends_with("job 7: PENDING 2, RUNNING 1"), "{out}");
        assert!(lines[2].contains("Socket timed out"), "{out}");
        assert!(lines[3].ends_with("RUNNING 2, COMPLETED 1"), "{out}");
        assert!(lines[4].ends_with("COMPLETED 2, FAILED 1"), "{out}");
        assert!(
            lines[5].ends_with("job 7 ended: COMPLETED 2, FAILED 1"),
            "{out}"
        );
        assert!(finals.iter().all(|f| f.source == Source::Sacct));
        assert_eq!(finals[1].status.exit_code.as_deref(), Some("2:0"));
        let e = format!("{:#}", check(7, &finals).unwrap_err());
        assert!(
            e.contains("1 of 3 array tasks of job 7 did not complete")
                && e.contains("array task 1 (b): FAILED exit 2:0; log /r/slurm/7_1.out"),
            "{e}"
        );
        assert!(
            fake.calls
                .borrow()
                .iter()
                .filter(|c| c.starts_with("sacct"))
                .count()
                == 1
        );
    }

    #[test]
    fn without_accounting_uses_squeue_then_markers() {
        // Task 2 was purged from the controller before the first poll.
        let fake = Fake::new(
            &[
                Ok("7_0|RUNNING|None\n7_1|RUNNING|None\n"),
                Ok("7_0|COMPLETED|None\n7_1|CANCELLED|None\n"),
            ],
            Err(QueryError::Failed(DISABLED.into())),
        );
        let (r, out) = run(&fake, &["a", "c"]);
        let finals = r.unwrap();
        assert!(out.contains("RUNNING 2, not listed 1"), "{out}");
        assert!(out.contains("note: sacct: no accounting"), "{out}");
        assert_eq!(
            finals.iter().map(|f| f.source).collect::<Vec<_>>(),
            [Source::Squeue, Source::Squeue, Source::Marker]
        );
        assert_eq!(finals[2].status.state, "COMPLETED");
        assert!(finals[0].ok() && !finals[1].ok() && finals[2].ok());
        // Not done and no record: UNKNOWN, a failure.
        let (r, _) = run(&fake, &["a"]);
        let finals = r.unwrap();
        assert_eq!(finals[2].status.state, "UNKNOWN");
        let e = format!("{:#}", check(7, &finals).unwrap_err());
        assert!(
            e.contains("2 of 3") && e.contains("array task 2 (c): UNKNOWN"),
            "{e}"
        );
        // COMPLETED without its DONE marker is a failure too.
        let (r, _) = run(&fake, &[]);
        assert!(!r.unwrap()[0].ok());
    }

    #[test]
    fn a_purged_job_ends_the_follow_and_errors_are_clear() {
        let gone = Fake::new(
            &[Err(QueryError::Failed(
                "squeue failed (exit status: 1): slurm_load_jobs error: Invalid job id specified"
                    .into(),
            ))],
            Err(QueryError::Missing("sacct")),
        );
        let (r, out) = run(&gone, &["a", "b", "c"]);
        assert!(r
            .unwrap()
            .iter()
            .all(|f| f.ok() && f.source == Source::Marker));
        assert!(
            out.contains("not listed 3") && out.contains("sacct not found"),
            "{out}"
        );

        let missing = Fake::new(&[Err(QueryError::Missing("squeue"))], Ok(""));
        let e = format!("{:#}", run(&missing, &[]).0.unwrap_err());
        assert!(
            e.contains("squeue not found on PATH") && e.contains("--no-follow"),
            "{e}"
        );

        let down = Fake::new(&[Err(QueryError::Failed("controller down".into()))], Ok(""));
        let e = format!("{:#}", run(&down, &[]).0.unwrap_err());
        assert!(
            e.contains("failed 5 times") && e.contains("controller down"),
            "{e}"
        );
    }

    #[test]
    fn the_error_quotes_the_last_log_line() {
        let dir = tempfile::tempdir().unwrap();
        let sub = Submission {
            log_dir: dir.path().to_path_buf(),
            ..sub()
        };
        std::fs::write(sub.log(1), "training…\nerror: reading manifest m.json\n\n").unwrap();
        let fake = Fake::new(
            &[Ok(
                "7_0|COMPLETED|None\n7_1|FAILED|NonZeroExitCode\n7_2|COMPLETED|None\n",
            )],
            Err(QueryError::Failed(DISABLED.into())),
        );
        let finals = follow(&sub, &fake, Duration::ZERO, &|_| true, &mut Vec::new()).unwrap();
        let e = format!("{:#}", check(7, &finals).unwrap_err());
        assert!(
            e.contains("array task 1 (b): FAILED (NonZeroExitCode); log ")
                && e.ends_with("\n    last log line: error: reading manifest m.json"),
            "{e}"
        );
    }

    #[test]
    fn status_annotations_from_sacct_or_squeue() {
        let subs = vec![
            sub(),
            Submission {
                job_id: 9,
                cells: vec!["b".into()],
                ..sub()
            },
        ];
        let cells: Vec<String> = ["a", "b", "z"].iter().map(|s| s.to_string()).collect();
        let acct = Fake::new(
            &[Ok("")],
            Ok("7_0|COMPLETED|0:0|00:01:00\n9_0|RUNNING|0:0|00:00:09\n"),
        );
        let (m, notes) = cell_states(&subs, &cells, &acct);
        assert_eq!(m["a"], "slurm 7_0 COMPLETED exit 0:0 00:01:00");
        assert_eq!(m["b"], "slurm 9_0 RUNNING exit 0:0 00:00:09");
        assert!(!m.contains_key("z") && notes.is_empty());
        assert_eq!(acct.calls.borrow()[0], "sacct [7, 9]");

        let queue = Fake::new(
            &[Ok("9_0|FAILED|NonZeroExitCode\n")],
            Err(QueryError::Failed(DISABLED.into())),
        );
        let (m, notes) = cell_states(&subs, &cells, &queue);
        assert_eq!(m["a"], "slurm 7_0 not listed");
        assert_eq!(m["b"], "slurm 9_0 FAILED (NonZeroExitCode)");
        assert!(notes.iter().any(|n| n.contains("MinJobAge")), "{notes:?}");
        assert_eq!(*queue.calls.borrow(), ["sacct [7, 9]", "squeue [7, 9]"]);

        let none = Fake::new(
            &[Err(QueryError::Missing("squeue"))],
            Err(QueryError::Missing("sacct")),
        );
        let (m, notes) = cell_states(&subs, &cells, &none);
        assert_eq!(m["a"], "slurm 7_0 state unknown");
        assert!(
            notes
                .iter()
                .any(|n| n == "squeue: squeue not found on PATH"),
            "{notes:?}"
        );
    }
}
