//! `.nii.gz` load and save of a 192×192×550 float32 PET-like volume, timed
//! against nibabel and SimpleITK on the same files in the same run.
//!
//! Run: `cargo bench -p petseg-io --bench nifti_io` (needs python3 with
//! numpy + nibabel for the peer figures; SimpleITK is used when installed).
//! Options via environment: `NIFTI_BENCH_REPS` (default 5).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use petseg_io::nifti::{read_nifti_f32, write_nifti, write_nifti_with, WriteOptions};
use petseg_io::{Affine, Volume};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

const SHAPE: [usize; 3] = [192, 192, 550];

/// A whole-body PSMA-PET-like SUV volume: sparse low noise outside the body
/// within the field of view, zero beyond it, a noisy body, a few hot organs and lesions (4 × 4 × 2 mm voxels).
fn pet_like(seed: u64) -> Volume<f32> {
    let affine = Affine::from_rows([
        [-4.0, 0.0, 0.0, 382.0],
        [0.0, -4.0, 0.0, 382.0],
        [0.0, 0.0, 2.0, -1100.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    .expect("valid affine");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0f32, 1.0).expect("valid normal");
    // (centre x, y, z in mm relative to the volume centre, radius mm, SUV)
    let hot: [(f32, f32, f32, f32, f32); 9] = [
        (-60.0, 10.0, 120.0, 70.0, 6.0),  // liver
        (-70.0, 40.0, 60.0, 25.0, 14.0),  // right kidney
        (70.0, 40.0, 60.0, 25.0, 14.0),   // left kidney
        (0.0, -20.0, -330.0, 35.0, 25.0), // bladder
        (-45.0, 0.0, 430.0, 15.0, 10.0),  // parotid
        (45.0, 0.0, 430.0, 15.0, 10.0),   // parotid
        (20.0, -30.0, -280.0, 8.0, 18.0), // prostate lesion
        (-90.0, 50.0, -150.0, 6.0, 9.0),  // node
        (30.0, 60.0, 200.0, 10.0, 12.0),  // bone lesion
    ];
    let mut v = Vec::with_capacity(SHAPE.iter().product());
    for k in 0..SHAPE[2] {
        let z = (k as f32 - 274.5) * 2.0;
        for j in 0..SHAPE[1] {
            let y = (j as f32 - 95.5) * 4.0;
            for i in 0..SHAPE[0] {
                let x = (i as f32 - 95.5) * 4.0;
                let n: f32 = noise.sample(&mut rng);
                let inside = if z > 380.0 {
                    (x / 80.0).powi(2) + (y / 95.0).powi(2) < 1.0
                } else {
                    (x / 170.0).powi(2) + (y / 110.0).powi(2) < 1.0
                };
                let suv = if inside {
                    let mut s = 0.6f32;
                    for &(cx, cy, cz, r, u) in &hot {
                        if (x - cx).powi(2) + (y - cy).powi(2) + (z - cz).powi(2) < r * r {
                            s = u;
                        }
                    }
                    (s * (1.0 + 0.25 * n)).max(0.0)
                } else if x * x + y * y < 350.0 * 350.0 {
                    // Reconstruction noise inside the scanner's field of view:
                    // about a third of these voxels are non-zero.
                    (0.02 * n - 0.01).max(0.0)
                } else {
                    0.0
                };
                v.push(suv);
            }
        }
    }
    Volume::from_raster(SHAPE, v, affine).expect("consistent shape")
}

/// Median wall time of `reps` calls.
fn median_s(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn read_checked(path: &Path, expected: &Volume<f32>) {
    let v = read_nifti_f32(path).expect("read");
    assert_eq!(v.shape(), expected.shape());
    assert!(
        v.as_raster_slice() == expected.as_raster_slice(),
        "{} decodes to the written values",
        path.display()
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} threads (rayon), {cpu}, load average {}",
        rayon::current_num_threads(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn main() {
    let reps: usize = std::env::var("NIFTI_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let vol = pet_like(7);
    let ours = dir.path().join("petseg.nii.gz");
    println!(
        "nifti_io: {:?} float32 ({:.1} MB raw), median of {reps}; {}",
        SHAPE,
        vol.len() as f64 * 4.0 / 1e6,
        machine()
    );

    let save_s = median_s(reps, || write_nifti(&ours, &vol).expect("write"));
    let ours_bytes = std::fs::metadata(&ours).expect("written").len();
    read_checked(&ours, &vol);
    let load_s = median_s(reps, || {
        read_nifti_f32(&ours).expect("read");
    });
    println!(
        "petseg-io  save {save_s:.3} s  ({:.1} MB, level 1, parallel members)",
        ours_bytes as f64 / 1e6
    );
    println!("petseg-io  load {load_s:.3} s  (own file, parallel inflate)");

    // Compression level: smaller files inflate faster but take longer to write.
    for level in [3u32, 6] {
        let p = dir.path().join(format!("level{level}.nii.gz"));
        let opts = WriteOptions {
            compression_level: level,
        };
        let s = median_s(reps, || write_nifti_with(&p, &vol, &opts).expect("write"));
        let l = median_s(reps, || {
            read_nifti_f32(&p).expect("read");
        });
        let mb = std::fs::metadata(&p).expect("written").len() as f64 / 1e6;
        println!("petseg-io  level {level}: save {s:.3} s  load {l:.3} s  ({mb:.1} MB)");
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_peer.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&ours)
        .arg(dir.path())
        .arg(reps.to_string())
        .output();
    let peer: serde_json::Value = match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).expect("peer JSON"),
        Ok(o) => {
            println!(
                "peer failed (no comparison): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return;
        }
        Err(e) => {
            println!("python3 not available (no comparison): {e}");
            return;
        }
    };
    let f = |k: &str| peer[k].as_f64();
    let ratio = |peer_s: Option<f64>, ours_s: f64| {
        peer_s.map_or("n/a".to_string(), |p| format!("{:.2}x", p / ours_s))
    };
    for (label, key) in [("nibabel_file", "nibabel"), ("simpleitk_file", "SimpleITK")] {
        if let Some(p) = peer[label].as_str() {
            read_checked(Path::new(p), &vol);
            let s = median_s(reps, || {
                read_nifti_f32(p).expect("read");
            });
            println!(
                "petseg-io  load {s:.3} s  ({key}-written file, one gzip stream, serial inflate)"
            );
        }
    }
    if let (Some(l), Some(s)) = (f("nibabel_load_s"), f("nibabel_save_s")) {
        println!(
            "nibabel    load {l:.3} s  save {s:.3} s  ({:.1} MB)",
            f("nibabel_file_bytes").unwrap_or(0.0) / 1e6
        );
    }
    if let (Some(l), Some(s)) = (f("simpleitk_read_s"), f("simpleitk_write_s")) {
        println!(
            "SimpleITK  read {l:.3} s  write {s:.3} s  ({:.1} MB)",
            f("simpleitk_file_bytes").unwrap_or(0.0) / 1e6
        );
    }
    println!(
        "speed-up of petseg-io: load {} vs nibabel, {} vs SimpleITK; save {} vs nibabel, {} vs SimpleITK",
        ratio(f("nibabel_load_s"), load_s),
        ratio(f("simpleitk_read_s"), load_s),
        ratio(f("nibabel_save_s"), save_s),
        ratio(f("simpleitk_write_s"), save_s),
    );
}
