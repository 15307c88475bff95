//! NIfTI round trips against nibabel (live, via `scripts/nibabel_peer.py`)
//! and against this crate's own reader.

mod common;

use common::*;
use petseg_io::nifti::{
    read_nifti, read_nifti_f32, read_nifti_with_header, write_nifti, write_nifti_with,
    AffineSource, AnyVolume, NiftiElement, WriteOptions,
};
use petseg_io::{Affine, Volume};

/// Values in raster order as f64.
fn raster_f64<T: NiftiElement>(v: &Volume<T>) -> Vec<f64> {
    v.as_raster_slice().iter().map(|x| x.to_f64()).collect()
}

fn any_raster_f64(v: &AnyVolume) -> Vec<f64> {
    let mut out = Vec::new();
    v.for_each_f64(|x| out.push(x));
    out
}

/// Equal values, allowing for the last-ulp error of JSON float parsing
/// (1e-15 relative: far below one f32 ulp, so f32 data must match exactly).
fn same_values(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-15 * x.abs().max(1.0))
}

/// Checks what nibabel read from a file this crate wrote.
fn check_nibabel_sees(
    d: &serde_json::Value,
    expected_dtype: &str,
    shape: [usize; 3],
    affine: &Affine,
    values: &[f64],
) {
    let path = d["path"].as_str().unwrap();
    let got_shape: Vec<usize> = d["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(got_shape, shape.to_vec(), "{path}: shape");
    assert_eq!(d["disk_dtype"], expected_dtype, "{path}: dtype");
    let got: Vec<f64> = d["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(same_values(&got, values), "{path}: values differ");
    let diff = affine_diff(json_affine(&d["affine"]), affine.rows());
    assert!(diff <= 1e-5, "{path}: nibabel affine differs by {diff} mm");
    assert_eq!(d["sform_code"], 1, "{path}: sform_code");
    assert_eq!(d["qform_code"], 1, "{path}: qform_code");
    // The qform encodes the same (orthogonal) affine.
    let qdiff = affine_diff(json_affine(&d["qform"]), affine.rows());
    assert!(qdiff <= 1e-4, "{path}: qform differs by {qdiff} mm");
    let zooms: Vec<f64> = d["zooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (z, s) in zooms.iter().zip(affine.spacing_mm()) {
        assert!(
            (z - s).abs() < 1e-5,
            "{path}: zooms {zooms:?} vs spacing {:?}",
            affine.spacing_mm()
        );
    }
    assert_eq!(d["xyzt_units"][0], "mm", "{path}: spatial unit");
    assert_eq!(d["xyzt_units"][1], "sec", "{path}: time unit");
}

#[test]
fn nibabel_reads_what_we_write() {
    if !python_has(&["numpy", "nibabel"]) {
        return;
    }
    let dir = tmpdir();
    let shape = [9, 7, 5];
    // Unique, non-integer float values.
    let f = volume_from_fn(shape, oblique_affine(), |i, j, k| {
        (i as f32 * 1.37 - j as f32 * 0.29 + k as f32 * 10.01).sin() * 1000.0 + 0.123
    });
    let s = volume_from_fn(shape, lps_affine(), |i, j, k| {
        (i as i16 * 300 - j as i16 * 7 + k as i16 * 1000) - 2000
    });
    let u = volume_from_fn(shape, permuted_flipped_affine(), |i, j, k| {
        ((i * 31 + j * 7 + k * 3) % 256) as u8
    });

    let fp = path_in(&dir, "oblique_f32.nii.gz");
    let sp = path_in(&dir, "lps_i16.nii.gz");
    let up = path_in(&dir, "perm_u8.nii.gz");
    let up_raw = path_in(&dir, "perm_u8.nii");
    write_nifti(&fp, &f).unwrap();
    write_nifti(&sp, &s).unwrap();
    write_nifti(&up, &u).unwrap();
    write_nifti(&up_raw, &u).unwrap();
    let args: Vec<&str> = [
        "describe",
        fp.to_str().unwrap(),
        sp.to_str().unwrap(),
        up.to_str().unwrap(),
        up_raw.to_str().unwrap(),
    ]
    .to_vec();
    let peer = nibabel_peer(&args);
    check_nibabel_sees(&peer[0], "float32", shape, f.affine(), &raster_f64(&f));
    check_nibabel_sees(&peer[1], "int16", shape, s.affine(), &raster_f64(&s));
    check_nibabel_sees(&peer[2], "uint8", shape, u.affine(), &raster_f64(&u));
    check_nibabel_sees(&peer[3], "uint8", shape, u.affine(), &raster_f64(&u));
}

#[test]
fn nibabel_reads_a_multi_member_file() {
    if !python_has(&["numpy", "nibabel"]) {
        return;
    }
    // > 1 MiB of voxels: several gzip members, compressed in parallel.
    let dir = tmpdir();
    let shape = [72, 64, 64];
    let v = volume_from_fn(shape, oblique_affine(), |i, j, k| {
        ((i * j) as f32 * 0.01 + k as f32).sqrt()
    });
    let p = path_in(&dir, "big.nii.gz");
    write_nifti(&p, &v).unwrap();
    let peer = nibabel_peer(&["describe", p.to_str().unwrap()]);
    check_nibabel_sees(&peer[0], "float32", shape, v.affine(), &raster_f64(&v));
}

#[test]
fn we_read_what_nibabel_writes() {
    if !python_has(&["numpy", "nibabel"]) {
        return;
    }
    let dir = tmpdir();
    let peer = nibabel_peer(&["make", dir.path().to_str().unwrap()]);
    let files = peer.as_array().unwrap();
    assert_eq!(files.len(), 8);
    for d in files {
        let path = d["path"].as_str().unwrap();
        let name = std::path::Path::new(path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let (info, vol) = read_nifti_with_header(path).unwrap();
        let shape: Vec<usize> = d["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(vol.shape().to_vec(), shape[..3].to_vec(), "{name}: shape");
        let diff = affine_diff(json_affine(&d["affine"]), vol.affine().rows());
        assert!(
            diff <= 1e-5,
            "{name}: affine differs from nibabel's by {diff} mm"
        );
        let want: Vec<f64> = d["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = any_raster_f64(&vol);
        assert_eq!(got.len(), want.len(), "{name}: voxel count");
        // nibabel resets scl_slope in a loaded header, so ask our header.
        let scaled = info.scaling.is_some();
        let max_err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        if scaled {
            // Scaled values come back as f32 (nibabel computes in f64).
            assert_eq!(
                vol.dtype_name(),
                "float32",
                "{name}: scaled int16 reads as float32"
            );
            let tol = want.iter().fold(0.0f64, |m, v| m.max(v.abs())) * 1e-6;
            assert!(max_err <= tol, "{name}: max error {max_err} > {tol}");
        } else {
            assert!(
                same_values(&got, &want),
                "{name}: values differ from nibabel's (max {max_err})"
            );
        }
        let expected_dtype = match name {
            "scaled_i16.nii.gz" | "slope_i16.nii" => "float32",
            "be_f32.nii" | "be_f32.nii.gz" | "t1_4d.nii.gz" | "qform_only.nii" => "float32",
            "f64.nii.gz" => "float64",
            "labels_u8.nii" => "uint8",
            other => panic!("unexpected file {other}"),
        };
        assert_eq!(vol.dtype_name(), expected_dtype, "{name}: dtype");
        if name.starts_with("be_") {
            assert!(info.big_endian, "{name}: big-endian detected");
        }
        if name == "qform_only.nii" {
            assert_eq!(info.affine_source, AffineSource::Qform);
        } else {
            assert_eq!(info.affine_source, AffineSource::Sform, "{name}");
        }
        if name == "slope_i16.nii" {
            assert_eq!(info.scaling, Some((0.5, -10.0)));
        }
    }
}

#[test]
fn own_round_trip_every_type_both_containers() {
    fn check<T: NiftiElement + PartialEq + std::fmt::Debug>(
        dir: &tempfile::TempDir,
        f: impl Fn(usize) -> T,
    ) {
        let shape = [6, 5, 4];
        let v = volume_from_fn(shape, oblique_affine(), |i, j, k| f(i + 6 * (j + 5 * k)));
        for ext in ["nii", "nii.gz"] {
            let p = path_in(dir, &format!("rt_{}.{ext}", T::NAME));
            write_nifti(&p, &v).unwrap();
            let back = read_nifti(&p).unwrap();
            assert_eq!(back.dtype_name(), T::NAME);
            assert_eq!(back.shape(), shape);
            assert!(back.affine().approx_eq(v.affine(), 1e-5), "{}", T::NAME);
            assert_eq!(any_raster_f64(&back), raster_f64(&v), "{} .{ext}", T::NAME);
        }
    }
    let dir = tmpdir();
    check::<u8>(&dir, |n| (n * 7 % 256) as u8);
    check::<i8>(&dir, |n| (n as i64 * 7 % 256 - 128) as i8);
    check::<i16>(&dir, |n| (n as i16) * -97);
    check::<u16>(&dir, |n| (n * 517) as u16);
    check::<i32>(&dir, |n| n as i32 * -1_000_003);
    check::<f32>(&dir, |n| n as f32 * 0.1 - 3.0);
    check::<f64>(&dir, |n| n as f64 * 1e-7 + 1e9);
}

#[test]
fn multi_member_round_trip_is_deterministic_at_every_level() {
    let dir = tmpdir();
    let shape = [72, 64, 64];
    let v = volume_from_fn(shape, lps_affine(), |i, j, k| {
        (i as f32 * 0.3).cos() * j as f32 + k as f32 * 0.01
    });
    for level in [0, 1, 6, 9] {
        let a = path_in(&dir, &format!("a{level}.nii.gz"));
        let b = path_in(&dir, &format!("b{level}.nii.gz"));
        let opts = WriteOptions {
            compression_level: level,
        };
        write_nifti_with(&a, &v, &opts).unwrap();
        write_nifti_with(&b, &v, &opts).unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "level {level}: same bytes"
        );
        let back = read_nifti_f32(&a).unwrap();
        assert_eq!(back.as_raster_slice(), v.as_raster_slice(), "level {level}");
    }
}

#[test]
fn single_stream_gzip_from_another_writer_is_read() {
    use std::io::Write;
    // Re-compress our .nii as one plain gzip stream (as nibabel/ITK write).
    let dir = tmpdir();
    let v = volume_from_fn([72, 64, 64], oblique_affine(), |i, j, k| {
        (i + 2 * j + 3 * k) as i16 - 300
    });
    let raw = path_in(&dir, "v.nii");
    write_nifti(&raw, &v).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&std::fs::read(&raw).unwrap()).unwrap();
    let gz = path_in(&dir, "v.nii.gz");
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    match read_nifti(&gz).unwrap() {
        AnyVolume::I16(back) => assert_eq!(back, v.clone().with_affine(*back.affine())),
        other => panic!("expected int16, got {}", other.dtype_name()),
    }
}

#[test]
fn failed_write_leaves_no_file() {
    let dir = tmpdir();
    let v = volume_from_fn([3, 3, 3], lps_affine(), |i, _, _| i as u8);
    // Wrong extension: refused before anything is created.
    assert!(write_nifti(path_in(&dir, "x.nrrd"), &v).is_err());
    // Target is a directory: the rename fails; the temporary file is removed.
    let target = path_in(&dir, "taken.nii.gz");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    let err = write_nifti(&target, &v).unwrap_err();
    assert!(err.to_string().contains("taken.nii.gz"), "{err}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["taken.nii.gz".to_string()],
        "no temporary file left"
    );
    // Missing directory.
    assert!(write_nifti(dir.path().join("missing/x.nii.gz"), &v).is_err());
}
