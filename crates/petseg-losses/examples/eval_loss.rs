//! Evaluate a loss on your own tensors: value and gradient with respect to the logits.
//!
//! ```text
//! cargo run --release -p petseg-losses --example eval_loss -- \
//!     --logits L.npy --labels Y.npy --loss l1dfl [--epsilon 0.05] [--gamma 2]
//! ```
//!
//! `L.npy`: logits `[B, C, *spatial]` (f32, f64 or f16); `Y.npy`: class indices
//! `[B, 1, *spatial]` (u8, i32, i64, u32, f32 or f64 holding whole numbers), both little-endian
//! and C order (candle's `.npy` reader; Fortran order and big-endian files are refused). Prints
//! one JSON line: `{"value": …, "grad_l2": …, "grad_sum": …}`. `--config` takes a full loss
//! config as JSON instead of `--loss` (e.g. `'{"name":"dice","include_background":false}'`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};
use clap::Parser;
use petseg_losses::LossConfig;

#[derive(Parser, Debug)]
#[command(about = "Value and logit-gradient of a petseg loss on .npy tensors, as JSON")]
struct Args {
    /// Logits [B, C, *spatial] (.npy).
    #[arg(long)]
    logits: PathBuf,
    /// Class-index labels [B, 1, *spatial] (.npy).
    #[arg(long)]
    labels: PathBuf,
    /// Loss name: dice, focal, dice_focal, l1dfl, dice_ce.
    #[arg(long, default_value = "l1dfl", conflicts_with = "config")]
    loss: String,
    /// Full loss config as JSON (overrides --loss).
    #[arg(long)]
    config: Option<String>,
    /// L1DFL bin width ε.
    #[arg(long)]
    epsilon: Option<f64>,
    /// Focal exponent γ (focal, dice_focal, l1dfl).
    #[arg(long)]
    gamma: Option<f64>,
}

fn config(args: &Args) -> Result<LossConfig> {
    let mut cfg: LossConfig = match &args.config {
        Some(json) => serde_json::from_str(json).context("parsing --config")?,
        None => args.loss.parse()?,
    };
    if let Some(eps) = args.epsilon {
        match &mut cfg {
            LossConfig::L1dfl(l) => l.epsilon = eps,
            other => bail!("--epsilon applies to l1dfl only, not {}", other.name()),
        }
    }
    if let Some(gamma) = args.gamma {
        match &mut cfg {
            LossConfig::L1dfl(l) => l.gamma = gamma,
            LossConfig::Focal(l) => l.gamma = gamma,
            LossConfig::DiceFocal(l) => l.focal.gamma = gamma,
            other => bail!(
                "--gamma applies to focal, dice_focal and l1dfl, not {}",
                other.name()
            ),
        }
    }
    Ok(cfg)
}

fn read(path: &PathBuf, what: &str) -> Result<Tensor> {
    Tensor::read_npy(path).with_context(|| format!("reading {what} from {}", path.display()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let loss = config(&args)?.build()?;
    let logits = read(&args.logits, "logits")?;
    let labels = read(&args.labels, "labels")?;
    let var = Var::from_tensor(&logits)?;
    let value = loss.forward(var.as_tensor(), &labels).with_context(|| {
        format!(
            "evaluating {} on {} and {}",
            loss.name(),
            args.logits.display(),
            args.labels.display()
        )
    })?;
    let grads = value.backward()?;
    let grad = grads
        .get(var.as_tensor())
        .context("no gradient for the logits")?
        .to_dtype(DType::F64)?;
    let out = serde_json::json!({
        "value": value.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        "grad_l2": grad.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?,
        "grad_sum": grad.sum_all()?.to_scalar::<f64>()?,
    });
    println!("{out}");
    Ok(())
}
