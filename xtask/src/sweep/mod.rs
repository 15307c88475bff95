//! `cargo xtask sweep`: runs a grid of training cells, resumably.
//!
//! Each cell (see [`grid`]) runs three `petseg` steps, each recorded by a
//! marker file written after the step succeeded:
//!
//! 1. `petseg train` into `runs/NAME/CELL/` (marker `train.done` in the
//!    results cell folder, like every marker); when the
//!    run folder already holds a checkpoint (an interrupted run), the step
//!    is `petseg train --run-dir … --resume` instead;
//! 2. `petseg predict` (manifest mode) of the cell's evaluation cases (the
//!    fold's validation cases, or the split's test cases) with the best
//!    weights (the last ones when no validation ran) into
//!    `results/NAME/CELL/preds/` (marker `predict.done`);
//! 3. `petseg evaluate` (manifest mode) into `results/NAME/CELL/`
//!    (`patients.csv`, `lesions.csv`, `summary.json`, `summary.md`), then
//!    `DONE`, written last (temp file + rename).
//!
//! A cell with `DONE` is skipped; others restart at their first unfinished
//! step. `results/NAME/CELL/cell.json` records network, loss, fold, extra
//! axes, the manifest and the predictions folder (read by `cargo xtask
//! report`; the network name carries the extra axes' values so different
//! settings are not pooled). Steps run through an [`Executor`] (the local
//! one runs the processes; tests use a fake one). The SLURM executor
//! ([`slurm`]) submits the unfinished cells as one job array whose tasks run
//! [`run_one`], so the markers and resume rules are the same; it records
//! and follows the job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use petseg_io::manifest::Manifest;

pub mod grid;
pub mod slurm;

use grid::{CellSpec, Grid};

/// Marker files of the steps.
pub const TRAIN_DONE: &str = "train.done";
/// Marker of the predict step.
pub const PREDICT_DONE: &str = "predict.done";
/// Marker of a finished cell.
pub const DONE: &str = "DONE";

/// Runs one `petseg` command of a cell.
pub trait Executor: Sync {
    /// Runs `petseg ARGS` for `cell`, logging to `log`; an error when the
    /// command fails.
    fn run(&self, cell: &str, args: &[String], log: &Path) -> Result<()>;
}

/// Runs the `petseg` binary as a child process on this machine.
pub struct Local {
    /// The `petseg` binary.
    pub petseg: PathBuf,
}

impl Executor for Local {
    fn run(&self, cell: &str, args: &[String], log: &Path) -> Result<()> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let status = std::process::Command::new(&self.petseg)
            .args(args)
            .stdout(file.try_clone()?)
            .stderr(file)
            .status()
            .with_context(|| format!("starting {}", self.petseg.display()))?;
        if !status.success() {
            bail!(
                "cell {cell}: `petseg {}` failed ({status}); see {}",
                args.join(" "),
                log.display()
            );
        }
        Ok(())
    }
}

/// The `petseg` a grid runs by default: the CPU build, or the CUDA build of
/// `tools/cuda-check.sh` when a cell runs on CUDA.
pub fn default_petseg(grid: &Grid) -> PathBuf {
    if uses_cuda(grid) {
        PathBuf::from("target-cuda/release/petseg")
    } else {
        PathBuf::from("target/release/petseg")
    }
}

/// How to build the `petseg` a grid needs.
pub fn build_hint(grid: &Grid) -> &'static str {
    if uses_cuda(grid) {
        "its cells run on CUDA: build a CUDA petseg with `bash tools/cuda-check.sh` \
         (CUDA_COMPUTE_CAP of the GPUs), or `CARGO_TARGET_DIR=target-cuda cargo build \
         --release -p petseg-cli --features cuda` where nvcc is installed"
    } else {
        "cargo build --release -p petseg-cli"
    }
}

fn uses_cuda(grid: &Grid) -> bool {
    grid.cells().iter().any(|c| c.device != grid::Device::Cpu)
}

/// Where a sweep writes.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `results/NAME`.
    pub results: PathBuf,
    /// `runs/NAME`.
    pub runs: PathBuf,
}

impl Layout {
    /// `results/NAME` and `runs/NAME` for the grid file `sweeps/NAME.toml`.
    pub fn for_grid(grid_path: &Path) -> Result<Layout> {
        let name = grid_path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("grid file {} has no name", grid_path.display()))?;
        Ok(Layout {
            results: PathBuf::from("results").join(name),
            runs: PathBuf::from("runs").join(name),
        })
    }
}

/// State of a cell on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    /// Nothing done.
    Pending,
    /// Training started (checkpoint present) but not finished.
    Training,
    /// Trained, not yet predicted.
    Trained,
    /// Predicted, not yet evaluated.
    Predicted,
    /// Finished.
    Done,
}

impl std::fmt::Display for CellState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CellState::Pending => "pending",
            CellState::Training => "training",
            CellState::Trained => "trained",
            CellState::Predicted => "predicted",
            CellState::Done => "done",
        })
    }
}

/// The state of `cell`.
pub fn state(layout: &Layout, cell: &CellSpec) -> CellState {
    let res = layout.results.join(&cell.name);
    let run = layout.runs.join(&cell.name);
    if res.join(DONE).is_file() {
        CellState::Done
    } else if res.join(PREDICT_DONE).is_file() {
        CellState::Predicted
    } else if res.join(TRAIN_DONE).is_file() {
        CellState::Trained
    } else if run.join("checkpoint_last.safetensors").is_file() {
        CellState::Training
    } else {
        CellState::Pending
    }
}

fn touch(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The cases a cell evaluates.
fn eval_ids(manifest: &Manifest, grid: &Grid, fold: usize) -> Result<Vec<String>> {
    let split = manifest
        .split
        .as_ref()
        .context("the manifest has no split (run `cargo xtask split` first)")?;
    let ids = if grid.eval_on == "test" {
        split.test.clone()
    } else {
        split
            .folds
            .get(fold)
            .with_context(|| format!("fold {fold} not in the split ({} folds)", split.folds.len()))?
            .val
            .clone()
    };
    if ids.is_empty() {
        bail!("fold {fold}: no {} cases to evaluate", grid.eval_on);
    }
    Ok(ids)
}

/// Writes the cell's evaluation manifest: its cases only, no split; the
/// manifest's root is rewritten so that every case resolves as before.
fn write_eval_manifest(manifest: &Manifest, ids: &[String], path: &Path) -> Result<()> {
    let mut m = manifest.clone();
    m.name = format!("{}-eval", manifest.name);
    m.split = None;
    m.cases = ids
        .iter()
        .map(|id| {
            manifest
                .case(id)
                .cloned()
                .with_context(|| format!("split case {id} is not in the manifest"))
        })
        .collect::<Result<_>>()?;
    m.save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// The command lines of one cell, from its current state (empty when done).
pub fn plan(grid: &Grid, layout: &Layout, cell: &CellSpec) -> Vec<(&'static str, Vec<String>)> {
    let res = layout.results.join(&cell.name);
    let run = layout.runs.join(&cell.name);
    let st = state(layout, cell);
    let s = |p: &Path| p.display().to_string();
    let mut steps = Vec::new();
    match st {
        CellState::Pending => {
            let mut a: Vec<String> = vec![
                "train".into(),
                "--plain".into(),
                "--run-dir".into(),
                s(&run),
                "--manifest".into(),
                s(&grid.manifest),
                "--fold".into(),
                cell.fold.to_string(),
                "--model".into(),
                cell.network.clone(),
                "--loss".into(),
                cell.loss.clone(),
            ];
            for (k, v) in grid
                .train
                .iter()
                .chain(cell.extra.iter().map(|(k, v)| (k, v)))
            {
                a.extend(grid::train_option(k, v));
            }
            steps.push(("train", a));
        }
        CellState::Training => steps.push((
            "train",
            vec![
                "train".into(),
                "--plain".into(),
                "--run-dir".into(),
                s(&run),
                "--resume".into(),
                // the checkpoint keeps the precision; the device is the grid's
                "--device".into(),
                cell.device.to_string(),
            ],
        )),
        _ => {}
    }
    if matches!(
        st,
        CellState::Pending | CellState::Training | CellState::Trained
    ) {
        let mut a: Vec<String> = vec![
            "predict".into(),
            "--run-config".into(),
            s(&run.join("config.toml")),
            "--weights".into(),
            s(&run.join("model_best.safetensors")),
            "--manifest".into(),
            s(&res.join("eval_manifest.json")),
            "--out-dir".into(),
            s(&res.join("preds")),
        ];
        // The cell's device and precision, unless [predict] sets its own.
        if !grid.predict.contains_key("device") {
            a.extend(["--device".into(), cell.device.to_string()]);
        }
        if let Some(p) = cell
            .precision
            .as_ref()
            .filter(|_| !grid.predict.contains_key("precision"))
        {
            a.extend(["--precision".into(), p.clone()]);
        }
        for (k, v) in &grid.predict {
            a.extend(grid::predict_option(k, v));
        }
        steps.push(("predict", a));
    }
    if st != CellState::Done {
        steps.push((
            "evaluate",
            vec![
                "evaluate".into(),
                "--pred".into(),
                s(&res.join("preds")),
                "--manifest".into(),
                s(&res.join("eval_manifest.json")),
                "--out".into(),
                s(&res),
            ],
        ));
    }
    steps
}

/// Runs (or resumes) one cell.
fn run_cell(
    grid: &Grid,
    manifest: &Manifest,
    layout: &Layout,
    cell: &CellSpec,
    exec: &dyn Executor,
) -> Result<()> {
    let res = layout.results.join(&cell.name);
    let run = layout.runs.join(&cell.name);
    std::fs::create_dir_all(res.join("logs"))
        .with_context(|| format!("creating {}", res.display()))?;
    std::fs::create_dir_all(&layout.runs)
        .with_context(|| format!("creating {}", layout.runs.display()))?;
    let ids = eval_ids(manifest, grid, cell.fold)?;
    write_eval_manifest(manifest, &ids, &res.join("eval_manifest.json"))?;
    let mut network = cell.network.clone();
    if !cell.extra.is_empty() {
        let e: Vec<String> = cell.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        network += &format!("[{}]", e.join(","));
    }
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let meta = serde_json::json!({
        "network": network,
        "loss": cell.loss,
        "fold": cell.fold,
        "manifest": abs(&grid.manifest),
        "eval_manifest": abs(&res.join("eval_manifest.json")),
        "predictions": abs(&res.join("preds")),
        "run_dir": abs(&run),
    });
    touch(
        &res.join("cell.json"),
        &(serde_json::to_string_pretty(&meta)? + "\n"),
    )?;
    for (step, mut args) in plan(grid, layout, cell) {
        if step == "predict" {
            // No validation ran → no best model: use the last one.
            if !run.join("model_best.safetensors").is_file() {
                let i = args.iter().position(|a| a == "--weights").expect("planned") + 1;
                args[i] = run.join("model_last.safetensors").display().to_string();
            }
            let preds = res.join("preds");
            if preds.exists() {
                std::fs::remove_dir_all(&preds)
                    .with_context(|| format!("clearing {}", preds.display()))?;
            }
        }
        exec.run(
            &cell.name,
            &args,
            &res.join("logs").join(format!("{step}.log")),
        )?;
        match step {
            "train" => touch(&res.join(TRAIN_DONE), "")?,
            "predict" => touch(&res.join(PREDICT_DONE), "")?,
            _ => touch(&res.join(DONE), "")?,
        }
    }
    Ok(())
}

/// Runs (or resumes) the cell named `name` (a SLURM array task).
pub fn run_one(grid: &Grid, layout: &Layout, exec: &dyn Executor, name: &str) -> Result<()> {
    let cell = grid
        .cells()
        .into_iter()
        .find(|c| c.name == name)
        .with_context(|| format!("no cell {name} in the grid"))?;
    if state(layout, &cell) == CellState::Done {
        return Ok(());
    }
    let path = std::path::absolute(&grid.manifest)
        .with_context(|| format!("resolving {}", grid.manifest.display()))?;
    let manifest =
        Manifest::load(&path).with_context(|| format!("reading manifest {}", path.display()))?;
    run_cell(grid, &manifest, layout, &cell, exec)
}

/// Runs every unfinished cell with `jobs` cells at a time; returns the
/// names of the cells that failed (each failure is reported on stderr and
/// does not stop the others).
pub fn run(grid: &Grid, layout: &Layout, exec: &dyn Executor, jobs: usize) -> Result<Vec<String>> {
    // Absolute, so that the evaluation manifests' roots are rewritten right.
    let path = std::path::absolute(&grid.manifest)
        .with_context(|| format!("resolving {}", grid.manifest.display()))?;
    let manifest =
        Manifest::load(&path).with_context(|| format!("reading manifest {}", path.display()))?;
    let cells: Vec<CellSpec> = grid
        .cells()
        .into_iter()
        .filter(|c| state(layout, c) != CellState::Done)
        .collect();
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(cells.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(cell) = cells.get(i) else { break };
                eprintln!("cell {}: {}", cell.name, state(layout, cell));
                match run_cell(grid, &manifest, layout, cell, exec) {
                    Ok(()) => eprintln!("cell {}: done", cell.name),
                    Err(e) => {
                        eprintln!("cell {}: error: {e:#}", cell.name);
                        failed
                            .lock()
                            .expect("no panics while held")
                            .push(cell.name.clone());
                    }
                }
            });
        }
    });
    let mut f = failed.into_inner().expect("threads joined");
    f.sort();
    Ok(f)
}

/// The grid's cells and their on-disk states, one line each, followed by
/// `scheduler[cell]` when given (the SLURM task's state, see
/// [`slurm::status_column`]).
pub fn status(grid: &Grid, layout: &Layout, scheduler: &BTreeMap<String, String>) -> String {
    let cells = grid.cells();
    let width = cells.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let mut done = 0;
    for c in &cells {
        let st = state(layout, c);
        done += usize::from(st == CellState::Done);
        let line = format!("{:<10} {:<width$}", st.to_string(), c.name);
        match scheduler.get(&c.name) {
            Some(s) => out += &format!("{line}  {s}\n"),
            None => out += &format!("{}\n", line.trim_end()),
        }
    }
    out + &format!("{done}/{} cells done\n", cells.len())
}

#[cfg(test)]
mod tests {
    use petseg_io::manifest::{CaseEntry, Fold, Split};

    use super::*;

    /// Records the steps; fails the `fail` (cell, step) once, after
    /// leaving a checkpoint behind when that step is `train`.
    struct Fake {
        calls: Mutex<Vec<(String, String)>>,
        fail: Option<(String, &'static str)>,
        runs: PathBuf,
    }

    impl Executor for Fake {
        fn run(&self, cell: &str, args: &[String], _log: &Path) -> Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push((cell.to_string(), args.join(" ")));
            let run = self.runs.join(cell);
            if let Some((c, step)) = &self.fail {
                if c == cell && args[0] == *step {
                    if *step == "train" {
                        std::fs::create_dir_all(&run)?;
                        std::fs::write(run.join("checkpoint_last.safetensors"), b"x")?;
                    }
                    bail!("killed");
                }
            }
            Ok(())
        }
    }

    fn setup(dir: &Path) -> (Grid, Layout) {
        let mut m = Manifest::new("toy", dir);
        for i in 0..4 {
            m.cases.push(CaseEntry {
                id: format!("c{i}"),
                patient_id: format!("p{i}"),
                ct: format!("c{i}_ct.nii.gz").into(),
                pet: format!("c{i}_pet.nii.gz").into(),
                label: Some(format!("c{i}_label.nii.gz").into()),
                n_lesions: Some(1),
                tags: BTreeMap::new(),
            });
        }
        m.split = Some(Split {
            seed: 1,
            test: vec![],
            folds: vec![Fold {
                train: vec!["c0".into(), "c1".into()],
                val: vec!["c2".into(), "c3".into()],
            }],
        });
        let mp = dir.join("manifest.json");
        m.save(&mp).unwrap();
        let grid: Grid = toml::from_str(&format!(
            "manifest = {:?}\n[axes]\nnetworks = [\"segresnet\"]\nlosses = [\"dice\", \"l1dfl\"]\n[train]\nepochs = 2\n",
            mp.display().to_string()
        ))
        .unwrap();
        let layout = Layout {
            results: dir.join("results/toy"),
            runs: dir.join("runs/toy"),
        };
        (grid, layout)
    }

    fn fake(layout: &Layout, fail: Option<(&str, &'static str)>) -> Fake {
        Fake {
            calls: Mutex::new(Vec::new()),
            fail: fail.map(|(c, s)| (c.to_string(), s)),
            runs: layout.runs.clone(),
        }
    }

    fn steps(f: &Fake) -> Vec<String> {
        let mut v: Vec<String> = f
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(c, a)| format!("{c}: {}", a.split(' ').next().unwrap()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn runs_every_step_then_skips_finished_cells() {
        let dir = tempfile::tempdir().unwrap();
        let (grid, layout) = setup(dir.path());
        let f = fake(&layout, None);
        assert!(run(&grid, &layout, &f, 2).unwrap().is_empty());
        assert_eq!(steps(&f).len(), 6);
        let train = f
            .calls
            .lock()
            .unwrap()
            .iter()
            .find(|(_, a)| a.starts_with("train"))
            .unwrap()
            .1
            .clone();
        assert!(
            train.contains("--fold 0")
                && train.contains("--epochs 2")
                && train.contains("--model segresnet"),
            "{train}"
        );
        for c in grid.cells() {
            assert_eq!(state(&layout, &c), CellState::Done);
            let cell = layout.results.join(&c.name);
            let m = Manifest::load(&cell.join("eval_manifest.json")).unwrap();
            let ids: Vec<&str> = m.cases.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, ["c2", "c3"]);
            let pet = dir.path().join("c2_pet.nii.gz");
            std::fs::write(&pet, b"").unwrap();
            assert_eq!(
                m.resolve(&m.cases[0].pet).canonicalize().unwrap(),
                pet.canonicalize().unwrap()
            );
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(cell.join("cell.json")).unwrap())
                    .unwrap();
            assert_eq!(meta["loss"], c.loss.as_str());
        }
        let again = fake(&layout, None);
        assert!(run(&grid, &layout, &again, 2).unwrap().is_empty());
        assert!(steps(&again).is_empty());
        assert!(status(&grid, &layout, &BTreeMap::new()).ends_with("2/2 cells done\n"));
        let column = BTreeMap::from([(
            grid.cells()[1].name.clone(),
            "slurm 7_1 COMPLETED".to_string(),
        )]);
        assert_eq!(
            status(&grid, &layout, &column),
            "done       segresnet__dice__fold0\n\
             done       segresnet__l1dfl__fold0  slurm 7_1 COMPLETED\n\
             2/2 cells done\n"
        );
        assert!(plan(&grid, &layout, &grid.cells()[0]).is_empty());
    }

    #[test]
    fn a_failed_step_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (grid, layout) = setup(dir.path());
        let cells = grid.cells();
        let f = fake(&layout, Some((&cells[0].name, "predict")));
        assert_eq!(run(&grid, &layout, &f, 1).unwrap(), [cells[0].name.clone()]);
        assert_eq!(state(&layout, &cells[0]), CellState::Trained);
        assert_eq!(state(&layout, &cells[1]), CellState::Done);
        let again = fake(&layout, None);
        assert!(run(&grid, &layout, &again, 1).unwrap().is_empty());
        let n = &cells[0].name;
        assert_eq!(
            steps(&again),
            [format!("{n}: evaluate"), format!("{n}: predict")]
        );
    }

    #[test]
    fn run_one_runs_only_the_named_cell() {
        let dir = tempfile::tempdir().unwrap();
        let (grid, layout) = setup(dir.path());
        let cells = grid.cells();
        let f = fake(&layout, None);
        run_one(&grid, &layout, &f, &cells[1].name).unwrap();
        assert_eq!(state(&layout, &cells[0]), CellState::Pending);
        assert_eq!(state(&layout, &cells[1]), CellState::Done);
        assert_eq!(steps(&f).len(), 3);
        run_one(&grid, &layout, &f, &cells[1].name).unwrap();
        assert_eq!(steps(&f).len(), 3);
        assert!(run_one(&grid, &layout, &f, "nope").is_err());
    }

    #[test]
    fn the_grid_device_reaches_train_resume_and_predict() {
        let dir = tempfile::tempdir().unwrap();
        let (mut grid, layout) = setup(dir.path());
        grid.train.insert("device".into(), "cuda".into());
        grid.train.insert("precision".into(), "bf16".into());
        let cell = grid.cells().remove(0);
        let plan_of = |grid: &Grid| -> Vec<String> {
            plan(grid, &layout, &cell)
                .into_iter()
                .map(|(_, a)| a.join(" "))
                .collect()
        };
        let steps = plan_of(&grid);
        assert!(
            steps[0].contains("--device cuda") && steps[0].contains("--precision bf16"),
            "{}",
            steps[0]
        );
        assert!(
            steps[1].starts_with("predict")
                && steps[1].contains("--device cuda:0 --precision bf16"),
            "{}",
            steps[1]
        );
        // a resumed run continues on the grid's device (its precision is the checkpoint's)
        let run = layout.runs.join(&cell.name);
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("checkpoint_last.safetensors"), b"x").unwrap();
        let steps = plan_of(&grid);
        assert!(
            steps[0].ends_with("--resume --device cuda:0") && !steps[0].contains("precision"),
            "{}",
            steps[0]
        );
        // [predict]'s own device wins
        grid.predict.insert("device".into(), "cpu".into());
        let predict = plan_of(&grid).remove(1);
        assert!(
            predict.contains("--device cpu") && !predict.contains("cuda"),
            "{predict}"
        );
        assert_eq!(
            default_petseg(&grid),
            Path::new("target-cuda/release/petseg")
        );
        grid.train.remove("device");
        assert_eq!(default_petseg(&grid), Path::new("target/release/petseg"));
    }

    #[test]
    fn interrupted_training_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let (grid, layout) = setup(dir.path());
        let cells = grid.cells();
        let f = fake(&layout, Some((&cells[1].name, "train")));
        assert_eq!(run(&grid, &layout, &f, 1).unwrap(), [cells[1].name.clone()]);
        assert_eq!(state(&layout, &cells[1]), CellState::Training);
        assert!(
            status(&grid, &layout, &BTreeMap::new()).contains("training   segresnet__l1dfl__fold0")
        );
        let again = fake(&layout, None);
        assert!(run(&grid, &layout, &again, 1).unwrap().is_empty());
        let calls = again.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        assert!(
            calls[0].1.starts_with("train --plain --run-dir")
                && calls[0].1.ends_with("--resume --device cpu"),
            "{}",
            calls[0].1
        );
        assert!(calls[0].1.contains("segresnet__l1dfl__fold0"));
    }
}
