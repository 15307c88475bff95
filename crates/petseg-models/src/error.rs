//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong when configuring, building, loading or saving a network.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value is out of range or inconsistent with another one.
    #[error("invalid {model} configuration: {field} = {value}: {expected}")]
    Config {
        /// Network name (`segresnet`, `attention_unet`).
        model: &'static str,
        /// The offending field.
        field: &'static str,
        /// Its value, as written by the user.
        value: String,
        /// What was expected instead.
        expected: String,
    },
    /// An unknown network name (for example in `FromStr`).
    #[error("unknown network {name:?}: expected one of \"segresnet\", \"attention_unet\"")]
    UnknownModel {
        /// The name that was given.
        name: String,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted ("reading", "writing", "renaming …").
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file is not in a supported format or holds no state dict.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The checkpoint's keys or shapes do not match the network's parameters.
    #[error("checkpoint {path} does not match the network:{}", describe_mismatch(.missing, .unexpected, .mismatched))]
    KeyMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// Parameters of the network absent from the checkpoint.
        missing: Vec<String>,
        /// Checkpoint entries the network has no parameter for.
        unexpected: Vec<String>,
        /// `(key, checkpoint shape, network shape)` for entries whose shapes differ.
        mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    /// An error from candle while building or running a network.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn describe_mismatch(
    missing: &[String],
    unexpected: &[String],
    mismatched: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let mut out = String::new();
    if !missing.is_empty() {
        out.push_str(&format!(
            "\n  missing keys ({}): {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    if !unexpected.is_empty() {
        out.push_str(&format!(
            "\n  unexpected keys ({}): {}",
            unexpected.len(),
            unexpected.join(", ")
        ));
    }
    if !mismatched.is_empty() {
        let items: Vec<String> = mismatched
            .iter()
            .map(|(k, file, net)| format!("{k}: checkpoint {file:?} vs network {net:?}"))
            .collect();
        out.push_str(&format!(
            "\n  shape mismatches ({}): {}",
            mismatched.len(),
            items.join(", ")
        ));
    }
    out
}

/// Shorthand for results of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
