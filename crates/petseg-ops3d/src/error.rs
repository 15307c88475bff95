//! Error type of the crate. Every public function returns `candle_core::Result`;
//! our own failures are [`Ops3dError`] values wrapped into `candle_core::Error`.

/// What went wrong in a 3-D operator: always names the operator, the argument
/// and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum Ops3dError {
    /// A tensor has the wrong rank or a dimension does not match.
    #[error("{op}: {msg}")]
    Shape {
        /// Operator name, e.g. `conv3d`.
        op: &'static str,
        /// Which dimension is wrong and what was expected.
        msg: String,
    },
    /// A configuration value (stride, padding, groups, ...) is invalid.
    #[error("{op}: invalid configuration: {msg}")]
    Config {
        /// Operator name.
        op: &'static str,
        /// Which field is wrong and what was expected.
        msg: String,
    },
    /// The dtype or device is not supported by a kernel.
    #[error("{op}: unsupported {msg}")]
    Unsupported {
        /// Operator (or kernel) name.
        op: &'static str,
        /// What is unsupported.
        msg: String,
    },
}

impl From<Ops3dError> for candle_core::Error {
    fn from(e: Ops3dError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// Shorthand for a shape error.
pub(crate) fn shape_err(op: &'static str, msg: impl Into<String>) -> candle_core::Error {
    Ops3dError::Shape {
        op,
        msg: msg.into(),
    }
    .into()
}

/// Shorthand for a configuration error.
pub(crate) fn config_err(op: &'static str, msg: impl Into<String>) -> candle_core::Error {
    Ops3dError::Config {
        op,
        msg: msg.into(),
    }
    .into()
}

/// Shorthand for an unsupported dtype/device/layout error.
pub(crate) fn unsupported(op: &'static str, msg: impl Into<String>) -> candle_core::Error {
    Ops3dError::Unsupported {
        op,
        msg: msg.into(),
    }
    .into()
}
