//! Writing `.nii` and `.nii.gz` atomically, compressing members in parallel.

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{IoError, Result};
use crate::nifti::element::NiftiElement;
use crate::nifti::gz::{gzip_member, CHUNK_BYTES};
use crate::nifti::header::header_bytes;
use crate::volume::Volume;

/// How to write a NIfTI file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// zlib compression level for `.nii.gz`, 0 (store) to 9 (smallest).
    /// Ignored for `.nii`.
    pub compression_level: u32,
}

impl Default for WriteOptions {
    /// Level 1, as nibabel's default: PET/CT voxels are noisy floats whose
    /// low mantissa bits do not compress, so higher levels cost several times
    /// the time for a few per cent of size.
    fn default() -> Self {
        WriteOptions {
            compression_level: 1,
        }
    }
}

/// Whether `path` asks for gzip (`.nii.gz`) or not (`.nii`); other
/// extensions are refused so that a typo does not silently pick a format.
fn wants_gzip(path: &Path) -> Result<bool> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".nii.gz") {
        Ok(true)
    } else if name.ends_with(".nii") {
        Ok(false)
    } else {
        Err(IoError::Invalid(format!(
            "{}: a NIfTI file name must end in .nii or .nii.gz",
            path.display()
        )))
    }
}

/// Writes `vol` to `path` through a temporary file in the same directory,
/// renamed into place only once complete: on error no file (and no partial
/// file) is left at `path`.
pub(crate) fn write<T: NiftiElement>(
    path: &Path,
    vol: &Volume<T>,
    opts: &WriteOptions,
) -> Result<()> {
    let gz = wants_gzip(path)?;
    if opts.compression_level > 9 {
        return Err(IoError::Invalid(format!(
            "compression level {} is outside 0..=9",
            opts.compression_level
        )));
    }
    let header = header_bytes::<T>(vol.shape(), vol.affine())?;
    let os = |e| IoError::os(path, e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".petseg-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(os)?;
    let chunk_elems = CHUNK_BYTES / T::SIZE;
    let voxels = vol.as_raster_slice();
    if gz {
        let level = opts.compression_level;
        // Chunking depends only on the data, so the output is byte-identical
        // whatever the number of threads.
        let members = voxels
            .par_chunks(chunk_elems)
            .map(|c| {
                let mut bytes = Vec::with_capacity(c.len() * T::SIZE);
                T::encode_le(c, &mut bytes);
                gzip_member(&bytes, level)
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(os)?;
        let file = tmp.as_file_mut();
        file.write_all(&gzip_member(&header, level).map_err(os)?)
            .map_err(os)?;
        for m in &members {
            file.write_all(m).map_err(os)?;
        }
    } else {
        let file = tmp.as_file_mut();
        file.write_all(&header).map_err(os)?;
        let mut bytes = Vec::with_capacity(CHUNK_BYTES);
        for c in voxels.chunks(chunk_elems) {
            bytes.clear();
            T::encode_le(c, &mut bytes);
            file.write_all(&bytes).map_err(os)?;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile creates 0600; a volume is ordinary data.
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(os)?;
    }
    tmp.persist(path).map_err(|e| os(e.error))?;
    Ok(())
}
