//! `petseg train` end to end: a run killed with SIGKILL mid-epoch and
//! resumed ends with the same weights as an uninterrupted run; bad input
//! gives a clear error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use petseg_io::manifest::{Fold, Split};
use petseg_io::phantom::{write_cohort, PhantomConfig, Size};

fn petseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_petseg"))
}

/// Four small synthetic cases with a one-fold split, and a tiny run config.
fn setup(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let mut m = write_cohort(&data, &PhantomConfig::new(Size::Small), 4, 11).unwrap();
    let ids: Vec<String> = m.cases.iter().map(|c| c.id.clone()).collect();
    // Group-safe: one fold with every case in training, none in validation.
    m.split = Some(Split {
        seed: 11,
        test: vec![],
        folds: vec![Fold {
            train: ids,
            val: vec![],
        }],
    });
    let mpath = data.join("manifest.json");
    m.save(&mpath).unwrap();
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
seed = 3
run_dir = "unused"
checkpoint_every_steps = 1
[data]
manifest = {:?}
[model]
name = "segresnet"
init_filters = 4
norm_groups = 2
blocks_down = [1, 1]
blocks_up = [1]
[preprocess]
spacing_mm = [4.0, 4.0, 4.0]
[augment]
patch_size = [16, 16, 16]
[schedule]
epochs = 3
batch_size = 2
steps_per_epoch = 4
[validation]
every_epochs = 0
"#,
            mpath.display().to_string()
        ),
    )
    .unwrap();
    cfg
}

/// Fails with the command's stderr unless it exited successfully.
fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn global_step(run: &Path) -> Option<u64> {
    let p = run.join("checkpoint_last.safetensors");
    petseg_train::checkpoint::read_state(&p)
        .ok()
        .map(|s| s.global_step)
}

#[test]
fn sigkill_mid_epoch_then_resume_matches_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let out = petseg()
        .args(["train", "--plain", "--config"])
        .arg(&cfg)
        .arg("--run-dir")
        .arg(&a)
        .output()
        .unwrap();
    assert_succeeded(&out);
    assert!(a.join("config.toml").exists());

    let mut child = petseg()
        .args(["train", "--plain", "--config"])
        .arg(&cfg)
        .arg("--run-dir")
        .arg(&b)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill once a checkpoint in the middle of epoch 1 exists (steps 5..7 of 12).
    let t0 = Instant::now();
    loop {
        if global_step(&b).is_some_and(|s| s >= 5) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("run finished before it could be killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = global_step(&b).unwrap();
    assert!(killed_at < 12, "killed after the end ({killed_at})");

    let out = petseg()
        .args(["train", "--plain", "--resume", "--run-dir"])
        .arg(&b)
        .output()
        .unwrap();
    assert_succeeded(&out);
    let wa = std::fs::read(a.join("model_last.safetensors")).unwrap();
    let wb = std::fs::read(b.join("model_last.safetensors")).unwrap();
    assert!(
        wa == wb,
        "resumed weights differ (killed at step {killed_at})"
    );
    assert_eq!(global_step(&b), Some(12));
    // No temporary checkpoint files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&b)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.len() <= 1, "{leftovers:?}");
}

#[test]
fn missing_file_and_bad_option_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    // A manifest pointing at a missing file.
    let m = tmp.path().join("data/manifest.json");
    let manifest = petseg_io::manifest::Manifest::load(&m).unwrap();
    let pet = manifest.resolve(&manifest.cases[0].pet);
    std::fs::remove_file(&pet).unwrap();
    let first_pet = pet.file_name().unwrap().to_string_lossy().to_string();
    let out = petseg()
        .args(["train", "--plain", "--config"])
        .arg(&cfg)
        .arg("--run-dir")
        .arg(tmp.path().join("r"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&first_pet), "{err}");

    let out = petseg()
        .args(["train", "--config"])
        .arg(&cfg)
        .args(["--set", "schedule.batch_size=0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch_size"));
}

/// `--precision bf16` through the binary: training warns that bf16 is slow
/// on the CPU, records the precision in the resolved config, writes f32
/// weights, and `petseg predict --precision bf16` segments a case with them.
#[test]
fn bf16_train_and_predict_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    let run = tmp.path().join("bf16");
    let out = petseg()
        .args(["train", "--plain", "--precision", "bf16", "--epochs", "1"])
        .args(["--set", "schedule.steps_per_epoch=2", "--config"])
        .arg(&cfg)
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("bf16 on the CPU is slower than f32"), "{err}");
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("precision = \"bf16\""), "{saved}");
    assert!(saved.contains("device = \"cpu\""), "{saved}");

    let m = petseg_io::manifest::Manifest::load(&tmp.path().join("data/manifest.json")).unwrap();
    let case = &m.cases[0];
    let mask = tmp.path().join("mask.nii.gz");
    let out = petseg()
        .args([
            "predict",
            "--precision",
            "bf16",
            "--roi",
            "16",
            "--run-config",
        ])
        .arg(run.join("config.toml"))
        .arg("--weights")
        .arg(run.join("model_last.safetensors"))
        .arg("--ct")
        .arg(m.resolve(&case.ct))
        .arg("--pet")
        .arg(m.resolve(&case.pet))
        .arg("--out")
        .arg(&mask)
        .output()
        .unwrap();
    assert_succeeded(&out);
    let pet = petseg_io::nifti::read_nifti_f32(m.resolve(&case.pet)).unwrap();
    let pred = petseg_io::nifti::read_nifti_f32(&mask).unwrap();
    assert_eq!(pred.shape(), pet.shape());
}
