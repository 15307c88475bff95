//! The error type of `petseg-augment`.

/// Everything that can go wrong preparing a case or sampling a patch.
///
/// Messages name the field and the value so that a user can fix a config
/// or a dataset without reading the code.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    /// A configuration value outside its valid range.
    #[error("invalid augmentation config: {0}")]
    Config(String),
    /// Volumes of one case that do not fit together (shape, channel count).
    #[error("case {case}: {reason}")]
    Case {
        /// The case id (or a description when no id is known).
        case: String,
        /// What is wrong.
        reason: String,
    },
    /// An error from the volume layer (resampling, reorientation).
    #[error(transparent)]
    Io(#[from] petseg_io::IoError),
}

/// Result alias of this crate.
pub type Result<T, E = AugmentError> = std::result::Result<T, E>;
