//! Voxel overlaps between ground-truth and predicted components, and
//! per-component PET statistics, from the runs of the labelled masks.

use crate::components::Components;

/// Voxels shared by GT component `gt` and predicted component `pred`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    /// GT label (1-based).
    pub gt: u32,
    /// Predicted label (1-based).
    pub pred: u32,
    /// Number of shared voxels (> 0).
    pub voxels: u64,
}

/// Every non-empty GT × prediction overlap, sorted by `(gt, pred)`.
/// Both labellings must be of the same grid.
pub fn overlaps(gt: &Components, pred: &Components) -> Vec<Overlap> {
    let ni = gt.shape()[0];
    let plab = pred.labels();
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for run in gt.runs() {
        let base = run.row as usize * ni;
        for &p in &plab[base + run.start as usize..base + run.end as usize] {
            if p != 0 {
                pairs.push((run.label, p));
            }
        }
    }
    pairs.sort_unstable();
    let mut out: Vec<Overlap> = Vec::new();
    for (g, p) in pairs {
        match out.last_mut() {
            Some(o) if o.gt == g && o.pred == p => o.voxels += 1,
            _ => out.push(Overlap {
                gt: g,
                pred: p,
                voxels: 1,
            }),
        }
    }
    out
}

/// Intersection-over-union of two components as an exact fraction
/// `(intersection, union)`, so that ties compare exactly.
pub fn iou_fraction(inter: u64, a: u64, b: u64) -> (u64, u64) {
    (inter, a + b - inter)
}

/// Whether fraction `x` is greater than fraction `y` (exact).
pub fn frac_gt(x: (u64, u64), y: (u64, u64)) -> bool {
    (x.0 as u128) * (y.1 as u128) > (y.0 as u128) * (x.1 as u128)
}

/// PET uptake over one component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uptake {
    /// Sum of PET values over the component's voxels.
    pub sum: f64,
    /// Largest PET value (NaN values are ignored; `-inf` if all are NaN).
    pub max: f64,
    /// Raster index of the voxel holding `max`; on ties the one NumPy's
    /// `argmax` picks on an `[i, j, k]` array, as the study's reference code
    /// does: the first in C order (smallest `(i, j, k)` lexicographically).
    pub argmax: usize,
}

/// Uptake of every component of `cc` (index `label - 1`) in `pet` (raster
/// order, same grid).
pub fn uptake(cc: &Components, pet: &[f32]) -> Vec<Uptake> {
    let [ni, nj, _] = cc.shape();
    // C-order position (i, j, k) of a raster index, for NumPy's tie-breaking.
    let c_order = |idx: usize| (idx % ni, (idx / ni) % nj, idx / (ni * nj));
    let mut out = vec![
        Uptake {
            sum: 0.0,
            max: f64::NEG_INFINITY,
            argmax: usize::MAX,
        };
        cc.count()
    ];
    for run in cc.runs() {
        let u = &mut out[run.label as usize - 1];
        let base = run.row as usize * ni;
        for idx in base + run.start as usize..base + run.end as usize {
            let v = pet[idx] as f64;
            u.sum += v;
            if v > u.max
                || (v == u.max && u.argmax != usize::MAX && c_order(idx) < c_order(u.argmax))
            {
                u.max = v;
                u.argmax = idx;
            }
        }
    }
    out
}
