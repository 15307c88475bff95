//! Malformed NIfTI files: each must give `IoError::Format` naming the file,
//! never a panic or a huge allocation.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use petseg_io::nifti::{read_nifti, read_nifti_header, write_nifti};
use petseg_io::IoError;

/// A valid uncompressed file of 8×6×4 float32 voxels; returns its bytes.
fn valid_nii(dir: &tempfile::TempDir) -> Vec<u8> {
    let v = volume_from_fn([8, 6, 4], oblique_affine(), |i, j, k| (i + j + k) as f32);
    let p = path_in(dir, "valid.nii");
    write_nifti(&p, &v).unwrap();
    std::fs::read(p).unwrap()
}

fn put_i16(b: &mut [u8], at: usize, v: i16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_f32(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Writes `bytes` as `name`, reads it, and checks the error is a format
/// error naming the file and containing `needle`.
fn assert_format_error(dir: &tempfile::TempDir, name: &str, bytes: &[u8], needle: &str) {
    let p = path_in(dir, name);
    std::fs::write(&p, bytes).unwrap();
    let err = read_nifti(&p).expect_err(name);
    match &err {
        IoError::Format { path, reason } => {
            assert_eq!(path, &p, "{name}: error names the file");
            assert!(
                reason.contains(needle),
                "{name}: '{reason}' should mention '{needle}'"
            );
        }
        other => panic!("{name}: expected a format error, got {other:?}"),
    }
    assert!(
        err.to_string().contains(name),
        "{name}: message '{err}' names the file"
    );
}

// Header offsets (NIfTI-1).
const DIM: usize = 40;
const DATATYPE: usize = 70;
const VOX_OFFSET: usize = 108;
const QFORM_CODE: usize = 252;
const SFORM_CODE: usize = 254;
const QUATERN_B: usize = 256;
const SROW_X: usize = 280;
const MAGIC: usize = 344;

#[test]
fn wrong_magic() {
    let dir = tmpdir();
    let mut b = valid_nii(&dir);
    b[MAGIC..MAGIC + 4].copy_from_slice(b"abc\0");
    assert_format_error(&dir, "magic.nii", &b, "magic");
    assert_format_error(&dir, "magic.nii.gz", &gzip(&b), "magic");
    b[MAGIC..MAGIC + 4].copy_from_slice(b"ni1\0");
    assert_format_error(&dir, "pair.nii", &b, "two-file");
}

#[test]
fn not_nifti_at_all() {
    let dir = tmpdir();
    assert_format_error(&dir, "empty.nii", b"", "shorter than a NIfTI-1 header");
    assert_format_error(
        &dir,
        "short.nii",
        b"hello world",
        "shorter than a NIfTI-1 header",
    );
    assert_format_error(&dir, "text.nii", &[b'x'; 2000], "sizeof_hdr");
    let mut b = valid_nii(&dir);
    b[..4].copy_from_slice(&540i32.to_le_bytes());
    assert_format_error(&dir, "nifti2.nii", &b, "NIfTI-2");
}

#[test]
fn vox_offset_past_end() {
    let dir = tmpdir();
    let mut b = valid_nii(&dir);
    let past_end = (b.len() + 4096) as f32;
    put_f32(&mut b, VOX_OFFSET, past_end);
    assert_format_error(&dir, "offset.nii", &b, "vox_offset");
    assert_format_error(&dir, "offset.nii.gz", &gzip(&b), "vox_offset");
    put_f32(&mut b, VOX_OFFSET, 200.0);
    assert_format_error(&dir, "offset_in_header.nii", &b, "vox_offset");
    put_f32(&mut b, VOX_OFFSET, f32::NAN);
    assert_format_error(&dir, "offset_nan.nii", &b, "vox_offset");
}

#[test]
fn dims_exceeding_the_file() {
    let dir = tmpdir();
    let mut b = valid_nii(&dir);
    // 32767³ float32 = 140 TB announced by a file of a few KB.
    for a in 1..=3 {
        put_i16(&mut b, DIM + 2 * a, i16::MAX);
    }
    assert_format_error(&dir, "huge.nii", &b, "voxel data");
    assert_format_error(&dir, "huge.nii.gz", &gzip(&b), "gzip can hold at most");
    // Just one voxel row too many.
    let mut b = valid_nii(&dir);
    put_i16(&mut b, DIM + 2, 9);
    assert_format_error(&dir, "one_more.nii", &b, "voxel data");
    assert_format_error(&dir, "one_more.nii.gz", &gzip(&b), "truncated");
}

#[test]
fn dims_whose_product_overflows() {
    let dir = tmpdir();
    let mut b = valid_nii(&dir);
    put_i16(&mut b, DIM, 7);
    for a in 1..=7 {
        put_i16(&mut b, DIM + 2 * a, i16::MAX);
    }
    assert_format_error(&dir, "overflow.nii", &b, "overflow");
    assert_format_error(&dir, "overflow.nii.gz", &gzip(&b), "overflow");
}

#[test]
fn bad_dimensions() {
    let dir = tmpdir();
    let mut b = valid_nii(&dir);
    put_i16(&mut b, DIM + 4, -3);
    assert_format_error(&dir, "negative.nii", &b, "dim[2]");
    let mut b = valid_nii(&dir);
    put_i16(&mut b, DIM, 4);
    put_i16(&mut b, DIM + 8, 2);
    assert_format_error(&dir, "timeseries.nii", &b, "4-D image with dim[4] = 2");
}

#[test]
fn nan_or_inf_in_the_affine() {
    let dir = tmpdir();
    let mut b = valid_nii(&dir);
    put_f32(&mut b, SROW_X, f32::NAN);
    assert_format_error(&dir, "nan_sform.nii", &b, "sform");
    assert_format_error(&dir, "nan_sform.nii.gz", &gzip(&b), "sform");
    let mut b = valid_nii(&dir);
    put_f32(&mut b, SROW_X + 12, f32::INFINITY);
    assert_format_error(&dir, "inf_sform.nii", &b, "sform");
    // sform off, qform with an infinite quaternion.
    let mut b = valid_nii(&dir);
    put_i16(&mut b, SFORM_CODE, 0);
    put_f32(&mut b, QUATERN_B, f32::INFINITY);
    assert_format_error(&dir, "inf_qform.nii", &b, "qform");
    // Neither: pixdim is used and must be finite.
    let mut b = valid_nii(&dir);
    put_i16(&mut b, SFORM_CODE, 0);
    put_i16(&mut b, QFORM_CODE, 0);
    put_f32(&mut b, 76 + 8, f32::NAN);
    assert_format_error(&dir, "nan_pixdim.nii", &b, "pixdim[2]");
    // A singular sform (a zero column).
    let mut b = valid_nii(&dir);
    for r in 0..3 {
        put_f32(&mut b, SROW_X + 16 * r, 0.0);
    }
    assert_format_error(&dir, "singular.nii", &b, "singular");
}

#[test]
fn unsupported_datatype() {
    let dir = tmpdir();
    for (code, name) in [
        (128i16, "rgb24"),
        (32, "complex64"),
        (1024, "int64"),
        (77, "not a NIfTI datatype"),
    ] {
        let mut b = valid_nii(&dir);
        put_i16(&mut b, DATATYPE, code);
        assert_format_error(&dir, &format!("dt{code}.nii"), &b, name);
    }
}

#[test]
fn truncated_gzip() {
    let dir = tmpdir();
    // Our multi-member files and a single plain gzip stream, cut at several points.
    let v = volume_from_fn([72, 64, 64], oblique_affine(), |i, j, k| {
        ((i * j + k) as f32).sqrt()
    });
    let ours = path_in(&dir, "ours.nii.gz");
    write_nifti(&ours, &v).unwrap();
    let raw_path = path_in(&dir, "ours.nii");
    write_nifti(&raw_path, &v).unwrap();
    for (label, full) in [
        ("multi", std::fs::read(&ours).unwrap()),
        ("single", gzip(&std::fs::read(&raw_path).unwrap())),
    ] {
        for frac in [0.9, 0.5, 0.1] {
            let cut = (full.len() as f64 * frac) as usize;
            let name = format!("cut_{label}_{frac}.nii.gz");
            let p = path_in(&dir, &name);
            std::fs::write(&p, &full[..cut]).unwrap();
            let err = read_nifti(&p).expect_err(&name);
            assert!(matches!(err, IoError::Format { .. }), "{name}: {err:?}");
            assert!(err.to_string().contains(&name), "{err}");
        }
        // Only the last 4 bytes (ISIZE) missing.
        let name = format!("cut_{label}_trailer.nii.gz");
        let p = path_in(&dir, &name);
        std::fs::write(&p, &full[..full.len() - 4]).unwrap();
        assert!(read_nifti(&p).is_err(), "{name}");
        // Cut inside the header.
        assert_format_error(
            &dir,
            &format!("cut_{label}_head.nii.gz"),
            &full[..30],
            "header",
        );
    }
    // Raw .nii cut short.
    let raw = std::fs::read(&raw_path).unwrap();
    assert_format_error(&dir, "cut.nii", &raw[..raw.len() - 1], "voxel data");
}

#[test]
fn corrupt_gzip_checksum() {
    let dir = tmpdir();
    let v = volume_from_fn([8, 8, 8], lps_affine(), |i, j, k| {
        (i * 64 + j * 8 + k) as f32
    });
    let p = path_in(&dir, "crc.nii.gz");
    write_nifti(&p, &v).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 6] ^= 0xff; // inside the last member's CRC32
    assert_format_error(&dir, "crc_bad.nii.gz", &b, "gzip");
}

#[test]
fn header_only_reader_validates_too() {
    let dir = tmpdir();
    let mut b = valid_nii(&dir);
    put_i16(&mut b, DATATYPE, 128);
    let p = path_in(&dir, "hdr.nii.gz");
    std::fs::write(&p, gzip(&b)).unwrap();
    assert!(read_nifti_header(&p).is_err());
    assert!(read_nifti_header(Path::new("/nonexistent/x.nii")).is_err());
}
