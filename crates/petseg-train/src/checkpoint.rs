//! Checkpoints of a training run, written atomically.
//!
//! One resumable checkpoint is a single safetensors file:
//! * the network's variables under MONAI `state_dict` keys (BatchNorm
//!   running statistics included), f32;
//! * the AdamW moments as `__optim__.exp_avg.<key>` and
//!   `__optim__.exp_avg_sq.<key>`;
//! * the metadata entry `petseg_state`, a JSON [`TrainState`]: next epoch
//!   and step, global step, learning rate, per-parameter optimiser step
//!   counts, best metric, and the full run config.
//!
//! Random state: every random choice of a run is a pure function of the
//! seed and the (epoch, sample) or step counters ([`petseg_augment::rng`]),
//! so these counters *are* the generator state.
//!
//! Weights-only files (`model_last.safetensors`, `model_best.safetensors`)
//! hold just the MONAI keys and load with `petseg_models::weights`.
//!
//! Every file is written to a temporary sibling, synced, then renamed over
//! the target: a crash mid-write leaves the previous file intact.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Tensor};
use candle_nn::VarMap;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::optim::Moments;

const OPT_M: &str = "__optim__.exp_avg.";
const OPT_V: &str = "__optim__.exp_avg_sq.";
const STATE_KEY: &str = "petseg_state";

/// Where a run stands (everything except tensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch to run next (0-based).
    pub epoch: usize,
    /// The step within `epoch` to run next.
    pub step_in_epoch: usize,
    /// Optimiser steps taken so far.
    pub global_step: u64,
    /// Learning rate of `epoch` (the schedule position).
    pub lr: f64,
    /// Sum of the step losses of `epoch` so far (for its mean).
    pub epoch_loss_sum: f64,
    /// Optimiser step count of each parameter.
    pub optimizer_steps: BTreeMap<String, u64>,
    /// Best validation mean DSC so far, and its epoch.
    pub best: Option<(f64, usize)>,
    /// The run's configuration.
    pub config: RunConfig,
}

/// Marks the temporary siblings of [`write_atomic`]: `.{name}{TMP_MARK}{pid}`.
const TMP_MARK: &str = ".tmp-";

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| TrainError::file(path, "not a file path"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}{TMP_MARK}{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::file(path, e)
    })
}

/// Removes the temporary files that a process killed inside
/// [`write_atomic`] left in `dir` (the targets themselves are intact), and
/// returns how many. A run folder belongs to one training process, so the
/// trainer calls this when it starts or resumes.
pub fn remove_stale_temporaries(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(TrainError::file(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::file(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_temporary = name.starts_with('.')
            && name
                .rsplit_once(TMP_MARK)
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if is_temporary && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path()).map_err(|e| TrainError::file(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A named tensor as (key, shape, values).
type Named<T> = (String, Vec<usize>, Vec<T>);

/// The network's variables as (key, shape, f32 values), sorted by key.
fn var_values(varmap: &VarMap) -> Result<Vec<Named<f32>>> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(data.len());
    for (name, var) in data.iter() {
        let v: Vec<f32> = var
            .as_tensor()
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1()?;
        out.push((name.clone(), var.dims().to_vec(), v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn serialize(
    entries: &[(String, Vec<usize>, Vec<u8>)],
    meta: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views = entries
        .iter()
        .map(|(k, shape, bytes)| {
            TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| TrainError::Config(format!("tensor {k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, meta).map_err(|e| TrainError::Config(format!("safetensors: {e}")))
}

/// Saves the network's weights only (MONAI keys), atomically.
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let entries: Vec<_> = var_values(varmap)?
        .into_iter()
        .map(|(k, s, v)| (k, s, f32_bytes(&v)))
        .collect();
    write_atomic(path, &serialize(&entries, None)?)
}

/// Saves a resumable checkpoint, atomically.
pub fn save_checkpoint(
    path: &Path,
    varmap: &VarMap,
    moments: &BTreeMap<String, Moments>,
    state: &TrainState,
) -> Result<()> {
    let mut entries: Vec<_> = var_values(varmap)?
        .into_iter()
        .map(|(k, s, v)| (k, s, f32_bytes(&v)))
        .collect();
    for (k, m) in moments {
        let n = m.exp_avg.len();
        entries.push((format!("{OPT_M}{k}"), vec![n], f32_bytes(&m.exp_avg)));
        entries.push((format!("{OPT_V}{k}"), vec![n], f32_bytes(&m.exp_avg_sq)));
    }
    let json = serde_json::to_string(state).map_err(|e| TrainError::Config(e.to_string()))?;
    let meta = HashMap::from([(STATE_KEY.to_string(), json)]);
    write_atomic(path, &serialize(&entries, Some(meta))?)
}

/// A loaded checkpoint: state, optimiser moments, and the weights already
/// copied into the given `VarMap`.
#[derive(Debug)]
pub struct Loaded {
    /// Where the run stands.
    pub state: TrainState,
    /// The AdamW moments (per-parameter step counts from the state).
    pub moments: BTreeMap<String, Moments>,
}

/// Reads a checkpoint written by [`save_checkpoint`] into `varmap` (built
/// with the checkpoint's model config). All or nothing: every variable must
/// be present with its shape before anything is overwritten.
pub fn load_checkpoint(path: &Path, varmap: &VarMap) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::file(path, e))?;
    let st =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| TrainError::file(path, e))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| TrainError::file(path, e))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| {
            TrainError::file(
                path,
                "not a petseg training checkpoint (no petseg_state metadata)",
            )
        })?;
    let state: TrainState = serde_json::from_str(json).map_err(|e| TrainError::file(path, e))?;
    let floats = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = st
            .tensor(name)
            .map_err(|e| TrainError::file(path, format!("{name}: {e}")))?;
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(TrainError::file(
                path,
                format!("{name}: dtype {:?}, expected F32", t.dtype()),
            ));
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((t.shape().to_vec(), v))
    };
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut values = Vec::with_capacity(data.len());
    for (name, var) in data.iter() {
        let (shape, v) = floats(name)?;
        if shape != var.dims() {
            return Err(TrainError::file(
                path,
                format!(
                    "{name}: shape {shape:?} in the checkpoint, {:?} in the model",
                    var.dims()
                ),
            ));
        }
        values.push((
            var,
            Tensor::from_vec(v, shape, var.device())?.to_dtype(var.dtype())?,
        ));
    }
    let mut moments = BTreeMap::new();
    for (name, steps) in &state.optimizer_steps {
        let (_, exp_avg) = floats(&format!("{OPT_M}{name}"))?;
        let (_, exp_avg_sq) = floats(&format!("{OPT_V}{name}"))?;
        moments.insert(
            name.clone(),
            Moments {
                exp_avg,
                exp_avg_sq,
                step: *steps,
            },
        );
    }
    for (var, t) in values {
        var.set(&t)?;
    }
    Ok(Loaded { state, moments })
}

/// Reads only the [`TrainState`] of a checkpoint (to rebuild the model
/// from its config before loading the tensors).
pub fn read_state(path: &Path) -> Result<TrainState> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::file(path, e))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| TrainError::file(path, e))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| {
            TrainError::file(
                path,
                "not a petseg training checkpoint (no petseg_state metadata)",
            )
        })?;
    serde_json::from_str(json).map_err(|e| TrainError::file(path, e))
}
