//! Sampling solids on a voxel grid (voxel centres), in parallel over k-slabs.

use rayon::prelude::*;

use super::shape::Shape;
use crate::affine::Affine;

/// A voxel grid: shape and voxel-to-world affine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Voxels along i, j, k.
    pub shape: [usize; 3],
    /// Voxel → world (RAS+ mm).
    pub affine: Affine,
}

/// Inclusive voxel-index box per axis, or `None` when empty.
type VoxelBox = [(usize, usize); 3];

impl Grid {
    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the grid has no voxel (never true for generated grids).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The voxel box covering a world bounding box, clipped to the grid.
    pub(crate) fn voxel_box(&self, lo: [f64; 3], hi: [f64; 3]) -> Option<VoxelBox> {
        let mut vmin = [f64::INFINITY; 3];
        let mut vmax = [f64::NEG_INFINITY; 3];
        for c in 0..8 {
            let p = [
                if c & 1 == 0 { lo[0] } else { hi[0] },
                if c & 2 == 0 { lo[1] } else { hi[1] },
                if c & 4 == 0 { lo[2] } else { hi[2] },
            ];
            let v = self.affine.world_to_voxel(p);
            for a in 0..3 {
                vmin[a] = vmin[a].min(v[a]);
                vmax[a] = vmax[a].max(v[a]);
            }
        }
        let mut out = [(0usize, 0usize); 3];
        for a in 0..3 {
            let l = vmin[a].floor().max(0.0);
            let h = vmax[a].ceil().min(self.shape[a] as f64 - 1.0);
            if h < l {
                return None;
            }
            out[a] = (l as usize, h as usize);
        }
        Some(out)
    }

    /// World position of voxel `(i, j, k)`, with the affine's columns
    /// unpacked for speed.
    fn world_fn(&self) -> impl Fn(usize, usize, usize) -> [f64; 3] + Sync {
        let m = *self.affine.matrix();
        move |i, j, k| {
            let (i, j, k) = (i as f64, j as f64, k as f64);
            [
                m[(0, 0)] * i + m[(0, 1)] * j + m[(0, 2)] * k + m[(0, 3)],
                m[(1, 0)] * i + m[(1, 1)] * j + m[(1, 2)] * k + m[(1, 3)],
                m[(2, 0)] * i + m[(2, 1)] * j + m[(2, 2)] * k + m[(2, 3)],
            ]
        }
    }

    /// Paints the solids in order: each voxel gets `1 + index` of the last
    /// solid containing its centre, 0 when none does. Raster order.
    pub(crate) fn paint(&self, shapes: &[Shape]) -> Vec<u16> {
        let boxes: Vec<Option<VoxelBox>> = shapes
            .iter()
            .map(|s| {
                let (lo, hi) = s.bbox();
                self.voxel_box(lo, hi)
            })
            .collect();
        let [ni, nj, _] = self.shape;
        let world = self.world_fn();
        let mut map = vec![0u16; self.len()];
        let m = *self.affine.matrix();
        let u = [m[(0, 0)], m[(1, 0)], m[(2, 0)]];
        map.par_chunks_mut(ni * nj)
            .enumerate()
            .for_each(|(k, slab)| {
                for (n, (shape, b)) in shapes.iter().zip(&boxes).enumerate() {
                    let Some(b) = b else { continue };
                    if k < b[2].0 || k > b[2].1 {
                        continue;
                    }
                    let code = (n + 1) as u16;
                    for j in b[1].0..=b[1].1 {
                        let row = &mut slab[ni * j..ni * (j + 1)];
                        let inside = |i: usize| shape.contains(world(i, j, k));
                        match shape.line_interval(world(0, j, k), u) {
                            Some(None) => {}
                            Some(Some((t0, t1))) => {
                                // The closed-form interval, then its ends settled
                                // by the exact test so that the result equals
                                // point-by-point sampling (sections are convex).
                                let (lo, hi) = (b[0].0 as f64, b[0].1 as f64);
                                if t1.floor() < lo || t0.ceil() > hi {
                                    continue;
                                }
                                let mut i0 = t0.ceil().max(lo) as usize;
                                let mut i1 = t1.floor().min(hi) as usize;
                                while i0 > b[0].0 && inside(i0 - 1) {
                                    i0 -= 1;
                                }
                                while i1 < b[0].1 && inside(i1 + 1) {
                                    i1 += 1;
                                }
                                while i0 <= i1 && !inside(i0) {
                                    i0 += 1;
                                }
                                while i1 > i0 && !inside(i1) {
                                    i1 -= 1;
                                }
                                if i0 <= i1 && inside(i0) {
                                    row[i0..=i1].fill(code);
                                }
                            }
                            None => {
                                for i in b[0].0..=b[0].1 {
                                    if inside(i) {
                                        row[i] = code;
                                    }
                                }
                            }
                        }
                    }
                }
            });
        map
    }

    /// Calls `f(raster_index, rho²)` for every voxel whose centre is inside
    /// the ellipsoid `shape` (rho² ≤ 1 is its normalised squared radius).
    pub(crate) fn for_each_inside(&self, shape: &Shape, mut f: impl FnMut(usize, f64)) {
        let (lo, hi) = shape.bbox();
        let Some(b) = self.voxel_box(lo, hi) else {
            return;
        };
        let [ni, nj, _] = self.shape;
        let world = self.world_fn();
        for k in b[2].0..=b[2].1 {
            for j in b[1].0..=b[1].1 {
                for i in b[0].0..=b[0].1 {
                    let r2 = shape.rho2(world(i, j, k));
                    if r2 <= 1.0 {
                        f(i + ni * (j + nj * k), r2);
                    }
                }
            }
        }
    }

    /// Whether a world point lies inside the grid, at least `margin_vox`
    /// voxels from every face.
    pub(crate) fn contains_world(&self, p: [f64; 3], margin_vox: f64) -> bool {
        let v = self.affine.world_to_voxel(p);
        (0..3).all(|a| v[a] >= margin_vox && v[a] <= self.shape[a] as f64 - 1.0 - margin_vox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painted_sphere_has_its_volume_and_later_solids_win() {
        let grid = Grid {
            shape: [40, 40, 40],
            affine: Affine::from_rows([
                [-1.0, 0.0, 0.0, 20.0],
                [0.0, -1.0, 0.0, 20.0],
                [0.0, 0.0, 1.0, -20.0],
                [0.0, 0.0, 0.0, 1.0],
            ])
            .unwrap(),
        };
        let big = Shape::ellipsoid([0.0; 3], [12.0; 3], 0.0);
        let small = Shape::ellipsoid([0.0; 3], [5.0; 3], 0.0);
        let map = grid.paint(&[big, small]);
        let n1 = map.iter().filter(|&&c| c == 1).count() as f64;
        let n2 = map.iter().filter(|&&c| c == 2).count() as f64;
        let v = |r: f64| 4.0 / 3.0 * std::f64::consts::PI * r.powi(3);
        assert!(((n1 + n2) - v(12.0)).abs() / v(12.0) < 0.03, "{n1}+{n2}");
        assert!((n2 - v(5.0)).abs() / v(5.0) < 0.1, "{n2}");
        let mut inside = 0;
        grid.for_each_inside(&small, |idx, r2| {
            assert_eq!(map[idx], 2);
            assert!(r2 <= 1.0);
            inside += 1;
        });
        assert_eq!(inside as f64, n2);
    }

    #[test]
    fn interval_painting_equals_point_sampling() {
        let grid = Grid {
            shape: [37, 29, 23],
            affine: Affine::from_rows([
                [-1.7, 0.0, 0.0, 30.0],
                [0.0, -1.3, 0.0, 18.0],
                [0.0, 0.0, 2.1, -22.0],
                [0.0, 0.0, 0.0, 1.0],
            ])
            .unwrap(),
        };
        let shapes = [
            Shape::frustum(
                -20.0,
                [1.0, -2.0],
                [25.0, 14.0],
                15.0,
                [-4.0, 3.0],
                [12.0, 16.0],
            ),
            Shape::ellipsoid([3.0, 1.0, -4.0], [17.0, 6.0, 11.0], 0.7),
            Shape::ellipsoid([-40.0, 1.0, -4.0], [17.0, 6.0, 11.0], 0.0),
            Shape::Band {
                centre: [0.0, 0.0],
                r: [20.0, 15.0],
                z_post: 5.0,
                drop: 10.0,
                half_radial: 3.0,
                half_z: 3.0,
                lo: -0.9,
                hi: 0.5,
            },
            Shape::ellipsoid([8.0, -6.0, 3.0], [2.0, 2.0, 2.0], 0.0),
        ];
        let fast = grid.paint(&shapes);
        let [ni, nj, nk] = grid.shape;
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    let p = grid.affine.voxel_to_world([i as f64, j as f64, k as f64]);
                    let want = shapes
                        .iter()
                        .enumerate()
                        .rev()
                        .find(|(_, s)| s.contains(p))
                        .map(|(n, _)| n as u16 + 1)
                        .unwrap_or(0);
                    assert_eq!(fast[i + ni * (j + nj * k)], want, "voxel {i} {j} {k}");
                }
            }
        }
        assert!(fast.contains(&5) && fast.contains(&4));
    }
}
