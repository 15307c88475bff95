//! Shared helpers of petseg-io's integration tests: test volumes and the
//! live nibabel peer (`scripts/nibabel_peer.py`).

#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};
use std::process::Command;

use nalgebra::Matrix3;
use petseg_io::{Affine, Volume};

/// Whether `python3` can import every module in `modules`. When not: panics
/// if `CI` is set (CI must run the cross-checks), else prints a skip notice.
pub fn python_has(modules: &[&str]) -> bool {
    let code = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let ok = Command::new("python3")
        .args(["-c", &code])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but python3 cannot import {modules:?}: install them (pip install numpy nibabel)");
        }
        eprintln!("SKIP: python3 with {modules:?} not available; live cross-check skipped");
    }
    ok
}

/// Runs the nibabel peer with `args` and parses its JSON output.
pub fn nibabel_peer(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nibabel_peer.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "nibabel_peer.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nibabel_peer.py prints JSON")
}

/// A rotation of `deg_z` degrees about z then `deg_x` about x.
pub fn rotation(deg_z: f64, deg_x: f64) -> Matrix3<f64> {
    let (z, x) = (deg_z.to_radians(), deg_x.to_radians());
    let rz = Matrix3::new(z.cos(), -z.sin(), 0.0, z.sin(), z.cos(), 0.0, 0.0, 0.0, 1.0);
    let rx = Matrix3::new(1.0, 0.0, 0.0, 0.0, x.cos(), -x.sin(), 0.0, x.sin(), x.cos());
    rz * rx
}

/// An oblique affine (rotated about two axes), anisotropic spacing.
pub fn oblique_affine() -> Affine {
    Affine::from_direction(rotation(17.0, 8.0), [2.0, 2.5, 3.0], [-80.5, 40.25, 12.0]).unwrap()
}

/// A flipped, axis-permuted affine (voxel axes point to P, S, L).
pub fn permuted_flipped_affine() -> Affine {
    Affine::from_rows([
        [0.0, 0.0, -3.5, 60.0],
        [-1.25, 0.0, 0.0, 30.5],
        [0.0, 2.0, 0.0, -45.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    .unwrap()
}

/// The DICOM-like LPS flip `diag(-2, -2, 3)`.
pub fn lps_affine() -> Affine {
    Affine::from_rows([
        [-2.0, 0.0, 0.0, 100.5],
        [0.0, -2.0, 0.0, 50.25],
        [0.0, 0.0, 3.0, -30.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    .unwrap()
}

/// A volume whose voxel values are `f(i, j, k)`.
pub fn volume_from_fn<T: Clone>(
    shape: [usize; 3],
    affine: Affine,
    f: impl Fn(usize, usize, usize) -> T,
) -> Volume<T> {
    let mut v = Vec::with_capacity(shape.iter().product());
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                v.push(f(i, j, k));
            }
        }
    }
    Volume::from_raster(shape, v, affine).unwrap()
}

/// A temporary directory for one test.
pub fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// `dir/name` as a path.
pub fn path_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// The affine from the peer's JSON (row-major 4×4).
pub fn json_affine(v: &serde_json::Value) -> [[f64; 4]; 4] {
    let mut out = [[0.0; 4]; 4];
    for r in 0..4 {
        for c in 0..4 {
            out[r][c] = v[r][c].as_f64().unwrap();
        }
    }
    out
}

/// Largest absolute difference between two row-major affines.
pub fn affine_diff(a: [[f64; 4]; 4], b: [[f64; 4]; 4]) -> f64 {
    let mut d: f64 = 0.0;
    for r in 0..4 {
        for c in 0..4 {
            d = d.max((a[r][c] - b[r][c]).abs());
        }
    }
    d
}
