//! Reading MONAI/PyTorch checkpoints into a `VarMap` and writing ours as safetensors.
//!
//! **Formats.** The format is detected from the file's first bytes, not its name:
//! * safetensors (`.safetensors`), any float dtype (converted to the parameter's dtype);
//! * PyTorch's zip format (`torch.save` since PyTorch 1.6: `.pt`, `.pth`, `.ckpt`), read
//!   with candle's pickle reader. The state dict may be the saved object itself or sit
//!   under one of the keys [`WRAPPER_KEYS`] (`{"state_dict": …}` from Lightning/MONAI
//!   bundles, `"model"`, `"network"`, …), tried in that order. PyTorch's legacy
//!   (pre-1.6, non-zip) format is refused with an explanation.
//!
//! **Prefixes.** When every key starts with `module.` (DDP / `DataParallel`) or
//! `_orig_mod.` (`torch.compile`), the prefix is removed (repeatedly).
//!
//! **Checks.** Loading is all or nothing: every network parameter must be present with
//! its exact shape and every checkpoint entry must belong to the network, otherwise
//! [`ModelError::KeyMismatch`] lists the missing, unexpected and mis-shaped keys and
//! nothing is changed.
//!
//! **`num_batches_tracked`.** PyTorch's BatchNorm keeps an int64 counter of training
//! batches. It only enters the computation when `momentum=None` (cumulative average),
//! which MONAI's networks never use, so we do not keep it: on load such entries are
//! accepted (when the network has a BatchNorm with that prefix) and ignored; on save they
//! are not written. PyTorch fills a missing counter with 0 when it loads a plain dict (as
//! `safetensors.torch.load_file` returns), so our files load into MONAI with
//! `strict=True`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::{ModelError, Result};

/// Keys under which a checkpoint may wrap its state dict, tried in this order.
pub const WRAPPER_KEYS: [&str; 5] = ["state_dict", "model_state_dict", "model", "network", "net"];

/// Prefixes removed from every key when all keys carry them.
pub const STRIPPED_PREFIXES: [&str; 2] = ["module.", "_orig_mod."];

const NUM_BATCHES_TRACKED: &str = ".num_batches_tracked";

/// A state dict read from a checkpoint, with how it was found.
#[derive(Debug)]
pub struct StateDict {
    /// Tensors by key (prefixes already stripped), on the CPU.
    pub tensors: BTreeMap<String, Tensor>,
    /// The wrapper key it was found under, if any.
    pub wrapper_key: Option<&'static str>,
    /// Prefixes removed from the keys, in order.
    pub stripped_prefixes: Vec<&'static str>,
}

/// What [`load_weights`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSummary {
    /// Parameters set (all of the network's).
    pub loaded: usize,
    /// `num_batches_tracked` entries accepted and ignored.
    pub ignored: Vec<String>,
    /// The wrapper key the state dict was found under, if any.
    pub wrapper_key: Option<&'static str>,
    /// Prefixes removed from the keys.
    pub stripped_prefixes: Vec<&'static str>,
}

fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn ckpt_err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads the state dict of a safetensors file or a PyTorch zip checkpoint (see the
/// module docs for wrappers and prefixes).
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| io_err("opening", path, e))?;
    let n = file
        .read(&mut magic)
        .map_err(|e| io_err("reading", path, e))?;
    drop(file);
    let (tensors, wrapper_key) = if n == 4 && magic == *b"PK\x03\x04" {
        read_pytorch(path)?
    } else if n >= 2 && magic[0] == 0x80 && magic[1] <= 5 {
        return Err(ckpt_err(
            path,
            "PyTorch legacy (non-zip) pickle format is not supported; re-save it with torch.save(obj, path) \
             from PyTorch >= 1.6 (zip format) or as safetensors",
        ));
    } else {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            ckpt_err(
                path,
                format!("neither a PyTorch zip checkpoint nor a readable safetensors file: {e}"),
            )
        })?;
        (tensors.into_iter().collect(), None)
    };
    let (tensors, stripped_prefixes) = strip_prefixes(tensors);
    Ok(StateDict {
        tensors,
        wrapper_key,
        stripped_prefixes,
    })
}

fn read_pytorch(path: &Path) -> Result<(BTreeMap<String, Tensor>, Option<&'static str>)> {
    let read = |key: Option<&str>| -> Result<BTreeMap<String, Tensor>> {
        let pth = candle_core::pickle::PthTensors::new(path, key)
            .map_err(|e| ckpt_err(path, format!("cannot read the PyTorch pickle: {e}")))?;
        let mut out = BTreeMap::new();
        for name in pth.tensor_infos().keys() {
            let t = pth
                .get(name)
                .map_err(|e| ckpt_err(path, format!("tensor {name}: {e}")))?;
            if let Some(t) = t {
                out.insert(name.clone(), t);
            }
        }
        Ok(out)
    };
    let top = read(None)?;
    if !top.is_empty() {
        return Ok((top, None));
    }
    for key in WRAPPER_KEYS {
        // A missing wrapper key is an error from candle: try the next one.
        if let Ok(found) = read(Some(key)) {
            if !found.is_empty() {
                return Ok((found, Some(key)));
            }
        }
    }
    Err(ckpt_err(
        path,
        format!(
            "no tensors found, neither at the top level nor under any of the keys {WRAPPER_KEYS:?}"
        ),
    ))
}

fn strip_prefixes(
    mut tensors: BTreeMap<String, Tensor>,
) -> (BTreeMap<String, Tensor>, Vec<&'static str>) {
    let mut stripped = Vec::new();
    while !tensors.is_empty() {
        let Some(prefix) = STRIPPED_PREFIXES
            .into_iter()
            .find(|p| tensors.keys().all(|k| k.starts_with(p)))
        else {
            break;
        };
        tensors = tensors
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_string(), v))
            .collect();
        stripped.push(prefix);
    }
    (tensors, stripped)
}

/// Loads a checkpoint into the network's variables in `varmap` (build the network
/// first). All or nothing; see the module docs.
pub fn load_weights(varmap: &VarMap, path: &Path) -> Result<LoadSummary> {
    let state = read_state_dict(path)?;
    load_state_dict(varmap, state, path)
}

/// Loads an already read state dict into `varmap`; `source` names it in errors.
pub fn load_state_dict(varmap: &VarMap, state: StateDict, source: &Path) -> Result<LoadSummary> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, var) in data.iter() {
        match state.tensors.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.dims() != var.dims() => {
                mismatched.push((name.clone(), t.dims().to_vec(), var.dims().to_vec()))
            }
            Some(_) => {}
        }
    }
    let mut unexpected = Vec::new();
    let mut ignored = Vec::new();
    for name in state.tensors.keys() {
        if data.contains_key(name) {
            continue;
        }
        let is_bn_counter = name
            .strip_suffix(NUM_BATCHES_TRACKED)
            .is_some_and(|prefix| data.contains_key(&format!("{prefix}.running_mean")));
        if is_bn_counter {
            ignored.push(name.clone());
        } else {
            unexpected.push(name.clone());
        }
    }
    if !missing.is_empty() || !unexpected.is_empty() || !mismatched.is_empty() {
        missing.sort();
        mismatched.sort();
        return Err(ModelError::KeyMismatch {
            path: PathBuf::from(source),
            missing,
            unexpected,
            mismatched,
        });
    }
    // Convert everything first so that a failure leaves the variables untouched.
    let mut values = Vec::with_capacity(data.len());
    for (name, var) in data.iter() {
        let t = &state.tensors[name];
        if !t.dtype().is_float() {
            return Err(ckpt_err(
                source,
                format!(
                    "{name}: dtype {}, expected a float tensor",
                    t.dtype().as_str()
                ),
            ));
        }
        values.push((var, t.to_dtype(var.dtype())?.to_device(var.device())?));
    }
    for (var, value) in values {
        var.set(&value)?;
    }
    Ok(LoadSummary {
        loaded: data.len(),
        ignored,
        wrapper_key: state.wrapper_key,
        stripped_prefixes: state.stripped_prefixes,
    })
}

/// Writes every variable of `varmap` to a safetensors file under its MONAI key (the
/// network's state dict minus `num_batches_tracked`), atomically: a temporary file in
/// the same directory, then a rename.
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let tensors: std::collections::HashMap<String, Tensor> = {
        let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect()
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| ckpt_err(path, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    if let Err(e) = candle_core::safetensors::save(&tensors, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ckpt_err(path, format!("writing safetensors: {e}")));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("renaming the temporary file onto", path, e)
    })
}
