//! The volume model: a 3-D array plus its voxel-to-world affine.

use ndarray::{Array3, ShapeBuilder};

use crate::affine::Affine;
use crate::error::{IoError, Result};

/// A 3-D image or mask in NIfTI index order `(i, j, k)` with its affine.
///
/// Invariants:
/// * `data` is indexed `[i, j, k]` and stored in **Fortran order** (i fastest),
///   which is NIfTI's on-disk order; [`Volume::as_raster_slice`] therefore
///   returns voxels in the raster order used by cc3d and the NIfTI file, with
///   linear index `i + ni·(j + nj·k)`.
/// * Every operation that changes the grid returns a volume whose affine keeps
///   each voxel's world coordinate.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    data: Array3<T>,
    affine: Affine,
}

impl<T: Clone> Volume<T> {
    /// Wraps `data` (indexed `[i, j, k]`, any memory layout) and `affine`.
    /// Data that is not in Fortran order is copied into it.
    pub fn new(data: Array3<T>, affine: Affine) -> Self {
        let data = if data.t().is_standard_layout() {
            data
        } else if let Some(first) = data.iter().next() {
            let mut f = Array3::from_elem(data.raw_dim().f(), first.clone());
            f.assign(&data);
            f
        } else {
            // No voxel: nothing to copy, and no element to index.
            Array3::from_shape_vec(data.raw_dim().f(), Vec::new())
                .expect("an empty shape holds an empty vector")
        };
        Volume { data, affine }
    }

    /// Builds a volume from voxels in raster order (i fastest).
    pub fn from_raster(shape: [usize; 3], voxels: Vec<T>, affine: Affine) -> Result<Self> {
        let n = checked_len(shape)?;
        if voxels.len() != n {
            return Err(IoError::Invalid(format!(
                "shape {shape:?} needs {n} voxels, got {}",
                voxels.len()
            )));
        }
        let data = Array3::from_shape_vec(shape.f(), voxels)
            .map_err(|e| IoError::Invalid(format!("shape {shape:?}: {e}")))?;
        Ok(Volume { data, affine })
    }

    /// A volume of the given shape filled with `value`.
    pub fn filled(shape: [usize; 3], value: T, affine: Affine) -> Result<Self> {
        checked_len(shape)?;
        Ok(Volume {
            data: Array3::from_elem(shape.f(), value),
            affine,
        })
    }

    /// The same grid with new voxel values computed by `f`.
    pub fn map<U: Clone>(&self, f: impl Fn(&T) -> U) -> Volume<U> {
        Volume {
            data: self.data.map(f),
            affine: self.affine,
        }
    }

    /// The region `start .. start + size` (voxel indices, may extend past the
    /// edges: voxels outside the volume get `fill`). The result's affine maps
    /// its voxel (0,0,0) to the world position of voxel `start` here.
    pub fn extract(&self, start: [i64; 3], size: [usize; 3], fill: T) -> Result<Volume<T>> {
        checked_len(size)?;
        let shape = self.shape();
        let mut out = Array3::from_elem(size.f(), fill);
        // Overlap of [start, start+size) with [0, shape) per axis.
        let mut lo = [0usize; 3];
        let mut hi = [0usize; 3];
        for a in 0..3 {
            let s = start[a];
            let e = s + size[a] as i64;
            let l = s.max(0).min(shape[a] as i64);
            let h = e.max(0).min(shape[a] as i64);
            lo[a] = l as usize;
            hi[a] = h.max(l) as usize;
        }
        if (0..3).all(|a| hi[a] > lo[a]) {
            let src = self
                .data
                .slice(ndarray::s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]);
            let o = [
                (lo[0] as i64 - start[0]) as usize,
                (lo[1] as i64 - start[1]) as usize,
                (lo[2] as i64 - start[2]) as usize,
            ];
            out.slice_mut(ndarray::s![
                o[0]..o[0] + (hi[0] - lo[0]),
                o[1]..o[1] + (hi[1] - lo[1]),
                o[2]..o[2] + (hi[2] - lo[2])
            ])
            .assign(&src);
        }
        let affine = self
            .affine
            .shifted([start[0] as f64, start[1] as f64, start[2] as f64]);
        Ok(Volume { data: out, affine })
    }

    /// Crops to `start .. start + size`, which must lie inside the volume.
    pub fn crop(&self, start: [usize; 3], size: [usize; 3]) -> Result<Volume<T>> {
        let shape = self.shape();
        for a in 0..3 {
            if start[a] + size[a] > shape[a] || size[a] == 0 {
                return Err(IoError::Invalid(format!(
                    "crop {start:?}+{size:?} does not fit in shape {shape:?}"
                )));
            }
        }
        self.extract(
            [start[0] as i64, start[1] as i64, start[2] as i64],
            size,
            self.data[[0, 0, 0]].clone(),
        )
    }

    /// Pads by `before`/`after` voxels per axis with `fill`.
    pub fn pad(&self, before: [usize; 3], after: [usize; 3], fill: T) -> Result<Volume<T>> {
        let shape = self.shape();
        let size = [
            shape[0] + before[0] + after[0],
            shape[1] + before[1] + after[1],
            shape[2] + before[2] + after[2],
        ];
        self.extract(
            [
                -(before[0] as i64),
                -(before[1] as i64),
                -(before[2] as i64),
            ],
            size,
            fill,
        )
    }
}

impl<T> Volume<T> {
    /// Shape `[ni, nj, nk]`.
    pub fn shape(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[0], s[1], s[2]]
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the volume has no voxel.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The voxel array, indexed `[i, j, k]`.
    pub fn data(&self) -> &Array3<T> {
        &self.data
    }

    /// Mutable access to the voxel values (the shape cannot change).
    pub fn data_mut(&mut self) -> ndarray::ArrayViewMut3<'_, T> {
        self.data.view_mut()
    }

    /// Voxels in raster order (i fastest): NIfTI and cc3d order.
    pub fn as_raster_slice(&self) -> &[T] {
        self.data
            .as_slice_memory_order()
            .expect("Volume keeps its data contiguous in Fortran order")
    }

    /// Mutable voxels in raster order (i fastest).
    pub fn as_raster_slice_mut(&mut self) -> &mut [T] {
        self.data
            .as_slice_memory_order_mut()
            .expect("Volume keeps its data contiguous in Fortran order")
    }

    /// Splits into the array and the affine.
    pub fn into_parts(self) -> (Array3<T>, Affine) {
        (self.data, self.affine)
    }

    /// Voxels in raster order, consuming the volume.
    pub fn into_raster_vec(self) -> Vec<T> {
        let (v, off) = self.data.into_raw_vec_and_offset();
        debug_assert!(off.unwrap_or(0) == 0);
        v
    }

    /// The voxel-to-world affine.
    pub fn affine(&self) -> &Affine {
        &self.affine
    }

    /// Replaces the affine (the data is untouched): for readers and tests.
    pub fn with_affine(mut self, affine: Affine) -> Self {
        self.affine = affine;
        self
    }

    /// Voxel size in mm along i, j, k.
    pub fn spacing_mm(&self) -> [f64; 3] {
        self.affine.spacing_mm()
    }

    /// World position (mm) of voxel (0, 0, 0).
    pub fn origin_mm(&self) -> [f64; 3] {
        self.affine.origin_mm()
    }

    /// Volume of one voxel in millilitres (mm³ / 1000).
    pub fn voxel_volume_ml(&self) -> f64 {
        self.affine.linear().determinant().abs() / 1000.0
    }

    /// Linear raster index of `[i, j, k]`.
    pub fn raster_index(&self, ijk: [usize; 3]) -> usize {
        let s = self.shape();
        ijk[0] + s[0] * (ijk[1] + s[1] * ijk[2])
    }

    /// `[i, j, k]` of a linear raster index.
    pub fn raster_coords(&self, idx: usize) -> [usize; 3] {
        let s = self.shape();
        [idx % s[0], (idx / s[0]) % s[1], idx / (s[0] * s[1])]
    }

    /// Whether `other` has the same shape and an affine equal to `tol_mm`.
    pub fn same_grid<U>(&self, other: &Volume<U>, tol_mm: f64) -> bool {
        self.shape() == other.shape() && self.affine.approx_eq(&other.affine, tol_mm)
    }

    /// Like [`Volume::same_grid`] but an error naming both grids, with
    /// `what` describing the pair (e.g. `"prediction vs ground truth"`).
    pub fn check_same_grid<U>(&self, other: &Volume<U>, tol_mm: f64, what: &str) -> Result<()> {
        if self.shape() != other.shape() {
            return Err(IoError::Geometry(format!(
                "{what}: shapes differ ({:?} vs {:?})",
                self.shape(),
                other.shape()
            )));
        }
        if !self.affine.approx_eq(&other.affine, tol_mm) {
            return Err(IoError::Geometry(format!(
                "{what}: affines differ by more than {tol_mm} mm:\n{}vs\n{}",
                self.affine, other.affine
            )));
        }
        Ok(())
    }
}

/// Number of voxels of `shape`, refusing zero-sized axes and overflow.
pub fn checked_len(shape: [usize; 3]) -> Result<usize> {
    if shape.contains(&0) {
        return Err(IoError::Invalid(format!(
            "shape {shape:?} has an empty axis"
        )));
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n.checked_mul(8).is_some())
        .ok_or_else(|| IoError::Invalid(format!("shape {shape:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Volume<f32> {
        let aff = Affine::from_rows([
            [-2.0, 0.0, 0.0, 10.0],
            [0.0, 3.0, 0.0, -5.0],
            [0.0, 0.0, 1.5, 2.0],
            [0.0, 0.0, 0.0, 1.0],
        ])
        .unwrap();
        let v: Vec<f32> = (0..4 * 5 * 6).map(|x| x as f32).collect();
        Volume::from_raster([4, 5, 6], v, aff).unwrap()
    }

    #[test]
    fn raster_order_is_i_fastest() {
        let v = ramp();
        assert_eq!(v.data()[[1, 0, 0]], 1.0);
        assert_eq!(v.data()[[0, 1, 0]], 4.0);
        assert_eq!(v.data()[[0, 0, 1]], 20.0);
        assert_eq!(v.raster_coords(v.raster_index([3, 2, 5])), [3, 2, 5]);
    }

    #[test]
    fn c_order_input_is_converted() {
        let a = Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i + 10 * j + 100 * k) as i32);
        let v = Volume::new(
            a.clone(),
            Affine::from_spacing_origin([1.0; 3], [0.0; 3]).unwrap(),
        );
        assert_eq!(v.data(), &a);
        assert_eq!(v.as_raster_slice()[1], 1);
        assert_eq!(v.as_raster_slice()[2], 10);
    }

    #[test]
    fn crop_and_pad_keep_world_coordinates() {
        let v = ramp();
        let c = v.crop([1, 2, 3], [2, 2, 2]).unwrap();
        assert_eq!(c.data()[[0, 0, 0]], v.data()[[1, 2, 3]]);
        assert_eq!(
            c.affine().voxel_to_world([0.0; 3]),
            v.affine().voxel_to_world([1.0, 2.0, 3.0])
        );
        let p = v.pad([1, 0, 2], [0, 3, 0], -1.0).unwrap();
        assert_eq!(p.shape(), [5, 8, 8]);
        assert_eq!(p.data()[[0, 0, 0]], -1.0);
        assert_eq!(p.data()[[1, 0, 2]], v.data()[[0, 0, 0]]);
        let w = p.affine().voxel_to_world([1.0, 0.0, 2.0]);
        let w0 = v.affine().voxel_to_world([0.0; 3]);
        for d in 0..3 {
            assert!((w[d] - w0[d]).abs() < 1e-12);
        }
        assert!(v.crop([3, 0, 0], [2, 1, 1]).is_err());
    }

    #[test]
    fn voxel_volume_in_ml() {
        assert!((ramp().voxel_volume_ml() - 0.009).abs() < 1e-12);
    }

    #[test]
    fn absurd_shapes_are_refused() {
        assert!(checked_len([0, 1, 1]).is_err());
        assert!(checked_len([usize::MAX, 2, 1]).is_err());
    }
}
