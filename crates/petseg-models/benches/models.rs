//! Forward and training-step timings of the study networks, with peak RSS.
//!
//! ```text
//! cargo bench -p petseg-models --bench models                      # both networks, 96³
//! cargo bench -p petseg-models --bench models -- segresnet 64 3    # one network, size, steps
//! cargo bench -p petseg-models --bench models -- all 64 3          # both networks, size, steps
//! cargo bench -p petseg-models --bench models -- segresnet 64 2 bf16  # autocast: bf16 activations
//! python3 crates/petseg-models/scripts/bench_monai.py               # the MONAI/PyTorch peer
//! ```
//!
//! Without a network argument (or with `all`) the binary runs itself once per network, so that each
//! network's peak RSS (`VmHWM`) is measured in its own process. A run: one eval forward
//! (warm-up), `steps` timed eval forwards, then `steps + 1` training steps (train-mode
//! forward, the loss below, backward, AdamW step), the first untimed. Input
//! `[1, 2, S, S, S]` ~ N(0, 1) from a fixed seed, labels `x[:, 0] > 0`.
//! Loss: `−mean(Σ_c onehot · log_softmax(y, 1))` (cross-entropy), as in the peer.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use petseg_models::ModelConfig;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn input(size: usize) -> candle_core::Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 2 * size * size * size;
    // Box–Muller: standard normal values from the seeded generator.
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2) = (1.0 - rng.random::<f32>(), rng.random::<f32>());
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    Tensor::from_vec(v, (1, 2, size, size, size), &Device::Cpu)
}

fn run(
    name: &str,
    size: usize,
    steps: usize,
    dtype: DType,
) -> Result<(), Box<dyn std::error::Error>> {
    let cfg: ModelConfig = name.parse()?;
    let varmap = VarMap::new();
    let net = cfg.build_seeded(&varmap, 0, &Device::Cpu)?;
    let x = input(size)?;
    let fg = x.narrow(1, 0, 1)?.gt(0.0)?.to_dtype(DType::F32)?;
    let onehot = Tensor::cat(&[&(1.0 - &fg)?, &fg], 1)?;

    net.forward_t(&x, false)?;
    let t = Instant::now();
    for _ in 0..steps {
        net.forward_t(&x, false)?;
    }
    let fwd = t.elapsed().as_secs_f64() / steps as f64;

    let params = ParamsAdamW {
        lr: 2e-4,
        weight_decay: 1e-5,
        ..Default::default()
    };
    let mut opt = AdamW::new(varmap.all_vars(), params)?;
    // autocast as in petseg-train: f32 parameters, the input (hence the
    // activations) in `dtype`, the logits back in f32 for the loss
    let xin = x.to_dtype(dtype)?;
    let mut step = || -> candle_core::Result<f32> {
        let y = net.forward_t(&xin, true)?.to_dtype(DType::F32)?;
        let logp = candle_nn::ops::log_softmax(&y, 1)?;
        let loss = (onehot.mul(&logp)?.sum_keepdim(1)?.mean_all()? * -1.0)?;
        opt.backward_step(&loss)?;
        loss.to_scalar::<f32>()
    };
    step()?;
    let t = Instant::now();
    let mut last = 0.0;
    for _ in 0..steps {
        last = step()?;
    }
    let train = t.elapsed().as_secs_f64() / steps as f64;
    let rss = peak_rss_mb().map_or("n/a".to_string(), |m| format!("{m:.0} MB"));
    println!(
        "{name:<15} [1,2,{size}³] threads={} forward {fwd:.2} s  train step ({dtype:?}) {train:.2} s  peak RSS {rss}  (loss {last:.4})",
        rayon_threads()
    );
    Ok(())
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism().map_or("?".into(), |n| n.get().to_string())
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // as the `petseg` binary does (PETSEG_MALLOC=system to compare with glibc's defaults)
    petseg_ops3d::alloc::retain_freed_memory();
    // cargo passes `--bench`; keep only our positional arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let size = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(96);
    let steps = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let dtype = match args.get(3).map(String::as_str) {
        None | Some("f32") => DType::F32,
        Some("bf16") => DType::BF16,
        Some(other) => return Err(format!("unknown precision {other:?} (f32 or bf16)").into()),
    };
    match args.first().map(String::as_str) {
        Some(name) if name != "all" => run(name, size, steps, dtype),
        _ => {
            let exe = std::env::current_exe()?;
            for name in ["segresnet", "attention_unet"] {
                let status = std::process::Command::new(&exe)
                    .args([name, &size.to_string(), &steps.to_string()])
                    .args(args.get(3))
                    .status()?;
                if !status.success() {
                    return Err(format!("{name} benchmark failed: {status}").into());
                }
            }
            Ok(())
        }
    }
}
