//! Solid primitives the phantom body is built from, in world mm (RAS+).

/// A solid in world coordinates with an inside test and a bounding box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    /// Ellipsoid with semi-axes `r` along its local axes, turned by `angle`
    /// about the z axis (local x' = cos·dx + sin·dy).
    Ellipsoid {
        centre: [f64; 3],
        r: [f64; 3],
        cos: f64,
        sin: f64,
    },
    /// Elliptic cylinder along z between `z0` and `z1` whose centre and
    /// semi-axes vary linearly from the `*0` to the `*1` values.
    Frustum {
        z0: f64,
        z1: f64,
        c0: [f64; 2],
        c1: [f64; 2],
        r0: [f64; 2],
        r1: [f64; 2],
    },
    /// A band along an ellipse in a (tilted) axial plane: ribs and the
    /// mandible. `drop` lowers the anterior end (y > centre) by that many
    /// mm; only the part whose normalised anterior direction lies in
    /// `[lo, hi]` exists.
    Band {
        centre: [f64; 2],
        r: [f64; 2],
        z_post: f64,
        drop: f64,
        half_radial: f64,
        half_z: f64,
        lo: f64,
        hi: f64,
    },
}

impl Shape {
    /// An ellipsoid turned by `angle` radians about z.
    pub(crate) fn ellipsoid(centre: [f64; 3], r: [f64; 3], angle: f64) -> Shape {
        Shape::Ellipsoid {
            centre,
            r,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    /// A z-aligned elliptic frustum from `(z0, c0, r0)` to `(z1, c1, r1)`.
    pub(crate) fn frustum(
        z0: f64,
        c0: [f64; 2],
        r0: [f64; 2],
        z1: f64,
        c1: [f64; 2],
        r1: [f64; 2],
    ) -> Shape {
        Shape::Frustum {
            z0,
            z1,
            c0,
            c1,
            r0,
            r1,
        }
    }

    /// The same solid grown by `margin_mm` in every direction (exactly for
    /// frustum radii and ends, per semi-axis for ellipsoids; bands are
    /// thickened).
    pub(crate) fn inflated(&self, margin_mm: f64) -> Shape {
        let m = margin_mm;
        match *self {
            Shape::Ellipsoid {
                centre,
                r,
                cos,
                sin,
            } => Shape::Ellipsoid {
                centre,
                r: [r[0] + m, r[1] + m, r[2] + m],
                cos,
                sin,
            },
            Shape::Frustum {
                z0,
                z1,
                c0,
                c1,
                r0,
                r1,
            } => {
                let (z0, z1) = if z0 <= z1 {
                    (z0 - m, z1 + m)
                } else {
                    (z0 + m, z1 - m)
                };
                Shape::Frustum {
                    z0,
                    z1,
                    c0,
                    c1,
                    r0: [r0[0] + m, r0[1] + m],
                    r1: [r1[0] + m, r1[1] + m],
                }
            }
            Shape::Band {
                centre,
                r,
                z_post,
                drop,
                half_radial,
                half_z,
                lo,
                hi,
            } => Shape::Band {
                centre,
                r,
                z_post,
                drop,
                half_radial: half_radial + m,
                half_z: half_z + m,
                lo,
                hi,
            },
        }
    }

    /// Normalised radius of `p` (≤ 1 inside) for ellipsoids; other shapes
    /// answer 0 inside and 2 outside.
    pub(crate) fn rho2(&self, p: [f64; 3]) -> f64 {
        match *self {
            Shape::Ellipsoid {
                centre,
                r,
                cos,
                sin,
            } => {
                let d = [p[0] - centre[0], p[1] - centre[1], p[2] - centre[2]];
                let x = cos * d[0] + sin * d[1];
                let y = -sin * d[0] + cos * d[1];
                (x / r[0]).powi(2) + (y / r[1]).powi(2) + (d[2] / r[2]).powi(2)
            }
            _ => {
                if self.contains(p) {
                    0.0
                } else {
                    2.0
                }
            }
        }
    }

    /// Whether `p` (world mm) is inside.
    pub(crate) fn contains(&self, p: [f64; 3]) -> bool {
        match *self {
            Shape::Ellipsoid { .. } => self.rho2(p) <= 1.0,
            Shape::Frustum {
                z0,
                z1,
                c0,
                c1,
                r0,
                r1,
            } => {
                let (lo, hi) = if z0 <= z1 { (z0, z1) } else { (z1, z0) };
                if p[2] < lo || p[2] > hi {
                    return false;
                }
                let t = if z1 != z0 {
                    (p[2] - z0) / (z1 - z0)
                } else {
                    0.0
                };
                let cx = c0[0] + t * (c1[0] - c0[0]);
                let cy = c0[1] + t * (c1[1] - c0[1]);
                let rx = r0[0] + t * (r1[0] - r0[0]);
                let ry = r0[1] + t * (r1[1] - r0[1]);
                ((p[0] - cx) / rx).powi(2) + ((p[1] - cy) / ry).powi(2) <= 1.0
            }
            Shape::Band {
                centre,
                r,
                z_post,
                drop,
                half_radial,
                half_z,
                lo,
                hi,
            } => {
                let u = (p[0] - centre[0]) / r[0];
                let v = (p[1] - centre[1]) / r[1];
                let rho = (u * u + v * v).sqrt();
                if rho < 1e-9 {
                    return false;
                }
                let ant = v / rho;
                if ant < lo || ant > hi {
                    return false;
                }
                let radial_mm = (rho - 1.0) * 0.5 * (r[0] + r[1]);
                if radial_mm.abs() > half_radial {
                    return false;
                }
                let zc = z_post - drop * 0.5 * (ant + 1.0);
                (p[2] - zc).abs() <= half_z
            }
        }
    }

    /// The parameter interval `[t0, t1]` over which the line `p0 + t·u`
    /// is inside, for shapes whose sections along the line are convex and
    /// computable in closed form (ellipsoids; frustums when `u` has no z
    /// component). `Some(None)`: the line misses the shape. `None`: no
    /// closed form, test point by point.
    pub(crate) fn line_interval(&self, p0: [f64; 3], u: [f64; 3]) -> Option<Option<(f64, f64)>> {
        // Solves Σ ((a_m + t·b_m) / r_m)² ≤ 1 for t.
        fn quadratic(terms: &[(f64, f64, f64)]) -> Option<(f64, f64)> {
            let (mut qa, mut qb, mut qc) = (0.0, 0.0, -1.0);
            for &(a, b, r) in terms {
                qa += (b / r) * (b / r);
                qb += 2.0 * a * b / (r * r);
                qc += (a / r) * (a / r);
            }
            if qa < 1e-18 {
                return (qc <= 0.0).then_some((f64::NEG_INFINITY, f64::INFINITY));
            }
            let disc = qb * qb - 4.0 * qa * qc;
            if disc < 0.0 {
                return None;
            }
            let sq = disc.sqrt();
            Some(((-qb - sq) / (2.0 * qa), (-qb + sq) / (2.0 * qa)))
        }
        match *self {
            Shape::Ellipsoid {
                centre,
                r,
                cos,
                sin,
            } => {
                let d = [p0[0] - centre[0], p0[1] - centre[1], p0[2] - centre[2]];
                Some(quadratic(&[
                    (cos * d[0] + sin * d[1], cos * u[0] + sin * u[1], r[0]),
                    (-sin * d[0] + cos * d[1], -sin * u[0] + cos * u[1], r[1]),
                    (d[2], u[2], r[2]),
                ]))
            }
            Shape::Frustum {
                z0,
                z1,
                c0,
                c1,
                r0,
                r1,
            } if u[2] == 0.0 => {
                let (lo, hi) = if z0 <= z1 { (z0, z1) } else { (z1, z0) };
                if p0[2] < lo || p0[2] > hi {
                    return Some(None);
                }
                let t = if z1 != z0 {
                    (p0[2] - z0) / (z1 - z0)
                } else {
                    0.0
                };
                let cx = c0[0] + t * (c1[0] - c0[0]);
                let cy = c0[1] + t * (c1[1] - c0[1]);
                let rx = r0[0] + t * (r1[0] - r0[0]);
                let ry = r0[1] + t * (r1[1] - r0[1]);
                Some(quadratic(&[(p0[0] - cx, u[0], rx), (p0[1] - cy, u[1], ry)]))
            }
            _ => None,
        }
    }

    /// Axis-aligned world bounding box `(min, max)`.
    pub(crate) fn bbox(&self) -> ([f64; 3], [f64; 3]) {
        match *self {
            Shape::Ellipsoid {
                centre,
                r,
                cos,
                sin,
            } => {
                let ex = ((r[0] * cos).powi(2) + (r[1] * sin).powi(2)).sqrt();
                let ey = ((r[0] * sin).powi(2) + (r[1] * cos).powi(2)).sqrt();
                (
                    [centre[0] - ex, centre[1] - ey, centre[2] - r[2]],
                    [centre[0] + ex, centre[1] + ey, centre[2] + r[2]],
                )
            }
            Shape::Frustum {
                z0,
                z1,
                c0,
                c1,
                r0,
                r1,
            } => (
                [
                    (c0[0] - r0[0]).min(c1[0] - r1[0]),
                    (c0[1] - r0[1]).min(c1[1] - r1[1]),
                    z0.min(z1),
                ],
                [
                    (c0[0] + r0[0]).max(c1[0] + r1[0]),
                    (c0[1] + r0[1]).max(c1[1] + r1[1]),
                    z0.max(z1),
                ],
            ),
            Shape::Band {
                centre,
                r,
                z_post,
                drop,
                half_radial,
                half_z,
                ..
            } => {
                let grow = 1.0 + half_radial / (0.5 * (r[0] + r[1]));
                (
                    [
                        centre[0] - r[0] * grow,
                        centre[1] - r[1] * grow,
                        z_post - drop.max(0.0) - half_z,
                    ],
                    [
                        centre[0] + r[0] * grow,
                        centre[1] + r[1] * grow,
                        z_post - drop.min(0.0) + half_z,
                    ],
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_ellipsoid_contains_its_axis_ends() {
        let s = Shape::ellipsoid(
            [1.0, 2.0, 3.0],
            [10.0, 2.0, 4.0],
            std::f64::consts::FRAC_PI_2,
        );
        // Local x' points along world +y after a quarter turn.
        assert!(s.contains([1.0, 11.9, 3.0]));
        assert!(!s.contains([10.0, 2.0, 3.0]));
        let (lo, hi) = s.bbox();
        assert!((hi[1] - 12.0).abs() < 1e-9 && (lo[0] + 1.0).abs() < 1e-9);
    }

    #[test]
    fn frustum_interpolates_along_z() {
        let s = Shape::frustum(
            0.0,
            [0.0, 0.0],
            [10.0, 10.0],
            100.0,
            [20.0, 0.0],
            [30.0, 10.0],
        );
        assert!(s.contains([10.0 + 19.9, 0.0, 50.0]));
        assert!(!s.contains([10.0 + 20.1, 0.0, 50.0]));
        assert!(!s.contains([0.0, 0.0, 100.5]));
    }

    #[test]
    fn band_drops_anteriorly_and_respects_its_arc() {
        let s = Shape::Band {
            centre: [0.0, 0.0],
            r: [100.0, 80.0],
            z_post: 0.0,
            drop: 40.0,
            half_radial: 5.0,
            half_z: 5.0,
            lo: -0.9,
            hi: 0.9,
        };
        // Lateral point (ant = 0): z centre −20.
        assert!(s.contains([100.0, 0.0, -20.0]));
        assert!(!s.contains([100.0, 0.0, 0.0]));
        // Straight anterior (ant = 1) is excluded by hi.
        assert!(!s.contains([0.0, 80.0, -40.0]));
        let (lo, hi) = s.bbox();
        assert!(lo[2] <= -45.0 && hi[2] >= 5.0);
    }
}
