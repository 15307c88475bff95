//! The smoke sweep for real (ignored by default: it trains two tiny
//! networks, ~2 minutes on 2 cores). Run it with
//!
//! ```text
//! cargo build --release -p petseg-cli
//! cargo test --release -p xtask --test smoke_sweep -- --ignored
//! ```
//!
//! (`PETSEG_BIN` overrides the `petseg` binary, default
//! `target/release/petseg`.) It writes the synthetic cohort, splits it,
//! starts `cargo xtask sweep --grid sweeps/smoke.toml`, kills the sweep
//! (and its `petseg` child) once the first cell has a checkpoint, reruns
//! it, and checks that the interrupted training was resumed, every cell
//! finished, a second run does nothing, and the report is built.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "trains two tiny networks (~2 min); run with --ignored"]
fn smoke_sweep_survives_a_kill_and_reports() {
    let petseg = std::env::var_os("PETSEG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/petseg"));
    assert!(petseg.is_file(), "build petseg first: {}", petseg.display());
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let grid = root().join("sweeps/smoke.toml");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(Command::new(&petseg).current_dir(dir).args([
        "phantom",
        "--out",
        "data/smoke",
        "--cases",
        "8",
        "--size",
        "small",
        "--seed",
        "1",
    ]));
    ok(Command::new(xtask).current_dir(dir).args([
        "split",
        "--manifest",
        "data/smoke/manifest.json",
        "--out",
        "data-manifests/smoke.json",
        "--val",
        "3",
        "--seed",
        "1",
    ]));
    let sweep = |cmd: &mut Command| {
        cmd.current_dir(dir)
            .arg("sweep")
            .arg("--grid")
            .arg(&grid)
            .arg("--petseg")
            .arg(&petseg);
    };

    // Start, and kill the whole process group once the first cell has a
    // checkpoint but has not finished training.
    let mut first = Command::new(xtask);
    sweep(&mut first);
    let mut child = first
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cell0 = "segresnet__dice__fold0";
    let ckpt = dir
        .join("runs/smoke")
        .join(cell0)
        .join("checkpoint_last.safetensors");
    let t0 = Instant::now();
    while !ckpt.is_file() {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]));
    child.wait().unwrap();
    let status = ok(Command::new(xtask)
        .current_dir(dir)
        .args(["sweep", "status", "--grid"])
        .arg(&grid));
    assert!(status.contains(&format!("training   {cell0}")), "{status}");
    assert!(status.contains("0/2 cells done"), "{status}");

    // Rerun: resumes the first cell, runs the second.
    let mut again = Command::new(xtask);
    sweep(&mut again);
    let out = ok(&mut again);
    assert!(out.contains("2/2 cells done"), "{out}");
    let cell_dir = |c: &str| dir.join("results/smoke").join(c);
    let train_log = std::fs::read_to_string(cell_dir(cell0).join("logs/train.log")).unwrap();
    assert!(train_log.contains("epoch 2/2"), "{train_log}");
    assert!(
        !train_log.contains("epoch 1/2"),
        "training restarted instead of resuming:\n{train_log}"
    );
    for c in [cell0, "segresnet__l1dfl__fold0"] {
        for f in ["DONE", "patients.csv", "lesions.csv", "cell.json"] {
            assert!(cell_dir(c).join(f).is_file(), "{c}/{f} missing");
        }
    }

    // A finished sweep does nothing; the report is built from it.
    let mut third = Command::new(xtask);
    sweep(&mut third);
    let t_done: u64 = mtime(&cell_dir(cell0).join("DONE"));
    ok(&mut third);
    assert_eq!(mtime(&cell_dir(cell0).join("DONE")), t_done);
    ok(Command::new(xtask)
        .current_dir(dir)
        .args(["report", "--results", "results/smoke"]));
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("results/smoke/report/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["table1"].as_array().unwrap().len(), 2);
    assert_eq!(report["table1"][1]["wilcoxon"][0]["baseline"], "dice");
}

fn mtime(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
