//! NIfTI-1 read and write (`.nii`, `.nii.gz`) with true geometry.
//!
//! # Reading
//! [`read_nifti`] returns the voxels in their stored type ([`AnyVolume`])
//! when the file is unscaled, and `float32` (`float64` for `float64` files)
//! with `scl_slope`/`scl_inter` applied otherwise; [`read_nifti_f32`] always
//! returns scaled `f32`. Supported: datatypes uint8, int8, int16, uint16,
//! int32, float32, float64; either byte order; 3-D, or 4-D (and up) whose
//! extra dimensions are all 1. Gzip is recognised by its magic bytes, not by
//! the file name.
//!
//! The affine follows `docs/method/data.md` §2: sform when `sform_code > 0`, else qform when
//! `qform_code > 0` (quaternion as in the reference C library
//! `nifti_quatern_to_mat44`; negative pixdims are made positive and zero
//! pixdims become 1, as nibabel fixes them on load), else nibabel's base
//! affine `diag(-dx, dy, dz)` centred on the volume. A NaN/infinite or
//! singular affine is an error, not a silent identity.
//!
//! Every header check happens **before** the voxel buffer is allocated:
//! `sizeof_hdr` (NIfTI-2 named as such), magic, datatype, positive
//! dimensions whose product does not overflow, at most three non-singleton
//! dimensions, `vox_offset` (whole, ≥ 352, inside the file), scaling, affine,
//! and the data size against the file: for `.nii` the file length, for
//! `.nii.gz` the largest output deflate can produce from the compressed size
//! (~1032:1). The buffer itself is reserved fallibly (`try_reserve_exact`)
//! and only committed as data is inflated, so a lying header yields an
//! [`IoError::Format`](crate::IoError::Format) naming the file, never a panic
//! or an abort. Bitpix is not checked (nibabel ignores it too); trailing
//! bytes after the voxels are ignored, but a gzip CRC mismatch is an error.
//!
//! # Writing
//! [`write_nifti`] writes `.nii` or `.nii.gz` (chosen by the file name;
//! anything else is refused), little-endian, `sform = qform = affine` with
//! code 1 (scanner), `pixdim` from the affine with qfac, `xyzt_units` mm + s,
//! `scl_slope = 1`, `vox_offset = 352`. It writes a temporary file in the
//! target directory and renames it into place (no fsync: a crash may lose
//! the new file but never leaves a partial one under the final name).
//!
//! # Why not only the `nifti` crate
//! The `nifti` crate (0.18) is used to parse the 348 header bytes (byte order
//! detection included) and to compute the qform quaternion, qfac and pixdim
//! when writing (`set_sform`/`set_qform`). The rest is done here because:
//! * it checks the header only as far as it needs to, allocates the volume
//!   from the header's dimensions, and its `qform_affine` panics on negative
//!   pixdims — validation before allocation must be ours;
//! * it inflates with a single thread through a generic element loop and
//!   returns an `IxDyn` array that must be copied into a [`Volume`]; here the
//!   voxels are decoded straight into the volume's buffer;
//! * its writer compresses with one thread and writes in place (a failure
//!   leaves a partial file).
//!
//! # Speed: parallel gzip members
//! Reading is inflate-bound. `flate2` with the `zlib-rs` backend is the
//! fastest pure-Rust inflate available in the workspace, but inflate is
//! sequential within one deflate stream. So `.nii.gz` files are written as a
//! series of gzip members of 1 MiB of voxels each, compressed in parallel
//! (rayon) and each tagged with its length in a gzip extra subfield (see
//! `gz`). Every gzip reader (nibabel, ITK, zlib) reads such a file as one
//! stream; this reader recognises the tags and inflates the members in
//! parallel, straight into their slices of the volume. Files from other
//! writers are inflated as one stream, also straight into the buffer.
//!
//! Measured load and save times are in the crate README.

mod element;
mod gz;
mod header;
mod read;
mod write;

use std::path::Path;

pub use element::NiftiElement;
pub use header::{AffineSource, NiftiHeaderInfo};
pub use write::WriteOptions;

use crate::affine::Affine;
use crate::error::Result;
use crate::volume::Volume;

/// A volume in the type the file stores it in.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyVolume {
    /// uint8 (NIfTI datatype 2), e.g. label masks.
    U8(Volume<u8>),
    /// int8 (256).
    I8(Volume<i8>),
    /// int16 (4), e.g. CT in HU.
    I16(Volume<i16>),
    /// uint16 (512).
    U16(Volume<u16>),
    /// int32 (8).
    I32(Volume<i32>),
    /// float32 (16), e.g. PET in SUV; also any scaled integer file.
    F32(Volume<f32>),
    /// float64 (64), also scaled float64 files.
    F64(Volume<f64>),
}

/// Applies the same expression to the volume in whichever variant.
macro_rules! with_volume {
    ($any:expr, $v:ident => $e:expr) => {
        match $any {
            AnyVolume::U8($v) => $e,
            AnyVolume::I8($v) => $e,
            AnyVolume::I16($v) => $e,
            AnyVolume::U16($v) => $e,
            AnyVolume::I32($v) => $e,
            AnyVolume::F32($v) => $e,
            AnyVolume::F64($v) => $e,
        }
    };
}

impl AnyVolume {
    /// Numpy-style name of the voxel type (`"int16"`, `"float32"`, ...).
    pub fn dtype_name(&self) -> &'static str {
        fn name<T: NiftiElement>(_: &Volume<T>) -> &'static str {
            T::NAME
        }
        with_volume!(self, v => name(v))
    }

    /// Shape `[ni, nj, nk]`.
    pub fn shape(&self) -> [usize; 3] {
        with_volume!(self, v => v.shape())
    }

    /// The voxel-to-world affine.
    pub fn affine(&self) -> &Affine {
        with_volume!(self, v => v.affine())
    }

    /// The volume converted to `f32` (exact except for int32 beyond 2^24 and
    /// float64 precision).
    pub fn to_f32(&self) -> Volume<f32> {
        with_volume!(self, v => v.map(|x| x.to_f64() as f32))
    }

    /// The volume converted to `f64` (exact).
    pub fn to_f64(&self) -> Volume<f64> {
        with_volume!(self, v => v.map(|x| x.to_f64()))
    }

    /// Every voxel value as `f64`, in raster order, without building a copy
    /// of the volume (for statistics).
    pub fn for_each_f64(&self, mut f: impl FnMut(f64)) {
        with_volume!(self, v => v.as_raster_slice().iter().for_each(|x| f(x.to_f64())))
    }
}

/// Reads a `.nii` or `.nii.gz` file. Values are in the stored type when the
/// file is unscaled, else `F32` (`F64` for float64 files) with
/// `scl_slope`/`scl_inter` applied. See the module docs for what is checked.
pub fn read_nifti(path: impl AsRef<Path>) -> Result<AnyVolume> {
    read::read_any(path.as_ref()).map(|(_, v)| v)
}

/// Reads a file and its validated header.
pub fn read_nifti_with_header(path: impl AsRef<Path>) -> Result<(NiftiHeaderInfo, AnyVolume)> {
    read::read_any(path.as_ref())
}

/// Reads and validates only the header (shape, type, scaling, affine).
pub fn read_nifti_header(path: impl AsRef<Path>) -> Result<NiftiHeaderInfo> {
    read::read_header_only(path.as_ref())
}

/// Reads a file as `f32` with the scaling applied (PET, CT, probabilities).
pub fn read_nifti_f32(path: impl AsRef<Path>) -> Result<Volume<f32>> {
    Ok(match read_nifti(path)? {
        AnyVolume::F32(v) => v,
        other => other.to_f32(),
    })
}

/// Writes `vol` as `.nii` or `.nii.gz` (by extension) with the default
/// [`WriteOptions`], atomically.
pub fn write_nifti<T: NiftiElement>(path: impl AsRef<Path>, vol: &Volume<T>) -> Result<()> {
    write::write(path.as_ref(), vol, &WriteOptions::default())
}

/// [`write_nifti`] with explicit options (compression level).
pub fn write_nifti_with<T: NiftiElement>(
    path: impl AsRef<Path>,
    vol: &Volume<T>,
    opts: &WriteOptions,
) -> Result<()> {
    write::write(path.as_ref(), vol, opts)
}
