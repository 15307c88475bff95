//! Parameter creation through a recording `VarBuilder` backend: seeded initialisation
//! (PyTorch's default init drawn from ChaCha8, in sorted-name order) and shape listing
//! without allocation.
//!
//! Each layer asks for its parameters with PyTorch's default initialiser as the `Init`
//! hint (`U(±1/√fan_in)` for conv weights and biases, 1/0 for norm weights/biases and
//! BatchNorm running var/mean, 0.25 for PReLU). The backend here records every request;
//! [`fill_seeded`] then draws the values, parameter by parameter in sorted-name order,
//! so the same seed gives bit-identical weights on every machine, whatever the order
//! in which the layers were constructed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One parameter request: its shape and PyTorch's initialiser for it.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub shape: Shape,
    pub init: Init,
}

/// The requests recorded while a network was built, by full name.
pub(crate) type Requests = Arc<Mutex<BTreeMap<String, Request>>>;

/// A `VarBuilder` backend that records each request and either creates the variable in
/// a `VarMap` (values set later by [`fill_seeded`]) or, without a `VarMap`, returns a
/// broadcast zero so that nothing of the parameter's size is allocated.
struct Recorder {
    varmap: Option<VarMap>,
    requests: Requests,
}

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_string(),
                Request {
                    shape: s.clone(),
                    init: h,
                },
            );
        let Some(varmap) = &self.varmap else {
            return Tensor::zeros((), dtype, dev)?.broadcast_as(s);
        };
        let mut data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!(
                    "parameter {name}: the VarMap holds shape {:?}, the network needs {s:?}",
                    var.shape()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let var = Var::zeros(s, dtype, dev)?;
        data.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!(
            "parameter {name}: requested without a shape, which the recorder cannot serve"
        )
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.as_ref().is_some_and(|v| {
            v.data()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(name)
        })
    }
}

/// A builder that creates the parameters in `varmap` (f32 on `device`) and records them.
pub(crate) fn recording_builder(
    varmap: &VarMap,
    device: &Device,
) -> (VarBuilder<'static>, Requests) {
    let requests = Requests::default();
    let backend = Recorder {
        varmap: Some(varmap.clone()),
        requests: requests.clone(),
    };
    (
        VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone()),
        requests,
    )
}

/// A builder that allocates nothing of parameter size and only records the requests.
pub(crate) fn shape_builder() -> (VarBuilder<'static>, Requests) {
    let requests = Requests::default();
    let backend = Recorder {
        varmap: None,
        requests: requests.clone(),
    };
    (
        VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu),
        requests,
    )
}

/// Sets every recorded parameter of `varmap` to PyTorch's default initialisation, drawn
/// from `ChaCha8Rng::seed_from_u64(seed)` (stream 0) in sorted-name order. Constants draw
/// nothing; a uniform `U(lo, up)` entry is `lo + (up − lo)·u` with `u` the generator's
/// next `f32` in `[0, 1)`.
pub(crate) fn fill_seeded(varmap: &VarMap, requests: &Requests, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let requests = requests.lock().unwrap_or_else(|e| e.into_inner());
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    for (name, req) in requests.iter() {
        let var = data.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "parameter {name} was recorded but is not in the VarMap"
            ))
        })?;
        let n = req.shape.elem_count();
        let values: Vec<f32> = match req.init {
            Init::Const(c) => vec![c as f32; n],
            Init::Uniform { lo, up } => {
                let (lo, span) = (lo as f32, (up - lo) as f32);
                (0..n).map(|_| lo + span * rng.random::<f32>()).collect()
            }
            other => candle_core::bail!(
                "parameter {name}: initialiser {other:?} is not used by PyTorch's defaults"
            ),
        };
        let value =
            Tensor::from_vec(values, req.shape.clone(), var.device())?.to_dtype(var.dtype())?;
        var.set(&value)?;
    }
    Ok(())
}
