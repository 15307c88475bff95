//! The NIfTI-1 header: parsing with validation, affine selection, and the
//! header this crate writes.

use std::path::Path;

use nalgebra::{Matrix4, Vector3};
use nifti::{NiftiHeader, XForm};

use crate::affine::Affine;
use crate::error::{IoError, Result};
use crate::nifti::element::{datatype_name, NiftiElement};

/// Size of a NIfTI-1 header in bytes.
pub(crate) const HEADER_LEN: usize = 348;
/// Offset of the voxel data in files this crate writes: the header plus the
/// 4-byte extension flag (no extensions).
pub(crate) const WRITE_VOX_OFFSET: usize = 352;

/// Where a file's affine came from (the precedence of `docs/method/data.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineSource {
    /// `srow_x/y/z`, because `sform_code > 0`.
    Sform,
    /// The quaternion, `qoffset` and `pixdim`, because `sform_code <= 0` and `qform_code > 0`.
    Qform,
    /// Neither code set: `diag(-dx, dy, dz)` centred on the volume, as nibabel's
    /// `get_base_affine` (the Analyze convention).
    Pixdim,
}

impl AffineSource {
    /// Lower-case name for printing (`"sform"`, `"qform"`, `"pixdim"`).
    pub fn name(self) -> &'static str {
        match self {
            AffineSource::Sform => "sform",
            AffineSource::Qform => "qform",
            AffineSource::Pixdim => "pixdim",
        }
    }
}

/// A validated NIfTI-1 header: what a reader needs to decode the voxels, and
/// what `petseg info` prints.
#[derive(Debug, Clone)]
pub struct NiftiHeaderInfo {
    /// Spatial shape `[ni, nj, nk]` (trailing singleton dimensions dropped).
    pub shape: [usize; 3],
    /// The NIfTI datatype code.
    pub datatype: i16,
    /// Numpy-style name of the stored type (`"int16"`).
    pub dtype_name: &'static str,
    /// Bytes per stored voxel.
    pub bytes_per_voxel: usize,
    /// Whether the file is big-endian.
    pub big_endian: bool,
    /// Byte offset of the voxel data in the (decompressed) file.
    pub vox_offset: u64,
    /// Bytes of voxel data the header announces.
    pub data_bytes: u64,
    /// `(slope, intercept)` to apply, or `None` when the file stores values
    /// unscaled (`scl_slope` 0, non-finite, or slope 1 with intercept 0).
    pub scaling: Option<(f64, f64)>,
    /// The voxel-to-world affine chosen by the sform → qform → pixdim rule.
    pub affine: Affine,
    /// Which header fields the affine came from.
    pub affine_source: AffineSource,
    /// `sform_code` as stored.
    pub sform_code: i16,
    /// `qform_code` as stored.
    pub qform_code: i16,
}

/// Parses and validates the first 348 bytes of a `.nii` file.
///
/// Checks, in order: `sizeof_hdr` (and NIfTI-2), magic, datatype, dimensions
/// (positive, at most three non-singleton, product without overflow),
/// `vox_offset`, scaling, and the affine (finite, invertible). Data size
/// against the file is checked by the caller, who knows the file length.
pub(crate) fn parse_header(path: &Path, raw: &[u8]) -> Result<NiftiHeaderInfo> {
    let bad = |reason: String| IoError::format(path, reason);
    if raw.len() < HEADER_LEN {
        return Err(bad(format!(
            "file is {} bytes, shorter than a NIfTI-1 header ({HEADER_LEN} bytes)",
            raw.len()
        )));
    }
    let sizeof_le = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let sizeof_be = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    if sizeof_le == 540 || sizeof_be == 540 {
        return Err(bad(
            "NIfTI-2 files are not supported (sizeof_hdr = 540)".into()
        ));
    }
    if sizeof_le != 348 && sizeof_be != 348 {
        return Err(bad(format!(
            "not a NIfTI-1 file: sizeof_hdr is {sizeof_le} (little-endian) / {sizeof_be} \
             (big-endian), expected 348"
        )));
    }
    let magic = &raw[344..348];
    if magic == b"ni1\0" {
        return Err(bad(
            "two-file NIfTI (.hdr/.img, magic \"ni1\") is not supported; convert to .nii".into(),
        ));
    }
    if magic != b"n+1\0" {
        return Err(bad(format!(
            "wrong magic {:?}, expected \"n+1\\0\" (single-file NIfTI-1)",
            String::from_utf8_lossy(magic)
        )));
    }
    let h = NiftiHeader::from_reader(&raw[..HEADER_LEN])
        .map_err(|e| bad(format!("unreadable NIfTI-1 header: {e}")))?;
    let big_endian = h.endianness == nifti::Endianness::Big;
    if h.sizeof_hdr != 348 {
        return Err(bad(format!(
            "inconsistent byte order: sizeof_hdr reads {} once dim[0] fixed the byte order",
            h.sizeof_hdr
        )));
    }

    let (datatype, elem_size) = supported_datatype(h.datatype).ok_or_else(|| {
        bad(format!(
            "datatype {} ({}) is not supported; supported: uint8, int8, int16, uint16, int32, \
             float32, float64",
            h.datatype,
            datatype_name(h.datatype)
        ))
    })?;

    let shape = spatial_shape(&h).map_err(bad)?;
    let n_voxels = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| bad(format!("dimensions {shape:?} overflow")))?;
    let data_bytes = n_voxels
        .checked_mul(elem_size as u64)
        .filter(|&b| b <= isize::MAX as u64)
        .ok_or_else(|| {
            bad(format!(
                "dimensions {shape:?} need more bytes than can be addressed"
            ))
        })?;

    let vox_offset = if h.vox_offset == 0.0 {
        // Some old writers leave 0 in single files; the data then follows the
        // header and the extension flag, as nibabel assumes.
        WRITE_VOX_OFFSET as u64
    } else if !h.vox_offset.is_finite()
        || h.vox_offset < WRITE_VOX_OFFSET as f32
        || h.vox_offset.fract() != 0.0
    {
        return Err(bad(format!(
            "vox_offset {} is invalid: expected a whole number >= {WRITE_VOX_OFFSET}",
            h.vox_offset
        )));
    } else {
        h.vox_offset as u64
    };

    let scaling = scaling(&h).map_err(bad)?;
    let (affine, affine_source) = select_affine(&h, shape).map_err(bad)?;

    Ok(NiftiHeaderInfo {
        shape: [shape[0], shape[1], shape[2]],
        datatype,
        dtype_name: datatype_name(datatype),
        bytes_per_voxel: elem_size,
        big_endian,
        vox_offset,
        data_bytes,
        scaling,
        affine,
        affine_source,
        sform_code: h.sform_code,
        qform_code: h.qform_code,
    })
}

/// `(code, element size)` for the datatypes this crate reads.
fn supported_datatype(code: i16) -> Option<(i16, usize)> {
    let size = match code {
        c if c == u8::DATATYPE => u8::SIZE,
        c if c == i8::DATATYPE => i8::SIZE,
        c if c == i16::DATATYPE => i16::SIZE,
        c if c == u16::DATATYPE => u16::SIZE,
        c if c == i32::DATATYPE => i32::SIZE,
        c if c == f32::DATATYPE => f32::SIZE,
        c if c == f64::DATATYPE => f64::SIZE,
        _ => return None,
    };
    Some((code, size))
}

/// The spatial shape: `dim[1..=3]` (missing ones are 1); every dimension
/// beyond the third must be 1 (a singleton time axis is accepted).
fn spatial_shape(h: &NiftiHeader) -> std::result::Result<[usize; 3], String> {
    // dim is signed in the standard; the nifti crate stores the bits as u16.
    let dims: Vec<i16> = h.dim.iter().map(|&d| d as i16).collect();
    let ndim = dims[0];
    if !(1..=7).contains(&ndim) {
        return Err(format!("dim[0] = {ndim}, expected 1 to 7"));
    }
    let ndim = ndim as usize;
    if let Some(a) = (1..=ndim).find(|&a| dims[a] <= 0) {
        return Err(format!("dim[{a}] = {}, expected a positive size", dims[a]));
    }
    let all: Vec<u64> = (1..=ndim).map(|a| dims[a] as u64).collect();
    // Overflow is checked on the full product so that a huge 4-D+ header is
    // named as such before the dimensionality check.
    if all
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .is_none()
    {
        return Err(format!("dimensions {all:?} overflow a 64-bit voxel count"));
    }
    if let Some(extra) = all.iter().skip(3).position(|&d| d != 1) {
        return Err(format!(
            "{ndim}-D image with dim[{}] = {}: only 3-D volumes (or 4-D with a single time \
             point) are supported",
            extra + 4,
            all[extra + 3]
        ));
    }
    let mut shape = [1usize; 3];
    for (a, s) in shape.iter_mut().enumerate().take(ndim.min(3)) {
        *s = all[a] as usize;
    }
    Ok(shape)
}

/// The scaling to apply, following nibabel: a zero or non-finite slope means
/// "no scaling"; a valid slope with a non-finite intercept is an error.
fn scaling(h: &NiftiHeader) -> std::result::Result<Option<(f64, f64)>, String> {
    let slope = h.scl_slope as f64;
    let inter = h.scl_inter as f64;
    if slope == 0.0 || !slope.is_finite() {
        return Ok(None);
    }
    if !inter.is_finite() {
        return Err(format!(
            "scl_slope {slope} is valid but scl_inter is {inter}"
        ));
    }
    if slope == 1.0 && inter == 0.0 {
        return Ok(None);
    }
    Ok(Some((slope, inter)))
}

/// sform if `sform_code > 0`, else qform if `qform_code > 0`, else pixdim.
fn select_affine(
    h: &NiftiHeader,
    shape: [usize; 3],
) -> std::result::Result<(Affine, AffineSource), String> {
    if h.sform_code > 0 {
        let rows = [h.srow_x, h.srow_y, h.srow_z];
        if rows.iter().flatten().any(|v| !v.is_finite()) {
            return Err(format!(
                "sform (sform_code {}) has a NaN or infinite entry: srow_x {:?}, srow_y {:?}, \
                 srow_z {:?}",
                h.sform_code, h.srow_x, h.srow_y, h.srow_z
            ));
        }
        let m = Matrix4::from_fn(|r, c| {
            if r < 3 {
                rows[r][c] as f64
            } else {
                [0.0, 0.0, 0.0, 1.0][c]
            }
        });
        let a = Affine::new(m).map_err(|e| format!("sform is unusable: {e}"))?;
        return Ok((a, AffineSource::Sform));
    }
    if h.qform_code > 0 {
        let a = qform_affine(h)?;
        return Ok((a, AffineSource::Qform));
    }
    let zooms = zooms(h)?;
    let m = Matrix4::new(
        -zooms[0],
        0.0,
        0.0,
        (shape[0] as f64 - 1.0) / 2.0 * zooms[0],
        0.0,
        zooms[1],
        0.0,
        -(shape[1] as f64 - 1.0) / 2.0 * zooms[1],
        0.0,
        0.0,
        zooms[2],
        -(shape[2] as f64 - 1.0) / 2.0 * zooms[2],
        0.0,
        0.0,
        0.0,
        1.0,
    );
    let a = Affine::new(m).map_err(|e| format!("pixdim gives no usable affine: {e}"))?;
    Ok((a, AffineSource::Pixdim))
}

/// `pixdim[1..=3]`, fixed as nibabel fixes them on load: negative values are
/// made positive and zeros become 1. Non-finite values are an error.
fn zooms(h: &NiftiHeader) -> std::result::Result<[f64; 3], String> {
    let mut z = [0.0; 3];
    for a in 0..3 {
        let v = h.pixdim[a + 1] as f64;
        if !v.is_finite() {
            return Err(format!(
                "pixdim[{}] is {v}, expected a finite voxel size",
                a + 1
            ));
        }
        z[a] = if v == 0.0 { 1.0 } else { v.abs() };
    }
    Ok(z)
}

/// The qform affine, as `nifti_quatern_to_mat44` in the reference C library
/// (nifti1_io.c): the quaternion `(b, c, d)` with `a = sqrt(1 - b² - c² - d²)`
/// (renormalised when that is negative), zooms from `pixdim` and the sign of
/// `pixdim[0]` (qfac) flipping the third axis.
fn qform_affine(h: &NiftiHeader) -> std::result::Result<Affine, String> {
    let q = [
        h.quatern_b,
        h.quatern_c,
        h.quatern_d,
        h.quatern_x,
        h.quatern_y,
        h.quatern_z,
    ];
    if q.iter().any(|v| !v.is_finite()) {
        return Err(format!(
            "qform (qform_code {}) has a NaN or infinite quaternion or offset: {q:?}",
            h.qform_code
        ));
    }
    let (mut b, mut c, mut d) = (q[0] as f64, q[1] as f64, q[2] as f64);
    let norm2 = b * b + c * c + d * d;
    let a = if 1.0 - norm2 < 1e-7 {
        let s = 1.0 / norm2.sqrt();
        b *= s;
        c *= s;
        d *= s;
        0.0
    } else {
        (1.0 - norm2).sqrt()
    };
    let z = zooms(h)?;
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let scale = Vector3::new(z[0], z[1], z[2] * qfac);
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let t = [q[3] as f64, q[4] as f64, q[5] as f64];
    let m = Matrix4::from_fn(|row, col| match (row, col) {
        (3, 3) => 1.0,
        (3, _) => 0.0,
        (_, 3) => t[row],
        _ => r[row][col] * scale[col],
    });
    Affine::new(m).map_err(|e| format!("qform is unusable: {e}"))
}

/// The 352 bytes (header + empty extension flag) this crate writes before the
/// voxels: little-endian, `sform = qform = affine` with code 1 (scanner),
/// pixdim from the affine (qfac in `pixdim[0]`), units mm + s, no scaling.
///
/// The `nifti` crate computes the quaternion, qfac and pixdim
/// (`set_qform`, a polar decomposition that tolerates slightly non-orthogonal
/// directions); the bytes are laid out here because its writer does not
/// expose a header-only serialiser.
pub(crate) fn header_bytes<T: NiftiElement>(shape: [usize; 3], affine: &Affine) -> Result<Vec<u8>> {
    let mut dim = [3u16, 1, 1, 1, 1, 1, 1, 1];
    for a in 0..3 {
        dim[a + 1] = u16::try_from(shape[a])
            .ok()
            .filter(|&d| d <= i16::MAX as u16)
            .ok_or_else(|| {
                IoError::Invalid(format!(
                    "shape {shape:?}: NIfTI-1 allows at most {} voxels per axis",
                    i16::MAX
                ))
            })?;
    }
    if let Some(v) = affine.matrix().iter().find(|v| v.abs() >= f32::MAX as f64) {
        return Err(IoError::Invalid(format!(
            "affine entry {v} does not fit the float32 fields of a NIfTI-1 header"
        )));
    }
    let mut h = NiftiHeader {
        dim,
        datatype: T::DATATYPE,
        bitpix: (T::SIZE * 8) as i16,
        vox_offset: WRITE_VOX_OFFSET as f32,
        scl_slope: 1.0,
        scl_inter: 0.0,
        xyzt_units: 2 | 8, // NIFTI_UNITS_MM | NIFTI_UNITS_SEC
        magic: *b"n+1\0",
        ..NiftiHeader::default()
    };
    h.pixdim = [1.0; 8];
    h.set_sform(affine.matrix(), XForm::ScannerAnat);
    h.set_qform(affine.matrix(), XForm::ScannerAnat);
    h.set_description_str("petseg")
        .map_err(|e| IoError::Invalid(format!("header description: {e}")))?;

    let mut w = Vec::with_capacity(WRITE_VOX_OFFSET);
    let i16s = |w: &mut Vec<u8>, v: i16| w.extend_from_slice(&v.to_le_bytes());
    let i32s = |w: &mut Vec<u8>, v: i32| w.extend_from_slice(&v.to_le_bytes());
    let f32s = |w: &mut Vec<u8>, v: f32| w.extend_from_slice(&v.to_le_bytes());
    i32s(&mut w, 348);
    w.extend_from_slice(&h.data_type);
    w.extend_from_slice(&h.db_name);
    i32s(&mut w, h.extents);
    i16s(&mut w, h.session_error);
    w.push(h.regular);
    w.push(h.dim_info);
    for d in h.dim {
        w.extend_from_slice(&d.to_le_bytes());
    }
    for v in [h.intent_p1, h.intent_p2, h.intent_p3] {
        f32s(&mut w, v);
    }
    for v in [h.intent_code, h.datatype, h.bitpix, h.slice_start] {
        i16s(&mut w, v);
    }
    for v in h.pixdim {
        f32s(&mut w, v);
    }
    for v in [h.vox_offset, h.scl_slope, h.scl_inter] {
        f32s(&mut w, v);
    }
    i16s(&mut w, h.slice_end);
    w.push(h.slice_code);
    w.push(h.xyzt_units);
    for v in [h.cal_max, h.cal_min, h.slice_duration, h.toffset] {
        f32s(&mut w, v);
    }
    i32s(&mut w, h.glmax);
    i32s(&mut w, h.glmin);
    let mut descrip = [0u8; 80];
    let n = h.descrip.len().min(80);
    descrip[..n].copy_from_slice(&h.descrip[..n]);
    w.extend_from_slice(&descrip);
    w.extend_from_slice(&h.aux_file);
    i16s(&mut w, h.qform_code);
    i16s(&mut w, h.sform_code);
    for v in [
        h.quatern_b,
        h.quatern_c,
        h.quatern_d,
        h.quatern_x,
        h.quatern_y,
        h.quatern_z,
    ] {
        f32s(&mut w, v);
    }
    for row in [h.srow_x, h.srow_y, h.srow_z] {
        for v in row {
            f32s(&mut w, v);
        }
    }
    w.extend_from_slice(&h.intent_name);
    w.extend_from_slice(&h.magic);
    debug_assert_eq!(w.len(), HEADER_LEN);
    w.extend_from_slice(&[0, 0, 0, 0]); // extension flag: none
    Ok(w)
}
