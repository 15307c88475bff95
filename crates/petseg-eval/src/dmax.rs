//! Dmax: the largest Euclidean distance between two foreground voxel centres.
//!
//! The distance is measured between voxel **centres** in world millimetres
//! (the affine's linear part, so anisotropic and oblique grids are handled).
//! It is exact, without visiting all pairs:
//!
//! 1. The farthest pair of a finite set is attained at extreme points of its
//!    convex hull (a convex function on a polytope peaks at a vertex). An
//!    extreme point of a set stays extreme in every subset that contains it,
//!    so any filter that keeps only the extreme points of subsets never
//!    loses a true hull vertex.
//! 2. Per row `(j, k)` only the first and last foreground voxel can be
//!    extreme (the runs give them directly).
//! 3. Those candidates are filtered three times: kept only if they are a
//!    strict vertex of the 2-D convex hull (Andrew's monotone chain, exact
//!    integer arithmetic in voxel indices: a linear map preserves convexity)
//!    of their k-plane, then of their j-plane, then of their i-plane.
//! 4. On the survivors (typically a few hundred), with centre `c`, radius
//!    `R = max |p − c|` and a lower bound `D0` from two farthest-point
//!    sweeps, a pair can beat `D0` only if both ends satisfy
//!    `|p − c| > D0 − R`; those points are compared pairwise in order of
//!    decreasing `|p − c|`, stopping as soon as `|p − c| + |q − c|` cannot
//!    beat the best distance found.
//!
//! Degenerate sets (one voxel, collinear or coplanar voxels) need no special
//! case: the 2-D hulls keep the end points of collinear sets.

use crate::components::Run;

/// The farthest distance (mm) between foreground voxel centres given as runs
/// (see [`crate::components::Components::runs`]) of a grid with `nj` rows
/// per slice. `linear` is the affine's 3×3 linear part (`world = L · ijk`).
/// Returns 0 for fewer than two voxels.
pub fn dmax_mm(runs: &[Run], nj: usize, linear: [[f64; 3]; 3]) -> f64 {
    let mut pts: Vec<[i64; 3]> = Vec::new();
    // Runs are in raster order: gather the extremes of each row.
    let mut idx = 0;
    while idx < runs.len() {
        let row = runs[idx].row;
        let first = runs[idx].start;
        let mut last = runs[idx].end - 1;
        while idx < runs.len() && runs[idx].row == row {
            last = runs[idx].end - 1;
            idx += 1;
        }
        let (j, k) = ((row as usize % nj) as i64, (row as usize / nj) as i64);
        pts.push([first as i64, j, k]);
        if last != first {
            pts.push([last as i64, j, k]);
        }
    }
    dmax_of_points_mm(pts, linear)
}

/// The farthest distance (mm) among voxel index points (all distinct).
pub fn dmax_of_points_mm(pts: Vec<[i64; 3]>, linear: [[f64; 3]; 3]) -> f64 {
    if pts.len() < 2 {
        return 0.0;
    }
    // Extreme points of each k-plane, then j-plane, then i-plane.
    let mut pts = planar_hull_filter(pts, 2);
    pts = planar_hull_filter(pts, 1);
    pts = planar_hull_filter(pts, 0);
    let mm: Vec<[f64; 3]> = pts
        .iter()
        .map(|p| {
            let f = [p[0] as f64, p[1] as f64, p[2] as f64];
            [
                linear[0][0] * f[0] + linear[0][1] * f[1] + linear[0][2] * f[2],
                linear[1][0] * f[0] + linear[1][1] * f[1] + linear[1][2] * f[2],
                linear[2][0] * f[0] + linear[2][1] * f[1] + linear[2][2] * f[2],
            ]
        })
        .collect();
    farthest_pair_mm(&mm)
}

fn dist(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// Index of the point of `pts` farthest from `from` and that distance.
fn farthest_from(pts: &[[f64; 3]], from: &[f64; 3]) -> (usize, f64) {
    let mut best = (0, -1.0);
    for (i, p) in pts.iter().enumerate() {
        let d = dist(p, from);
        if d > best.1 {
            best = (i, d);
        }
    }
    best
}

/// Exact diameter of a small point set with centre-radius pruning.
fn farthest_pair_mm(pts: &[[f64; 3]]) -> f64 {
    if pts.len() < 2 {
        return 0.0;
    }
    let n = pts.len() as f64;
    let mut c = [0.0; 3];
    for p in pts {
        for a in 0..3 {
            c[a] += p[a] / n;
        }
    }
    let (a, radius) = farthest_from(pts, &c);
    let (b, d_ab) = farthest_from(pts, &pts[a]);
    let (_, d_b) = farthest_from(pts, &pts[b]);
    let mut best = d_ab.max(d_b);
    // Only points with |p − c| > best − R can end a longer pair.
    let slack = 1e-9 * (1.0 + radius);
    let mut cand: Vec<(f64, usize)> = pts
        .iter()
        .enumerate()
        .map(|(i, p)| (dist(p, &c), i))
        .filter(|&(r, _)| r + radius >= best - slack)
        .collect();
    cand.sort_by(|x, y| y.0.total_cmp(&x.0));
    for x in 0..cand.len() {
        let (rx, ix) = cand[x];
        if rx + cand.get(x + 1).map_or(0.0, |c| c.0) < best - slack {
            break;
        }
        for &(ry, iy) in &cand[x + 1..] {
            if rx + ry < best - slack {
                break;
            }
            let d = dist(&pts[ix], &pts[iy]);
            if d > best {
                best = d;
            }
        }
    }
    best
}

/// Keeps the points that are strict vertices of the 2-D convex hull of the
/// points sharing their coordinate `axis` (exact integer arithmetic).
fn planar_hull_filter(mut pts: Vec<[i64; 3]>, axis: usize) -> Vec<[i64; 3]> {
    let (u, v) = match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    pts.sort_unstable_by_key(|p| (p[axis], p[u], p[v]));
    let mut out = Vec::with_capacity(pts.len());
    let mut hull: Vec<[i64; 3]> = Vec::new();
    let mut start = 0;
    while start < pts.len() {
        let mut end = start;
        while end < pts.len() && pts[end][axis] == pts[start][axis] {
            end += 1;
        }
        hull_2d(&pts[start..end], u, v, &mut hull);
        out.extend_from_slice(&hull);
        start = end;
    }
    out
}

fn cross(o: &[i64; 3], a: &[i64; 3], b: &[i64; 3], u: usize, v: usize) -> i64 {
    (a[u] - o[u]) * (b[v] - o[v]) - (a[v] - o[v]) * (b[u] - o[u])
}

/// Andrew's monotone chain on points sorted by `(u, v)`: strict hull
/// vertices (collinear points on edges dropped) into `hull`.
fn hull_2d(sorted: &[[i64; 3]], u: usize, v: usize, hull: &mut Vec<[i64; 3]>) {
    hull.clear();
    if sorted.len() <= 2 {
        hull.extend_from_slice(sorted);
        return;
    }
    for p in sorted {
        while hull.len() >= 2 && cross(&hull[hull.len() - 2], &hull[hull.len() - 1], p, u, v) <= 0 {
            hull.pop();
        }
        hull.push(*p);
    }
    let lower = hull.len() + 1;
    for p in sorted.iter().rev().skip(1) {
        while hull.len() >= lower
            && cross(&hull[hull.len() - 2], &hull[hull.len() - 1], p, u, v) <= 0
        {
            hull.pop();
        }
        hull.push(*p);
    }
    hull.pop(); // the first point again
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

    fn brute(pts: &[[i64; 3]], l: [[f64; 3]; 3]) -> f64 {
        let mut best: f64 = 0.0;
        for a in pts {
            for b in pts {
                let d: Vec<f64> = (0..3).map(|x| (a[x] - b[x]) as f64).collect();
                let w: Vec<f64> = (0..3)
                    .map(|r| l[r][0] * d[0] + l[r][1] * d[1] + l[r][2] * d[2])
                    .collect();
                best = best.max((w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt());
            }
        }
        best
    }

    #[test]
    fn degenerate_sets() {
        assert_eq!(dmax_of_points_mm(vec![], ID), 0.0);
        assert_eq!(dmax_of_points_mm(vec![[3, 4, 5]], ID), 0.0);
        // Collinear along each axis and a diagonal.
        let line: Vec<[i64; 3]> = (0..7).map(|t| [t, 2 * t, 3]).collect();
        assert!((dmax_of_points_mm(line.clone(), ID) - brute(&line, ID)).abs() < 1e-12);
        // Coplanar grid.
        let plane: Vec<[i64; 3]> = (0..5)
            .flat_map(|a| (0..4).map(move |b| [a, 1, b]))
            .collect();
        let l = [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.7]];
        assert!((dmax_of_points_mm(plane.clone(), l) - brute(&plane, l)).abs() < 1e-12);
    }

    #[test]
    fn hull_keeps_only_strict_vertices() {
        let sq: Vec<[i64; 3]> = (0..3)
            .flat_map(|a| (0..3).map(move |b| [a, b, 0]))
            .collect();
        let mut h = Vec::new();
        let mut s = sq.clone();
        s.sort_by_key(|p| (p[0], p[1]));
        hull_2d(&s, 0, 1, &mut h);
        assert_eq!(h.len(), 4);
    }
}
