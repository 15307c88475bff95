//! Forward + backward time of every loss at [2, 2, 96³] (the study's batch of patches at 96³),
//! next to PyTorch/MONAI measured in the same run by `scripts/bench_torch.py`.
//!
//! usage: `cargo bench -p petseg-losses --bench losses [-- SIZE REPS [LOSS...]]` (defaults 96, 7
//! and every loss).
//! The PyTorch column is skipped with a notice when python3, torch or MONAI is missing.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use petseg_losses::LossConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Sparse labels (about 0.5 % foreground: a few cubes) and logits that roughly follow them.
fn inputs(size: usize, seed: u64) -> Result<(Tensor, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (b, s) = (2usize, size * size * size);
    let mut labels = vec![0u8; b * s];
    let side = (size as f64 * 0.17).round() as usize; // 2 × side³ ≈ 0.5 % of size³ per image
    for (i, img) in labels.chunks_mut(s).enumerate() {
        let at = size / 4 + i * size / 3;
        for z in at..at + side {
            for y in at..at + side {
                for x in at..at + side {
                    img[(z * size + y) * size + x] = 1;
                }
            }
        }
    }
    let noise = Normal::new(0.0f32, 1.5)?;
    let mut logits = vec![0f32; b * 2 * s];
    for bi in 0..b {
        for v in 0..s {
            let shift = if labels[bi * s + v] == 1 { 1.0 } else { -1.0 };
            logits[(bi * 2) * s + v] = noise.sample(&mut rng);
            logits[(bi * 2 + 1) * s + v] = noise.sample(&mut rng) + shift;
        }
    }
    let dims = (b, 2, size, size, size);
    let labels_dims = (b, 1, size, size, size);
    Ok((
        Tensor::from_vec(logits, dims, &Device::Cpu)?,
        Tensor::from_vec(labels, labels_dims, &Device::Cpu)?,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let size: usize = args
        .first()
        .map_or(Ok(96), |s| s.parse())
        .context("SIZE must be an integer")?;
    let reps: usize = args
        .get(1)
        .map_or(Ok(7), |s| s.parse())
        .context("REPS must be an integer")?;
    let (logits, labels) = inputs(size, 7)?;
    let var = Var::from_tensor(&logits)?;
    let losses = [
        ("dice", "dice".parse::<LossConfig>()?),
        ("dice_focal", "dice_focal".parse()?),
        ("l1dfl", "l1dfl".parse()?),
        ("dice_ce", "dice_ce".parse()?),
        ("focal", "focal".parse()?),
    ];
    let mut ours = Vec::new();
    let only: Vec<&String> = args.iter().skip(2).collect();
    for (name, cfg) in losses
        .iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|o| o == n))
    {
        let loss = cfg.build()?;
        let mut times = Vec::new();
        for _ in 0..reps + 1 {
            let t0 = Instant::now();
            let value = loss.forward(var.as_tensor(), &labels)?;
            let grads = value.backward()?;
            let g = grads.get(var.as_tensor()).context("no gradient")?;
            std::hint::black_box(g);
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.remove(0); // warm-up
        ours.push((*name, median(times)));
    }
    let torch = run_torch(size, reps);
    println!("losses forward+backward, [2, 2, {size}³], median of {reps} (ms)");
    println!(
        "{:<12} {:>10} {:>12} {:>8}",
        "loss", "candle", "pytorch", "ratio"
    );
    for (name, ms) in &ours {
        match torch
            .as_ref()
            .ok()
            .and_then(|t| t.get(*name).and_then(|v| v.as_f64()))
        {
            Some(pt) => println!("{name:<12} {ms:>10.1} {pt:>12.1} {:>7.2}x", pt / ms),
            None => println!("{name:<12} {ms:>10.1} {:>12} {:>8}", "-", "-"),
        }
    }
    if let Err(e) = torch {
        println!("(PyTorch figures skipped: {e:#})");
    }
    Ok(())
}

/// Runs the PyTorch peer on the same shape; returns `{loss: ms}`.
fn run_torch(size: usize, reps: usize) -> Result<serde_json::Map<String, serde_json::Value>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_torch.py");
    let out = Command::new("python3")
        .args([
            script,
            "--size",
            &size.to_string(),
            "--reps",
            &reps.to_string(),
        ])
        .output()
        .context("running python3")?;
    anyhow::ensure!(
        out.status.success(),
        "bench_torch.py failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8(out.stdout)?;
    let last = text
        .lines()
        .last()
        .context("bench_torch.py printed nothing")?;
    serde_json::from_str(last).with_context(|| format!("parsing {last}"))
}
