//! Shared helpers of the integration tests: fixtures and the Python peer.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use petseg_io::{Affine, Volume};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Parses `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// A `'0'/'1'` raster string as mask bytes.
pub fn mask_bits(v: &Value) -> Vec<u8> {
    v.as_str().unwrap().bytes().map(|b| b - b'0').collect()
}

pub fn shape_of(v: &Value) -> [usize; 3] {
    let s: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    [s[0], s[1], s[2]]
}

pub fn vol_u8(shape: [usize; 3], data: Vec<u8>, spacing: [f64; 3]) -> Volume<u8> {
    Volume::from_raster(
        shape,
        data,
        Affine::from_spacing_origin(spacing, [0.0; 3]).unwrap(),
    )
    .unwrap()
}

/// Seeded random mask of density `p`.
pub fn random_mask(shape: [usize; 3], p: f64, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..shape.iter().product::<usize>())
        .map(|_| u8::from(rng.random::<f64>() < p))
        .collect()
}

/// Runs `scripts/reference.py` with a JSON request. Returns None (after a
/// skip notice) when python3/scipy is missing, unless `CI` is set.
pub fn python_reference(request: &Value) -> Option<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/reference.py");
    let child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return skip(&format!("python3 not runnable: {e}")),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("ModuleNotFoundError") {
            return skip(&err);
        }
        panic!("reference.py failed: {err}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn skip(why: &str) -> Option<Value> {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but the Python peer is unavailable: {why}");
    }
    eprintln!("SKIP live SciPy check: {why}");
    None
}
