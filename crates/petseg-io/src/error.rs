//! The error type of `petseg-io`.

use std::path::PathBuf;

/// Everything that can go wrong reading, writing or reshaping a volume.
///
/// Variants that concern a file carry its path so that a message shown to a
/// user always names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The operating system refused a read or a write. The OS error is part
    /// of the message and deliberately not exposed as `source()`, so that
    /// error chains (`{:#}` in anyhow) do not print it twice.
    #[error("{path}: {error}")]
    Os {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file exists but its content is not what its format requires.
    #[error("{path}: {reason}")]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, in words a user can act on.
        reason: String,
    },
    /// A geometry that cannot be used: singular or non-finite affine,
    /// mismatching shapes, zero spacing, and the like.
    #[error("invalid geometry: {0}")]
    Geometry(String),
    /// An argument outside its valid range.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl IoError {
    /// A format error for `path` with the given reason.
    pub fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        IoError::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An operating-system error for `path`.
    pub fn os(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError::Os {
            path: path.into(),
            error: source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = IoError> = std::result::Result<T, E>;
