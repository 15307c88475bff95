//! AdamW with inspectable moments, matching PyTorch's `torch.optim.AdamW`
//! (single-tensor path, `amsgrad=False`, `maximize=False`) step for step.
//!
//! candle-nn 0.11.1's `AdamW` keeps its moments private, so a checkpoint
//! could not hold them and a resumed run would restart the moments at zero.
//! This one stores them as plain `f32` vectors keyed by parameter name
//! (sorted), so they can be saved and restored exactly. The update is done
//! on the host in f32 with PyTorch's operation order:
//!
//! ```text
//! θ ← θ·(1 − lr·λ)
//! m ← m + (g − m)·(1 − β₁)          (lerp)
//! v ← v·β₂ + (1 − β₂)·g²
//! θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! Parameters without a gradient in a step (e.g. BatchNorm running
//! statistics) are left untouched, as in PyTorch.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters (defaults: `docs/method/training.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    /// Peak learning rate (study: 2e-4).
    pub lr: f64,
    /// Decoupled weight decay λ (study: 1e-5).
    pub weight_decay: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 2e-4,
            weight_decay: 1e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl AdamWConfig {
    /// Checks ranges (lr ≥ 0, λ ≥ 0, β in [0, 1), ε > 0).
    pub fn validate(&self) -> Result<()> {
        let ok = self.lr.is_finite()
            && self.lr >= 0.0
            && self.weight_decay.is_finite()
            && self.weight_decay >= 0.0
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps.is_finite()
            && self.eps > 0.0;
        if !ok {
            return Err(TrainError::Config(format!(
                "optimizer (lr {}, weight_decay {}, betas [{}, {}], eps {}): need lr >= 0, \
                 weight_decay >= 0, betas in [0, 1), eps > 0",
                self.lr, self.weight_decay, self.beta1, self.beta2, self.eps
            )));
        }
        Ok(())
    }
}

/// The first and second moments of one parameter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Moments {
    /// `exp_avg` (m).
    pub exp_avg: Vec<f32>,
    /// `exp_avg_sq` (v).
    pub exp_avg_sq: Vec<f32>,
    /// Steps taken by this parameter (PyTorch keeps one per parameter).
    pub step: u64,
}

/// AdamW over named variables.
#[derive(Debug)]
pub struct AdamW {
    vars: Vec<(String, Var)>,
    config: AdamWConfig,
    lr: f64,
    state: BTreeMap<String, Moments>,
}

impl AdamW {
    /// An optimiser over `vars` (name → variable; sorted by name internally).
    pub fn new(vars: impl IntoIterator<Item = (String, Var)>, config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        let mut vars: Vec<(String, Var)> = vars.into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(AdamW {
            vars,
            lr: config.lr,
            config,
            state: BTreeMap::new(),
        })
    }

    /// The current learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate used by the next steps (schedulers).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The moments of every parameter that has taken a step, by name.
    pub fn state(&self) -> &BTreeMap<String, Moments> {
        &self.state
    }

    /// Restores moments saved by [`AdamW::state`]; each must name a known
    /// parameter and have its number of elements.
    pub fn load_state(&mut self, state: BTreeMap<String, Moments>) -> Result<()> {
        for (name, m) in &state {
            let var = self.vars.iter().find(|(n, _)| n == name).ok_or_else(|| {
                TrainError::Config(format!("optimizer state for unknown parameter {name}"))
            })?;
            let n = var.1.elem_count();
            if m.exp_avg.len() != n || m.exp_avg_sq.len() != n {
                return Err(TrainError::Shape(format!(
                    "optimizer state of {name}: {}/{} values, parameter has {n}",
                    m.exp_avg.len(),
                    m.exp_avg_sq.len()
                )));
            }
        }
        self.state = state;
        Ok(())
    }

    /// One AdamW step with the gradients in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        let lr = self.lr;
        for (name, var) in &self.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g: Vec<f32> = g
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1()?;
            let mut p: Vec<f32> = var
                .as_tensor()
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1()?;
            let st = self.state.entry(name.clone()).or_insert_with(|| Moments {
                exp_avg: vec![0.0; p.len()],
                exp_avg_sq: vec![0.0; p.len()],
                step: 0,
            });
            st.step += 1;
            let decay = (1.0 - lr * c.weight_decay) as f32;
            let one_minus_b1 = (1.0 - c.beta1) as f32;
            let b2 = c.beta2 as f32;
            let one_minus_b2 = (1.0 - c.beta2) as f32;
            let bc1 = 1.0 - c.beta1.powi(st.step as i32);
            let bc2 = 1.0 - c.beta2.powi(st.step as i32);
            let step_size = (lr / bc1) as f32;
            let bc2_sqrt = bc2.sqrt() as f32;
            let eps = c.eps as f32;
            for i in 0..p.len() {
                p[i] *= decay;
                let m = &mut st.exp_avg[i];
                *m += (g[i] - *m) * one_minus_b1;
                let v = &mut st.exp_avg_sq[i];
                *v = *v * b2 + one_minus_b2 * g[i] * g[i];
                let denom = v.sqrt() / bc2_sqrt + eps;
                p[i] += -step_size * (*m / denom);
            }
            let t = Tensor::from_vec(p, var.shape(), var.device())?.to_dtype(var.dtype())?;
            var.set(&t)?;
        }
        Ok(())
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`
/// (PyTorch `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when
/// below 1). Returns the norm before clipping.
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * coef)?);
            }
        }
    }
    Ok(norm)
}

/// The learning rate of `epoch` (0-based) for a run of `epochs` epochs:
/// linear warm-up from `lr/warmup` over `warmup` epochs, then PyTorch's
/// `CosineAnnealingLR(T_max = epochs − warmup, eta_min = 0)` stepped per
/// epoch: `lr · (1 + cos(π·e/T)) / 2`.
pub fn cosine_lr(base_lr: f64, epoch: usize, epochs: usize, warmup: usize) -> f64 {
    if epoch < warmup {
        return base_lr * (epoch + 1) as f64 / warmup as f64;
    }
    let t_max = epochs.saturating_sub(warmup).max(1) as f64;
    let e = (epoch - warmup) as f64;
    base_lr * (1.0 + (std::f64::consts::PI * e / t_max).cos()) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_starts_at_lr_and_decays_to_zero() {
        assert_eq!(cosine_lr(2e-4, 0, 10, 0), 2e-4);
        assert!((cosine_lr(2e-4, 5, 10, 0) - 1e-4).abs() < 1e-12);
        assert!(cosine_lr(2e-4, 9, 10, 0) < 1e-5);
        assert!((cosine_lr(1.0, 0, 10, 2) - 0.5).abs() < 1e-12);
        assert_eq!(cosine_lr(1.0, 2, 10, 2), 1.0);
    }
}
