//! Voxel-to-world affines in RAS+ millimetres.

use nalgebra::{Matrix3, Matrix4, Vector3, Vector4};

use crate::error::{IoError, Result};

/// A 4×4 voxel-to-world transform: world (RAS+, mm) = `A · [i, j, k, 1]ᵀ`.
///
/// This is the NIfTI convention (the sform of a file); DICOM's LPS is
/// converted on the way in. The last row is always `[0, 0, 0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(Matrix4<f64>);

impl Affine {
    /// Builds an affine, checking that it is finite, that the last row is
    /// `[0, 0, 0, 1]` and that the 3×3 part is invertible.
    pub fn new(m: Matrix4<f64>) -> Result<Self> {
        if m.iter().any(|v| !v.is_finite()) {
            return Err(IoError::Geometry(format!(
                "affine has a non-finite entry: {m}"
            )));
        }
        let last = m.row(3);
        if (last[0], last[1], last[2], last[3]) != (0.0, 0.0, 0.0, 1.0) {
            return Err(IoError::Geometry(format!(
                "affine's last row is not [0 0 0 1]: {m}"
            )));
        }
        let lin = m.fixed_view::<3, 3>(0, 0).into_owned();
        let det = lin.determinant();
        if !det.is_finite() || det.abs() < 1e-12 {
            return Err(IoError::Geometry(format!(
                "affine is singular (det {det:e}): {m}"
            )));
        }
        Ok(Affine(m))
    }

    /// Builds an affine from row-major rows.
    pub fn from_rows(rows: [[f64; 4]; 4]) -> Result<Self> {
        Self::new(Matrix4::from_fn(|r, c| rows[r][c]))
    }

    /// A diagonal affine with the given spacing (mm) and origin (world mm of voxel 0).
    pub fn from_spacing_origin(spacing_mm: [f64; 3], origin_mm: [f64; 3]) -> Result<Self> {
        let mut m = Matrix4::identity();
        for a in 0..3 {
            m[(a, a)] = spacing_mm[a];
            m[(a, 3)] = origin_mm[a];
        }
        Self::new(m)
    }

    /// Builds an affine from a direction matrix (unit columns, world axes of
    /// i, j, k), spacing and origin.
    pub fn from_direction(
        direction: Matrix3<f64>,
        spacing_mm: [f64; 3],
        origin_mm: [f64; 3],
    ) -> Result<Self> {
        let mut m = Matrix4::identity();
        for c in 0..3 {
            for r in 0..3 {
                m[(r, c)] = direction[(r, c)] * spacing_mm[c];
            }
            m[(c, 3)] = origin_mm[c];
        }
        Self::new(m)
    }

    /// The underlying matrix.
    pub fn matrix(&self) -> &Matrix4<f64> {
        &self.0
    }

    /// Row-major rows, for serialisation and printing.
    pub fn rows(&self) -> [[f64; 4]; 4] {
        let mut out = [[0.0; 4]; 4];
        for (r, row) in out.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = self.0[(r, c)];
            }
        }
        out
    }

    /// Voxel size along i, j, k in mm (norms of the first three columns).
    pub fn spacing_mm(&self) -> [f64; 3] {
        let l = self.linear();
        [l.column(0).norm(), l.column(1).norm(), l.column(2).norm()]
    }

    /// World position (mm) of voxel (0, 0, 0).
    pub fn origin_mm(&self) -> [f64; 3] {
        [self.0[(0, 3)], self.0[(1, 3)], self.0[(2, 3)]]
    }

    /// Unit world direction of each voxel axis, as the columns of a 3×3 matrix.
    pub fn direction(&self) -> Matrix3<f64> {
        let l = self.linear();
        let s = self.spacing_mm();
        Matrix3::from_fn(|r, c| l[(r, c)] / s[c])
    }

    /// The 3×3 linear part (direction × spacing).
    pub fn linear(&self) -> Matrix3<f64> {
        self.0.fixed_view::<3, 3>(0, 0).into_owned()
    }

    /// World coordinates (mm) of a continuous voxel index.
    pub fn voxel_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        let v = self.0 * Vector4::new(ijk[0], ijk[1], ijk[2], 1.0);
        [v[0], v[1], v[2]]
    }

    /// Continuous voxel index of a world point (mm).
    pub fn world_to_voxel(&self, xyz: [f64; 3]) -> [f64; 3] {
        let inv = self.inverse();
        let v = inv * Vector4::new(xyz[0], xyz[1], xyz[2], 1.0);
        [v[0], v[1], v[2]]
    }

    /// The inverse matrix (world → voxel). Always exists: construction checks it.
    pub fn inverse(&self) -> Matrix4<f64> {
        self.0
            .try_inverse()
            .expect("Affine::new guarantees an invertible matrix")
    }

    /// The affine of a grid whose voxel (0,0,0) sits at voxel `offset` of this
    /// one (same axes and spacing): used by crops and pads.
    pub fn shifted(&self, offset: [f64; 3]) -> Affine {
        let o = self.voxel_to_world(offset);
        let mut m = self.0;
        m[(0, 3)] = o[0];
        m[(1, 3)] = o[1];
        m[(2, 3)] = o[2];
        Affine(m)
    }

    /// `self ∘ other`: first `other` (voxel → voxel'), then this affine.
    pub fn compose(&self, other: &Matrix4<f64>) -> Result<Affine> {
        Affine::new(self.0 * other)
    }

    /// The three-letter orientation code (e.g. `"RAS"`, `"LPS"`), the world
    /// axis each voxel axis points to most, like nibabel's `aff2axcodes`.
    pub fn orientation_code(&self) -> String {
        const POS: [char; 3] = ['R', 'A', 'S'];
        const NEG: [char; 3] = ['L', 'P', 'I'];
        let d = self.direction();
        let axes = self.dominant_axes();
        (0..3)
            .map(|c| {
                let w = axes[c];
                if d[(w, c)] >= 0.0 {
                    POS[w]
                } else {
                    NEG[w]
                }
            })
            .collect()
    }

    /// For each voxel axis, the world axis (0 = x/R, 1 = y/A, 2 = z/S) it is
    /// most aligned with; a permutation of `[0, 1, 2]` even for oblique grids.
    pub fn dominant_axes(&self) -> [usize; 3] {
        let d = self.direction();
        // Greedy assignment by largest absolute cosine, as nibabel's io_orientation.
        let mut used_world = [false; 3];
        let mut used_vox = [false; 3];
        let mut out = [0usize; 3];
        for _ in 0..3 {
            let mut best = (0usize, 0usize, -1.0f64);
            for c in 0..3 {
                if used_vox[c] {
                    continue;
                }
                for w in 0..3 {
                    if !used_world[w] && d[(w, c)].abs() > best.2 {
                        best = (c, w, d[(w, c)].abs());
                    }
                }
            }
            used_vox[best.0] = true;
            used_world[best.1] = true;
            out[best.0] = best.1;
        }
        out
    }

    /// Whether two affines agree to `tol_mm` on every entry (translation in mm,
    /// linear part scaled by one voxel).
    pub fn approx_eq(&self, other: &Affine, tol_mm: f64) -> bool {
        (self.0 - other.0).iter().all(|d| d.abs() <= tol_mm)
    }

    /// Applies the linear part to a vector (no translation).
    pub fn apply_linear(&self, v: [f64; 3]) -> [f64; 3] {
        let r = self.linear() * Vector3::new(v[0], v[1], v[2]);
        [r[0], r[1], r[2]]
    }
}

impl std::fmt::Display for Affine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in self.rows() {
            writeln!(
                f,
                "[{:>12.6} {:>12.6} {:>12.6} {:>12.6}]",
                r[0], r[1], r[2], r[3]
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_voxel_round_trip_on_oblique_affine() {
        let th = 0.3f64;
        let rot = Matrix3::new(
            th.cos(),
            -th.sin(),
            0.0,
            th.sin(),
            th.cos(),
            0.0,
            0.0,
            0.0,
            1.0,
        );
        let a = Affine::from_direction(rot, [2.0, 3.0, 4.0], [-10.0, 5.0, 7.5]).unwrap();
        let p = [1.5, -2.0, 3.25];
        let w = a.voxel_to_world(p);
        let back = a.world_to_voxel(w);
        for d in 0..3 {
            assert!((back[d] - p[d]).abs() < 1e-12);
        }
        let s = a.spacing_mm();
        assert!(
            (s[0] - 2.0).abs() < 1e-12 && (s[1] - 3.0).abs() < 1e-12 && (s[2] - 4.0).abs() < 1e-12
        );
    }

    #[test]
    fn orientation_codes() {
        let ras = Affine::from_spacing_origin([1.0, 1.0, 1.0], [0.0; 3]).unwrap();
        assert_eq!(ras.orientation_code(), "RAS");
        let lps = Affine::from_rows([
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ])
        .unwrap();
        assert_eq!(lps.orientation_code(), "LPS");
        let perm = Affine::from_rows([
            [0.0, 0.0, 2.0, 0.0],
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ])
        .unwrap();
        assert_eq!(perm.orientation_code(), "PSR");
    }

    #[test]
    fn rejects_bad_affines() {
        assert!(Affine::from_spacing_origin([1.0, 0.0, 1.0], [0.0; 3]).is_err());
        assert!(Affine::from_spacing_origin([1.0, f64::NAN, 1.0], [0.0; 3]).is_err());
        assert!(Affine::from_spacing_origin([1.0, 1.0, 1.0], [f64::INFINITY, 0.0, 0.0]).is_err());
    }
}
