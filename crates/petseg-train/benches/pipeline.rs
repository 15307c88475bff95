//! The two timings users plan a study with: one training step and one
//! whole-volume prediction, each with its peak RSS.
//!
//! ```text
//! cargo bench -p petseg-train --bench pipeline                       # both, study sizes
//! cargo bench -p petseg-train --bench pipeline -- step 96 3          # train step: size, steps
//! cargo bench -p petseg-train --bench pipeline -- infer 192,192,320 96
//! python3 crates/petseg-train/scripts/bench_monai_pipeline.py        # the MONAI peer
//! ```
//!
//! * `step`: the study's SegResNet (`docs/method/networks.md` §2) on `[1, 2, S³]`, DiceCE loss
//!   (MONAI `DiceCELoss(to_onehot_y=True, softmax=True)` in the peer), our
//!   AdamW (lr 2e-4, wd 1e-5), gradient clipping at 12 — the trainer's own
//!   step. One untimed step, then `steps` timed ones.
//! * `infer`: the same network in eval mode over a `[1, 2, ni, nj, nk]`
//!   volume by sliding window (roi `R³`, overlap 0.25, gaussian blending,
//!   one window per call), softmax probabilities accumulated in f32 on the
//!   CPU — what `petseg predict` does before resampling.
//!
//! Inputs are N(0, 1) from a fixed seed, labels `x[:, 0] > 1` (about 16 %
//! foreground). Without arguments each benchmark runs in its own process so
//! that the peak RSS (`VmHWM`) is its own.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use petseg_losses::LossConfig;
use petseg_models::ModelConfig;
use petseg_train::optim::{clip_grad_norm, AdamW, AdamWConfig};
use petseg_train::predict::{network_probabilities, PredictConfig};
use petseg_train::{BlendMode, SlidingWindowConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

type BenchResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `n` standard normal values from a fixed seed (Box–Muller).
fn normal(n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|_| {
            let (u1, u2) = (1.0 - rng.random::<f32>(), rng.random::<f32>());
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

/// The study's SegResNet (`docs/method/networks.md` §2).
fn study_segresnet() -> BenchResult<ModelConfig> {
    Ok("segresnet".parse()?)
}

fn train_step(size: usize, steps: usize) -> BenchResult<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let net = study_segresnet()?.build_seeded(&varmap, 0, &dev)?;
    let vars: Vec<(String, Var)> = {
        let data = varmap.data().lock().expect("varmap lock");
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let plain: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(
        vars,
        AdamWConfig {
            lr: 2e-4,
            weight_decay: 1e-5,
            ..Default::default()
        },
    )?;
    let loss_fn = "dice_ce".parse::<LossConfig>()?.build()?;
    let shape = (1, 2, size, size, size);
    let x = Tensor::from_vec(normal(2 * size * size * size), shape, &dev)?;
    let y = x
        .narrow(1, 0, 1)?
        .gt(1.0)?
        .to_dtype(candle_core::DType::F32)?;
    let mut step = || -> BenchResult<f32> {
        let logits = net.forward_t(&x, true)?;
        let loss = loss_fn.forward(&logits, &y)?;
        let mut grads = loss.backward()?;
        clip_grad_norm(&plain, &mut grads, 12.0)?;
        opt.step(&grads)?;
        Ok(loss.to_scalar::<f32>()?)
    };
    step()?;
    let t = Instant::now();
    let mut last = 0.0;
    for _ in 0..steps {
        last = step()?;
    }
    let secs = t.elapsed().as_secs_f64() / steps as f64;
    println!(
        "step  segresnet [1,2,{size}³] dice_ce: {secs:.3} s/step  peak RSS {:.0} MB  (threads {}, last loss {last:.4})",
        peak_rss_mb(),
        rayon::current_num_threads()
    );
    Ok(())
}

fn inference(shape: [usize; 3], roi: usize) -> BenchResult<()> {
    let varmap = VarMap::new();
    let cfg = study_segresnet()?;
    cfg.build_seeded(&varmap, 0, &Device::Cpu)?;
    // As `petseg predict` does: weights as plain tensors, no autograd graph.
    let net = cfg.build_frozen(&varmap, &Device::Cpu)?;
    let n: usize = shape.iter().product();
    let image = normal(2 * n);
    let cfg = PredictConfig {
        window: SlidingWindowConfig {
            roi: [roi; 3],
            overlap: 0.25,
            mode: BlendMode::Gaussian,
            sw_batch_size: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let t = Instant::now();
    let p = network_probabilities(net.as_ref(), &Device::Cpu, &image, 2, shape, &cfg)?;
    let secs = t.elapsed().as_secs_f64();
    let fg = p[n..].iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    println!(
        "infer segresnet [1,2,{},{},{}] roi {roi}³ overlap 0.25 gaussian: {secs:.1} s  peak RSS {:.0} MB  (threads {}, mean p(fg) {fg:.4})",
        shape[0],
        shape[1],
        shape[2],
        peak_rss_mb(),
        rayon::current_num_threads()
    );
    Ok(())
}

fn parse_shape(s: &str) -> BenchResult<[usize; 3]> {
    let v: Vec<usize> = s.split(',').map(str::parse).collect::<Result<_, _>>()?;
    match v.as_slice() {
        &[a, b, c] => Ok([a, b, c]),
        _ => Err(format!("shape {s:?}: expected three comma-separated sizes").into()),
    }
}

fn main() -> BenchResult<()> {
    // as the `petseg` binary does (PETSEG_MALLOC=system to compare with glibc's defaults)
    petseg_ops3d::alloc::retain_freed_memory();
    // `cargo bench` passes `--bench`; drop flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        Some("step") => train_step(
            arg(1).unwrap_or("96").parse()?,
            arg(2).unwrap_or("3").parse()?,
        ),
        Some("infer") => inference(
            parse_shape(arg(1).unwrap_or("192,192,320"))?,
            arg(2).unwrap_or("96").parse()?,
        ),
        None => {
            let exe = std::env::current_exe()?;
            for sub in ["step", "infer"] {
                let status = std::process::Command::new(&exe).arg(sub).status()?;
                if !status.success() {
                    return Err(format!("{sub} failed: {status}").into());
                }
            }
            Ok(())
        }
        Some(other) => Err(format!("unknown benchmark {other:?} (step or infer)").into()),
    }
}
