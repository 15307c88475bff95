//! Where and in which precision a run computes: the `device` and
//! `precision` fields of the run config (and of prediction).
//!
//! * [`DeviceSpec`]: `"cpu"` (default), `"cuda"` (= `"cuda:0"`) or
//!   `"cuda:N"`. CUDA needs a `petseg` built with the `cuda` cargo feature;
//!   without it, asking for CUDA is an error before anything is written.
//! * [`Precision`]: `"f32"` (default) or `"bf16"`, autocast in PyTorch's
//!   sense: the master weights, the optimiser moments and every saved file
//!   stay f32; the network input is cast to bf16 and each convolution casts
//!   its weight and bias to it (`petseg_models`' autocast; gradients flow
//!   back through the casts into the f32 variables); norms keep their f32
//!   parameters and compute their statistics in f32; the logits are cast to
//!   f32 before the loss and the softmax. What this does and does not gain
//!   today is in the crate docs ("Devices and precision").

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The device a run or a prediction computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU (multi-threaded with rayon).
    #[default]
    Cpu,
    /// The CUDA device of this ordinal (`cuda:N`; `cuda` is `cuda:0`).
    Cuda(usize),
}

impl DeviceSpec {
    /// Whether this `petseg` was compiled with CUDA support (the `cuda`
    /// feature of `petseg-train`, which `petseg-cli`'s `cuda` forwards to).
    pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

    /// Checks that this build can use the device (CUDA needs the `cuda`
    /// feature), without opening it.
    pub fn check_compiled(&self) -> Result<()> {
        match self {
            DeviceSpec::Cuda(_) if !Self::CUDA_COMPILED => Err(TrainError::Device(format!(
                "device \"{self}\": this petseg was built without the `cuda` feature; \
                 rebuild with --features cuda (cargo build --release -p petseg-cli --features cuda)"
            ))),
            _ => Ok(()),
        }
    }

    /// Opens the device (for CUDA: the driver, a context and a stream).
    pub fn open(&self) -> Result<Device> {
        self.check_compiled()?;
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => Device::new_cuda(*n).map_err(|e| {
                TrainError::Device(format!("cannot open CUDA device {n} (\"{self}\"): {e}"))
            }),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            TrainError::Config(format!(
                "device {s:?}: expected \"cpu\", \"cuda\" or \"cuda:N\" (N = GPU ordinal)"
            ))
        };
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            t => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = TrainError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// The precision of the network's forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the reference; bit-reproducible on the CPU).
    #[default]
    F32,
    /// bf16 autocast (see the module docs); losses, optimiser, weights and
    /// probabilities in f32.
    Bf16,
}

impl Precision {
    /// The dtype of the network's activations.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// The one-line warning for a precision that only costs time on this
    /// device: bf16 on the CPU, where the 3-D kernels compute in f32 and the
    /// conversions are extra passes.
    pub fn slow_on(self, device: &Device) -> Option<&'static str> {
        (self == Precision::Bf16 && device.is_cpu()).then_some(
            "warning: bf16 on the CPU is slower than f32 (the 3-D kernels compute in f32; the conversions add passes); it saves memory",
        )
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(TrainError::Config(format!(
                "precision {s:?}: expected \"f32\" or \"bf16\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_round_trip() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains("cuda:N"), "{bad}: {e}");
        }
        assert_eq!(DeviceSpec::Cuda(1).to_string(), "cuda:1");
        assert_eq!(String::from(DeviceSpec::Cpu), "cpu");
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!(Precision::Bf16.dtype(), DType::BF16);
        assert!("fp16".parse::<Precision>().is_err());
    }

    #[test]
    fn cpu_opens_and_bf16_warns_only_on_the_cpu() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        assert!(Precision::Bf16.slow_on(&Device::Cpu).is_some());
        assert!(Precision::F32.slow_on(&Device::Cpu).is_none());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        for d in [DeviceSpec::Cuda(0), DeviceSpec::Cuda(2)] {
            let e = d.open().unwrap_err().to_string();
            assert!(
                e.contains("built without the `cuda` feature")
                    && e.contains("rebuild with --features cuda"),
                "{e}"
            );
        }
    }
}
