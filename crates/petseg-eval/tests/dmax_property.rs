//! Dmax (hull filtering + pruned pairs) equals the all-pairs brute force on
//! seeded random masks, sparse and dense, with anisotropic and oblique
//! spacing; and on larger masks equals the plain hull-vertex answer.

mod common;

use petseg_eval::dmax::{dmax_mm, dmax_of_points_mm};
use petseg_eval::{label, Connectivity};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn brute(points: &[[i64; 3]], l: [[f64; 3]; 3]) -> f64 {
    let mut best: f64 = 0.0;
    for (x, a) in points.iter().enumerate() {
        for b in &points[x + 1..] {
            let d = [
                (a[0] - b[0]) as f64,
                (a[1] - b[1]) as f64,
                (a[2] - b[2]) as f64,
            ];
            let w: Vec<f64> = (0..3)
                .map(|r| l[r][0] * d[0] + l[r][1] * d[1] + l[r][2] * d[2])
                .collect();
            best = best.max((w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt());
        }
    }
    best
}

fn points(mask: &[u8], shape: [usize; 3]) -> Vec<[i64; 3]> {
    let [ni, nj, _] = shape;
    mask.iter()
        .enumerate()
        .filter(|(_, &v)| v != 0)
        .map(|(i, _)| {
            [
                (i % ni) as i64,
                ((i / ni) % nj) as i64,
                (i / (ni * nj)) as i64,
            ]
        })
        .collect()
}

#[test]
fn equals_brute_force_on_random_masks() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let oblique = [[1.9, 0.3, 0.0], [-0.2, 2.1, 0.4], [0.1, 0.0, 3.2]];
    for t in 0..300 {
        let shape = [
            rng.random_range(1..12),
            rng.random_range(1..12),
            rng.random_range(1..12),
        ];
        let p = [0.002, 0.02, 0.1, 0.5, 0.95][t % 5];
        let mask = common::random_mask(shape, p, 1000 + t as u64);
        let l = if t % 2 == 0 {
            [
                [rng.random_range(0.5..5.0), 0.0, 0.0],
                [0.0, rng.random_range(0.5..5.0), 0.0],
                [0.0, 0.0, rng.random_range(0.5..5.0)],
            ]
        } else {
            oblique
        };
        let cc = label(&mask, shape, Connectivity::Six).unwrap();
        let want = brute(&points(&mask, shape), l);
        let got = dmax_mm(cc.runs(), shape[1], l);
        assert!(
            (got - want).abs() <= 1e-9 * (1.0 + want),
            "case {t} shape {shape:?} p {p}: {got} vs {want}"
        );
    }
}

#[test]
fn degenerate_sets_equal_brute_force() {
    let l = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]];
    let sets: Vec<Vec<[i64; 3]>> = vec![
        vec![[5, 5, 5]],
        (0..10).map(|t| [t, 0, 0]).collect(),
        (0..10).map(|t| [0, 0, t]).collect(),
        (0..10).map(|t| [t, t, t]).collect(),
        (0..6)
            .flat_map(|a| (0..6).map(move |b| [a, b, 4]))
            .collect(),
        (0..6)
            .flat_map(|a| (0..6).map(move |b| [a, 2, b]))
            .collect(),
        (0..6)
            .flat_map(|a| (0..6).map(move |b| [a, b, a]))
            .collect(), // tilted plane
    ];
    for s in sets {
        let want = brute(&s, l);
        assert!(
            (dmax_of_points_mm(s.clone(), l) - want).abs() < 1e-9,
            "{s:?}"
        );
    }
}

#[test]
fn large_ball_pair_equals_hull_vertices_brute_force() {
    // Two digital balls (~9 k voxels): brute force over all voxels is still
    // affordable once, and must equal the filtered answer.
    let shape = [40, 30, 60];
    let mut mask = vec![0u8; 40 * 30 * 60];
    for (c, r) in [([10.0, 12.0, 12.0], 7.5), ([28.0, 17.0, 45.0], 9.0)] {
        for k in 0..60 {
            for j in 0..30 {
                for i in 0..40 {
                    let d: f64 = (i as f64 - c[0]).powi(2)
                        + (j as f64 - c[1]).powi(2)
                        + (k as f64 - c[2]).powi(2);
                    if d <= r * r {
                        mask[i + 40 * (j + 30 * k)] = 1;
                    }
                }
            }
        }
    }
    let l = [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 3.0]];
    let cc = label(&mask, shape, Connectivity::Eighteen).unwrap();
    let pts = points(&mask, shape);
    let want = brute(&pts, l);
    assert!((dmax_mm(cc.runs(), shape[1], l) - want).abs() < 1e-9);
}
