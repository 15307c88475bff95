//! Error type of the crate.

/// What can go wrong when a loss is configured or evaluated.
///
/// The loss functions themselves return `candle_core::Result` (they are used inside candle
/// graphs); a [`LossError`] travels inside `candle_core::Error::Wrapped` there and can be
/// recovered with `downcast_ref`.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LossError {
    /// A configuration field is out of its valid range.
    #[error("invalid loss parameter `{field}` = {value}: expected {expected}")]
    InvalidParameter {
        /// Name of the field, as spelled in the config (`epsilon`, `gamma`, ...).
        field: &'static str,
        /// The offending value, printed.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The logits or labels tensor has the wrong shape.
    #[error("bad {what} shape {shape:?}: expected {expected}")]
    Shape {
        /// `logits` or `labels`.
        what: &'static str,
        /// The shape received.
        shape: Vec<usize>,
        /// The shape expected.
        expected: String,
    },
    /// A tensor has a dtype the losses cannot use.
    #[error("unsupported {what} dtype {dtype}: expected {expected}")]
    DType {
        /// `logits` or `labels`.
        what: &'static str,
        /// The dtype received.
        dtype: String,
        /// The dtypes accepted.
        expected: &'static str,
    },
    /// A label voxel is not an integer class index in `0..classes`.
    #[error("label value {value} at flat index {index} is not a class index in 0..{classes}")]
    Label {
        /// The value found, printed.
        value: String,
        /// Flat (C-order) index of the voxel in the labels tensor.
        index: usize,
        /// Number of classes (logit channels).
        classes: usize,
    },
    /// An unknown loss name (for example on the command line).
    #[error("unknown loss `{0}`: expected one of dice, focal, dice_focal, l1dfl, dice_ce")]
    UnknownLoss(String),
}

impl From<LossError> for candle_core::Error {
    fn from(e: LossError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// Checks that a float parameter is finite and within `[lo, hi]`.
pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    expected: &'static str,
) -> Result<(), LossError> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(LossError::InvalidParameter {
            field,
            value: value.to_string(),
            expected,
        })
    }
}
