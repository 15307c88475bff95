//! Runs the `eval_loss` example binary on fixture tensors written as .npy and checks its JSON
//! against the MONAI/PyTorch fixture values.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{load_case, load_meta, rel};

/// The example binary. `cargo test` builds a package's examples next to the
/// test binaries (`target/<profile>/examples/`), so use that one; only when a
/// filtered run did not build it, build it here (slow: it may wait on the
/// cargo lock and resolve features for this package alone).
fn example_binary() -> PathBuf {
    let profile_dir = std::env::current_exe()
        .expect("test binary path")
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .to_path_buf();
    let bin = profile_dir.join("examples").join("eval_loss");
    if bin.is_file() {
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "-q",
        "-p",
        "petseg-losses",
        "--example",
        "eval_loss",
    ]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo");
    assert!(status.success(), "building the example failed");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

#[test]
fn eval_loss_prints_value_and_gradient_json() {
    let bin = example_binary();
    let dir = tempfile::tempdir().unwrap();
    let arrays = load_case("batch2");
    let (logits, labels) = (dir.path().join("logits.npy"), dir.path().join("labels.npy"));
    arrays["logits"].write_npy(&logits).unwrap();
    arrays["labels"]
        .to_dtype(candle_core::DType::I64)
        .unwrap()
        .write_npy(&labels)
        .unwrap();
    let meta = load_meta();
    for (name, flags) in [
        ("dice", vec!["--loss", "dice"]),
        ("l1dfl_eps005", vec!["--loss", "l1dfl", "--epsilon", "0.05"]),
        ("dice_focal", vec!["--loss", "dice_focal", "--gamma", "2"]),
    ] {
        let out = Command::new(&bin)
            .arg("--logits")
            .arg(&logits)
            .arg("--labels")
            .arg(&labels)
            .args(&flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let reference = meta["cases"]["batch2"]["losses"][name]["value"]
            .as_f64()
            .unwrap();
        assert!(
            rel(json["value"].as_f64().unwrap(), reference) < 1e-5,
            "{name}: {json} vs {reference}"
        );
        let grad: Vec<f64> = arrays[&format!("grad_{name}")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&g| g as f64)
            .collect();
        let l2 = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        let sum: f64 = grad.iter().sum();
        assert!(
            rel(json["grad_l2"].as_f64().unwrap(), l2) < 1e-5,
            "{name}: {json} vs l2 {l2}"
        );
        assert!(
            (json["grad_sum"].as_f64().unwrap() - sum).abs() < 1e-5 * l2,
            "{name}: {json} vs sum {sum}"
        );
    }
    // bad input: a clear error and a non-zero exit
    let out = Command::new(&bin)
        .arg("--logits")
        .arg(&logits)
        .arg("--labels")
        .arg(&logits)
        .args(["--loss", "dice"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("labels"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&bin)
        .arg("--logits")
        .arg(&logits)
        .arg("--labels")
        .arg(&labels)
        .args(["--loss", "dice", "--epsilon", "0.1"])
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("--epsilon applies to l1dfl only")
    );
}
