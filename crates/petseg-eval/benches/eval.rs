//! Benchmarks of the hot paths on whole-body-sized masks, with the Python
//! peers (cc3d, SciPy) timed in the same run on the same masks.
//!
//! `cargo bench -p petseg-eval` (add `-- --quick` for fewer repeats).
//! The masks are seeded: 192×192×550 with ~200 random balls (~68 k
//! foreground voxels) for labelling; Dmax on ~20 k and ~10⁶ voxels.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use petseg_eval::dmax::dmax_mm;
use petseg_eval::{label, Connectivity};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPE: [usize; 3] = [192, 192, 550];
const SPACING: [f64; 3] = [4.0, 4.0, 3.0];

/// Seeded mask of `n` balls with radii in `r` (voxels).
fn balls(shape: [usize; 3], n: usize, r: (f64, f64), seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let [ni, nj, nk] = shape;
    let mut m = vec![0u8; ni * nj * nk];
    for _ in 0..n {
        let rad: f64 = rng.random_range(r.0..r.1);
        let c = [
            rng.random_range(rad..ni as f64 - rad),
            rng.random_range(rad..nj as f64 - rad),
            rng.random_range(rad..nk as f64 - rad),
        ];
        let lo = |a: usize| (c[a] - rad).floor().max(0.0) as usize;
        let hi = |a: usize, n: usize| ((c[a] + rad).ceil() as usize).min(n - 1);
        for k in lo(2)..=hi(2, nk) {
            for j in lo(1)..=hi(1, nj) {
                for i in lo(0)..=hi(0, ni) {
                    let d = (i as f64 - c[0]).powi(2)
                        + (j as f64 - c[1]).powi(2)
                        + (k as f64 - c[2]).powi(2);
                    if d <= rad * rad {
                        m[i + ni * (j + nj * k)] = 1;
                    }
                }
            }
        }
    }
    m
}

fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

const PY: &str = r#"
import sys, time
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist
ni, nj, nk, reps = map(int, sys.argv[2:6])
def best(f):
    b = 1e9
    for _ in range(reps):
        t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)
    return b * 1e3
out = {}
for name in sys.argv[6:]:
    m = np.fromfile(f"{sys.argv[1]}/{name}.raw", dtype=np.uint8).reshape(nk, nj, ni).transpose(2, 1, 0)
    if name == "label":
        try:
            import cc3d
            mf = np.asfortranarray(m)
            out["cc3d_18_ms"] = best(lambda: cc3d.connected_components(mf, connectivity=18))
        except ImportError:
            pass
        s = ndimage.generate_binary_structure(3, 2)
        out["scipy_18_ms"] = best(lambda: ndimage.label(m, structure=s))
    else:
        def dmax():
            p = np.argwhere(m) * np.array([4.0, 4.0, 3.0])
            h = p[ConvexHull(p).vertices]
            return pdist(h).max()
        out[f"scipy_hull_pdist_{name}_ms"] = best(dmax)
        out[f"scipy_dmax_{name}_mm"] = float(dmax())
import json
print(json.dumps(out))
"#;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 10 };
    let [ni, nj, nk] = SHAPE;
    let dir = tempfile::tempdir().expect("temp dir");
    let lin = [
        [SPACING[0], 0.0, 0.0],
        [0.0, SPACING[1], 0.0],
        [0.0, 0.0, SPACING[2]],
    ];

    let wb = balls(SHAPE, 200, (2.0, 6.0), 1);
    let fg = wb.iter().filter(|&&v| v != 0).count();
    let n = label(&wb, SHAPE, Connectivity::Eighteen).unwrap().count();
    println!("labelling {ni}x{nj}x{nk}, {fg} foreground voxels, {n} components (18-conn)");
    for conn in [
        Connectivity::Six,
        Connectivity::Eighteen,
        Connectivity::TwentySix,
    ] {
        let ms = best_ms(reps, || {
            std::hint::black_box(label(&wb, SHAPE, conn).unwrap());
        });
        println!("  petseg label {:>2}-conn: {ms:8.2} ms", conn.number());
    }

    let mut sets = vec![("label", wb)];
    let mut dmax_mm_values = Vec::new();
    for (name, count, r) in [("20k", 95, (2.0, 5.0)), ("1M", 12, (25.0, 32.0))] {
        let m = balls(SHAPE, count, r, 2);
        let fg = m.iter().filter(|&&v| v != 0).count();
        let cc = label(&m, SHAPE, Connectivity::Eighteen).unwrap();
        let d = dmax_mm(cc.runs(), nj, lin);
        let ms = best_ms(reps, || {
            std::hint::black_box(dmax_mm(cc.runs(), nj, lin));
        });
        let total = best_ms(reps, || {
            let cc = label(&m, SHAPE, Connectivity::Eighteen).unwrap();
            std::hint::black_box(dmax_mm(cc.runs(), nj, lin));
        });
        println!("Dmax {name}: {fg} voxels, Dmax {d:.4} mm: {ms:.2} ms from runs, {total:.2} ms incl. labelling");
        sets.push((name, m));
        dmax_mm_values.push((name, d));
    }

    for (name, m) in &sets {
        let mut f = std::fs::File::create(dir.path().join(format!("{name}.raw"))).unwrap();
        f.write_all(m).unwrap();
    }
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(PY).arg(dir.path());
    for v in [ni, nj, nk, reps] {
        cmd.arg(v.to_string());
    }
    for (name, _) in &sets {
        cmd.arg(name);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            println!("python peers (ms): {}", text.trim());
            let peers: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
            for (name, d) in &dmax_mm_values {
                if let Some(want) = peers[format!("scipy_dmax_{name}_mm")].as_f64() {
                    let ok = (d - want).abs() <= 1e-9 * want;
                    println!(
                        "Dmax {name}: petseg {d:.6} mm, SciPy hull+pdist {want:.6} mm: {}",
                        if ok { "equal" } else { "DIFFERENT" }
                    );
                }
            }
        }
        Ok(o) => println!(
            "python peers failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("python3 unavailable: {e}"),
    }
}
