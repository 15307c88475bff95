//! The error type of `petseg-eval`.

/// Everything that can go wrong evaluating masks.
///
/// Messages name the input concerned (`what`) and the offending value so a
/// user can act on them without reading code.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Two inputs that must share a voxel grid do not.
    #[error("{what}: {detail}")]
    Grid {
        /// The pair concerned, e.g. `"prediction vs ground truth"`.
        what: String,
        /// How they differ.
        detail: String,
    },
    /// A mask holds values other than 0 and 1 under the strict policy.
    #[error(
        "{what}: mask is not binary: {count} voxel(s) hold values other than 0/1 \
         (first: {first} at voxel {at:?}); binarise with value > 0 if that is intended"
    )]
    NonBinary {
        /// The mask concerned.
        what: String,
        /// How many voxels are neither 0 nor 1.
        count: usize,
        /// The first such value (raster order).
        first: f64,
        /// Its voxel index `[i, j, k]`.
        at: [usize; 3],
    },
    /// An argument outside its valid range (empty sample, bad shape, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An error from the volume model.
    #[error(transparent)]
    Io(#[from] petseg_io::IoError),
}

/// Result alias of this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
