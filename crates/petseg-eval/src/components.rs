//! Connected-component labelling of 3-D binary masks (6/18/26 connectivity).
//!
//! # Algorithm
//!
//! A run-based two-scan labelling (He, Chao & Suzuki, "A run-based two-scan
//! labeling algorithm", IEEE TIP 2008), extended to 3-D:
//!
//! 1. **Runs.** Each row `(j, k)` (voxels along i, contiguous in raster
//!    order) is reduced to its runs of foreground voxels `[start, end)`.
//!    Empty slices and rows are skipped with a word-wise zero test, so a
//!    whole-body mask with a few thousand lesion voxels costs little more
//!    than reading its bytes once. Slices are scanned in parallel (rayon).
//! 2. **First scan (provisional labels).** Runs are numbered in raster order.
//!    Each run is united (union-find, root = smallest run index, path halving)
//!    with the runs of its already-visited neighbour rows that touch it. For a
//!    run the "decision" over the visited neighbourhood reduces to an interval
//!    test per neighbour row, which is what a voxel decision tree (Wu et al.;
//!    He et al.) evaluates one voxel at a time:
//!
//!    | connectivity | neighbour rows (dj, dk) | interval test |
//!    |---|---|---|
//!    | 6  | (-1, 0), (0, -1) | overlap |
//!    | 18 | (-1, 0), (0, -1) | overlap widened by 1 voxel |
//!    |    | (-1, -1), (+1, -1) | overlap |
//!    | 26 | (-1, 0), (-1, -1), (0, -1), (+1, -1) | overlap widened by 1 voxel |
//!
//! 3. **Second scan.** Because every set's root is its earliest run, walking
//!    the runs in raster order and numbering each root when met yields final
//!    labels `1..=n` in raster order of first appearance (as cc3d and SciPy
//!    on an i-fastest array). The voxel count, bounding box and centroid of
//!    each component are accumulated in that same walk, per run, and the
//!    label image is written run by run.
//!
//! The result keeps the runs with their labels ([`Components::runs`]), so the
//! metrics can visit every foreground voxel without scanning the background.

use rayon::prelude::*;

use crate::error::{EvalError, Result};

/// Voxel connectivity of a 3-D component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Connectivity {
    /// Face neighbours only (SciPy `generate_binary_structure(3, 1)`).
    Six,
    /// Face and edge neighbours (`generate_binary_structure(3, 2)`); the
    /// autoPET and study default.
    Eighteen,
    /// Face, edge and corner neighbours (`generate_binary_structure(3, 3)`).
    TwentySix,
}

impl Connectivity {
    /// Parses 6, 18 or 26.
    pub fn from_number(n: u32) -> Result<Self> {
        match n {
            6 => Ok(Connectivity::Six),
            18 => Ok(Connectivity::Eighteen),
            26 => Ok(Connectivity::TwentySix),
            other => Err(EvalError::Invalid(format!(
                "connectivity must be 6, 18 or 26, got {other}"
            ))),
        }
    }

    /// 6, 18 or 26.
    pub fn number(self) -> u32 {
        match self {
            Connectivity::Six => 6,
            Connectivity::Eighteen => 18,
            Connectivity::TwentySix => 26,
        }
    }

    /// Already-visited neighbour rows as `(dj, dk, widen)`: `widen` is 1 when
    /// diagonal contacts along i count, 0 when the runs must overlap.
    fn neighbour_rows(self) -> &'static [(i64, i64, u32)] {
        match self {
            Connectivity::Six => &[(-1, 0, 0), (0, -1, 0)],
            Connectivity::Eighteen => &[(-1, 0, 1), (0, -1, 1), (-1, -1, 0), (1, -1, 0)],
            Connectivity::TwentySix => &[(-1, 0, 1), (-1, -1, 1), (0, -1, 1), (1, -1, 1)],
        }
    }
}

/// A run of foreground voxels along i in one row, with its component label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Row index `j + nj·k`.
    pub row: u32,
    /// First voxel (i) of the run.
    pub start: u32,
    /// One past the last voxel (i) of the run.
    pub end: u32,
    /// Component label (1-based).
    pub label: u32,
}

impl Run {
    /// Number of voxels in the run.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Always false: runs hold at least one voxel.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Size, extent and centre of one component, in voxel indices.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentStats {
    /// Number of voxels.
    pub voxels: u64,
    /// Smallest `[i, j, k]` of the component (inclusive).
    pub bbox_min: [usize; 3],
    /// Largest `[i, j, k]` of the component (inclusive).
    pub bbox_max: [usize; 3],
    /// Mean voxel index `[i, j, k]` (apply the affine for world mm).
    pub centroid: [f64; 3],
}

/// A labelled mask: label image, runs and per-component statistics.
#[derive(Debug, Clone)]
pub struct Components {
    shape: [usize; 3],
    labels: Vec<u32>,
    runs: Vec<Run>,
    stats: Vec<ComponentStats>,
}

impl Components {
    /// Shape `[ni, nj, nk]` of the labelled grid.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of components `n` (labels are `1..=n`).
    pub fn count(&self) -> usize {
        self.stats.len()
    }

    /// The label image in raster order (i fastest); 0 is background.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Consumes the result, returning the label image (raster order).
    pub fn into_labels(self) -> Vec<u32> {
        self.labels
    }

    /// Foreground runs in raster order, each with its label.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Statistics of component `label` (1-based) at index `label - 1`.
    pub fn stats(&self) -> &[ComponentStats] {
        &self.stats
    }

    /// Total number of foreground voxels.
    pub fn foreground_voxels(&self) -> u64 {
        self.stats.iter().map(|s| s.voxels).sum()
    }
}

/// Labels the connected components of `mask` (raster order, i fastest,
/// shape `[ni, nj, nk]`); every non-zero byte is foreground.
pub fn label(mask: &[u8], shape: [usize; 3], connectivity: Connectivity) -> Result<Components> {
    if shape.contains(&0) {
        return Err(EvalError::Invalid(format!(
            "shape {shape:?} has an empty axis"
        )));
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| EvalError::Invalid(format!("shape {shape:?} is too large")))?;
    if mask.len() != n {
        return Err(EvalError::Invalid(format!(
            "mask of shape {shape:?} needs {n} voxels, got {}",
            mask.len()
        )));
    }
    let [ni, nj, nk] = shape;
    if ni > u32::MAX as usize || nj.saturating_mul(nk) > u32::MAX as usize {
        return Err(EvalError::Invalid(format!(
            "shape {shape:?}: rows or row length exceed the u32 run index"
        )));
    }
    let (runs, row_ptr) = extract_runs(mask, shape);
    if runs.len() > u32::MAX as usize {
        return Err(EvalError::Invalid(format!(
            "shape {shape:?}: more than 2^32 foreground runs"
        )));
    }
    let parent = first_scan(&runs, &row_ptr, nj, nk, connectivity);
    Ok(second_scan(runs, parent, shape))
}

/// Labels a mask volume (non-zero is foreground).
pub fn label_volume(
    mask: &petseg_io::Volume<u8>,
    connectivity: Connectivity,
) -> Result<Components> {
    label(mask.as_raster_slice(), mask.shape(), connectivity)
}

/// Whether every byte of `v` is zero (word-wise, vectorisable).
fn all_zero(v: &[u8]) -> bool {
    let mut chunks = v.chunks_exact(32);
    for c in &mut chunks {
        let mut acc = 0u64;
        for w in c.chunks_exact(8) {
            acc |= u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        }
        if acc != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

/// Runs `[start, end)` of every row in raster order, with CSR row pointers
/// (`row_ptr[r]..row_ptr[r + 1]` are the runs of row `r = j + nj·k`).
fn extract_runs(mask: &[u8], shape: [usize; 3]) -> (Vec<Run>, Vec<u32>) {
    let [ni, nj, _] = shape;
    let slice_len = ni * nj;
    // Per slice: its runs and the number of runs of each of its rows.
    let per_slice: Vec<(Vec<Run>, Vec<u32>)> = mask
        .par_chunks(slice_len)
        .enumerate()
        .map(|(k, slice)| {
            let mut runs = Vec::new();
            let mut counts = vec![0u32; nj];
            if all_zero(slice) {
                return (runs, counts);
            }
            for (j, row) in slice.chunks_exact(ni).enumerate() {
                if all_zero(row) {
                    continue;
                }
                let before = runs.len();
                let mut i = 0usize;
                while i < ni {
                    if row[i] == 0 {
                        i += 1;
                        continue;
                    }
                    let s = i;
                    while i < ni && row[i] != 0 {
                        i += 1;
                    }
                    runs.push(Run {
                        row: (j + nj * k) as u32,
                        start: s as u32,
                        end: i as u32,
                        label: 0,
                    });
                }
                counts[j] = (runs.len() - before) as u32;
            }
            (runs, counts)
        })
        .collect();
    let total: usize = per_slice.iter().map(|(r, _)| r.len()).sum();
    let mut runs = Vec::with_capacity(total);
    let mut row_ptr = Vec::with_capacity(per_slice.len() * nj + 1);
    row_ptr.push(0u32);
    for (r, counts) in per_slice {
        let mut acc = *row_ptr.last().unwrap_or(&0);
        for c in counts {
            acc += c;
            row_ptr.push(acc);
        }
        runs.extend_from_slice(&r);
    }
    (runs, row_ptr)
}

/// Root of `x` with path halving.
#[inline]
fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let gp = parent[parent[x as usize] as usize];
        parent[x as usize] = gp;
        x = gp;
    }
    x
}

/// Unites the sets of `a` and `b`, keeping the smaller root.
#[inline]
fn unite(parent: &mut [u32], a: u32, b: u32) {
    let ra = find(parent, a);
    let rb = find(parent, b);
    if ra < rb {
        parent[rb as usize] = ra;
    } else if rb < ra {
        parent[ra as usize] = rb;
    }
}

/// Union-find over runs: each run joins the touching runs of its visited
/// neighbour rows. Returns the parent forest (roots are earliest runs).
fn first_scan(
    runs: &[Run],
    row_ptr: &[u32],
    nj: usize,
    nk: usize,
    connectivity: Connectivity,
) -> Vec<u32> {
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    let neighbours = connectivity.neighbour_rows();
    for k in 0..nk {
        for j in 0..nj {
            let row = j + nj * k;
            let (c0, c1) = (row_ptr[row] as usize, row_ptr[row + 1] as usize);
            if c0 == c1 {
                continue;
            }
            for &(dj, dk, widen) in neighbours {
                let (jj, kk) = (j as i64 + dj, k as i64 + dk);
                if jj < 0 || jj >= nj as i64 || kk < 0 {
                    continue;
                }
                let nrow = jj as usize + nj * kk as usize;
                let (n0, n1) = (row_ptr[nrow] as usize, row_ptr[nrow + 1] as usize);
                if n0 == n1 {
                    continue;
                }
                join_rows(&mut parent, runs, c0..c1, n0..n1, widen);
            }
        }
    }
    parent
}

/// Unites runs of the current row with the neighbour row's runs they touch:
/// `[s, e)` and `[s', e')` touch when `s' < e + widen` and `s < e' + widen`.
/// Both rows are sorted, so one merge-like walk suffices.
fn join_rows(
    parent: &mut [u32],
    runs: &[Run],
    cur: std::ops::Range<usize>,
    nb: std::ops::Range<usize>,
    widen: u32,
) {
    let mut p = nb.start;
    for r in cur {
        let (s, e) = (runs[r].start, runs[r].end);
        while p < nb.end && runs[p].end + widen <= s {
            p += 1;
        }
        let mut q = p;
        while q < nb.end && runs[q].start < e + widen {
            unite(parent, r as u32, q as u32);
            q += 1;
        }
        if p == nb.end {
            break;
        }
    }
}

/// Final labels in raster order of first appearance, statistics and the
/// label image.
fn second_scan(mut runs: Vec<Run>, mut parent: Vec<u32>, shape: [usize; 3]) -> Components {
    let [ni, nj, nk] = shape;
    let mut stats: Vec<ComponentStats> = Vec::new();
    let mut sums: Vec<[f64; 3]> = Vec::new();
    let mut labels = vec![0u32; ni * nj * nk];
    for r in 0..runs.len() {
        let root = find(&mut parent, r as u32) as usize;
        let lab = if root == r {
            stats.push(ComponentStats {
                voxels: 0,
                bbox_min: [usize::MAX; 3],
                bbox_max: [0; 3],
                centroid: [0.0; 3],
            });
            sums.push([0.0; 3]);
            stats.len() as u32
        } else {
            runs[root].label
        };
        let run = &mut runs[r];
        run.label = lab;
        let (s, e, row) = (run.start as usize, run.end as usize, run.row as usize);
        let (j, k) = (row % nj, row / nj);
        let len = (e - s) as f64;
        let st = &mut stats[lab as usize - 1];
        st.voxels += (e - s) as u64;
        let (mn, mx) = ([s, j, k], [e - 1, j, k]);
        for a in 0..3 {
            st.bbox_min[a] = st.bbox_min[a].min(mn[a]);
            st.bbox_max[a] = st.bbox_max[a].max(mx[a]);
        }
        let sm = &mut sums[lab as usize - 1];
        sm[0] += (s + e - 1) as f64 * 0.5 * len;
        sm[1] += j as f64 * len;
        sm[2] += k as f64 * len;
        labels[row * ni + s..row * ni + e].fill(lab);
    }
    for (st, sm) in stats.iter_mut().zip(&sums) {
        let v = st.voxels as f64;
        st.centroid = [sm[0] / v, sm[1] / v, sm[2] / v];
    }
    Components {
        shape,
        labels,
        runs,
        stats,
    }
}
