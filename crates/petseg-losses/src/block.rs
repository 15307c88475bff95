//! A block of [`LANES`] neighbouring voxels of one image: logits, one-hot labels and softmax.
//!
//! The logits are `[B, C, S]` in memory, so a block is `C` contiguous runs of `LANES` floats
//! (structure of arrays: one [`Lanes`] per channel). Everything here is computed lane by lane
//! without branches, which the compiler vectorises.

use std::mem::MaybeUninit;

use crate::lanes::{exp, ln, Lanes, LANES};

/// Largest number of classes (logit channels) the kernel handles.
pub(crate) const MAX_CLASSES: usize = 16;

/// One row of lanes per channel (only the first `C` rows are used).
pub(crate) type Rows = [Lanes; MAX_CLASSES];

/// The quantities every term reads at a block of voxels.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    /// Logits per channel.
    pub x: Rows,
    /// One-hot labels: `y[c][i] = 1` where voxel `i` has class `c`, else 0.
    pub y: Rows,
    /// Softmax over all channels.
    pub p: Rows,
    /// `log p`, filled when asked for.
    pub lp: Rows,
    /// Softmax and log-softmax over channels `1..C` only (MONAI's softmax focal without
    /// background), filled when asked for.
    pub p_kept: Rows,
    pub lp_kept: Rows,
}

/// Which optional parts of a [`Block`] to compute.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Needs {
    /// `lp`.
    pub logs: bool,
    /// `p_kept` and `lp_kept`.
    pub kept_softmax: bool,
}

/// `src` (at most [`LANES`] values) as lanes, padded with zeros.
#[inline(always)]
pub(crate) fn load(src: &[f32]) -> Lanes {
    match <&Lanes>::try_from(src) {
        Ok(full) => *full,
        Err(_) => load_partial(src),
    }
}

/// [`load`] of the last, partial block of a chunk; kept out of line so that the compiler does
/// not merge it with the fixed-size copy (it would then call `memcpy` for every block).
#[cold]
#[inline(never)]
fn load_partial(src: &[f32]) -> Lanes {
    let mut v = [0.0; LANES];
    v[..src.len()].copy_from_slice(src);
    v
}

/// Class indices (at most [`LANES`]) as f32 lanes, padded with class 0.
#[inline(always)]
fn load_classes(classes: &[u8]) -> Lanes {
    let mut t = [0.0; LANES];
    match <&[u8; LANES]>::try_from(classes) {
        Ok(full) => {
            for i in 0..LANES {
                t[i] = f32::from(full[i]);
            }
        }
        Err(_) => {
            for (ti, &c) in t.iter_mut().zip(classes) {
                *ti = f32::from(c);
            }
        }
    }
    t
}

/// Writes the first `dst.len()` (at most [`LANES`]) lanes of `v` to `dst` (uninitialised
/// output memory: the gradient is written once, without zeroing it first).
#[inline(always)]
pub(crate) fn store(v: &Lanes, dst: &mut [MaybeUninit<f32>]) {
    match <&mut [MaybeUninit<f32>; LANES]>::try_from(&mut *dst) {
        // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, the two arrays do not overlap,
        // and both hold LANES values. (`write_copy_of_slice` would say it safely, from 1.93.)
        Ok(full) => unsafe {
            std::ptr::copy_nonoverlapping(v.as_ptr(), full.as_mut_ptr().cast::<f32>(), LANES)
        },
        Err(_) => store_partial(v, dst),
    }
}

/// [`store`] of a partial block, out of line like [`load_partial`].
#[cold]
#[inline(never)]
fn store_partial(v: &Lanes, dst: &mut [MaybeUninit<f32>]) {
    for (d, &x) in dst.iter_mut().zip(v) {
        d.write(x);
    }
}

/// `Σ_c w[c]·v[c]` lane by lane; with one-hot `w` this picks each voxel's own class.
#[inline(always)]
pub(crate) fn dot_rows(w: &[Lanes], v: &[Lanes]) -> Lanes {
    let mut s = [0.0; LANES];
    for (wc, vc) in w.iter().zip(v) {
        for i in 0..LANES {
            s[i] += wc[i] * vc[i];
        }
    }
    s
}

/// Stable softmax over the rows of `x`: `p_c = e^{x_c − m} / z`, `z = Σ_c e^{x_c − m}`,
/// `m = max_c x_c`; and, when `lp` is given, `log p_c = (x_c − m) − ln z`. Two rows take
/// [`softmax2`].
#[inline(always)]
pub(crate) fn softmax(x: &[Lanes], p: &mut [Lanes], lp: Option<&mut [Lanes]>) {
    if let ([x0, x1], [p0, p1]) = (x, &mut *p) {
        let lp = lp.map(|lp| <&mut [Lanes; 2]>::try_from(lp).expect("two rows"));
        return softmax2([x0, x1], [p0, p1], lp);
    }
    let mut m = x[0];
    for xc in &x[1..] {
        for i in 0..LANES {
            m[i] = m[i].max(xc[i]);
        }
    }
    let mut z = [0.0; LANES];
    for (xc, pc) in x.iter().zip(p.iter_mut()) {
        for i in 0..LANES {
            pc[i] = exp(xc[i] - m[i]);
            z[i] += pc[i];
        }
    }
    let mut inv_z = [0.0; LANES];
    for i in 0..LANES {
        inv_z[i] = 1.0 / z[i];
    }
    for pc in p.iter_mut() {
        for i in 0..LANES {
            pc[i] *= inv_z[i];
        }
    }
    if let Some(lp) = lp {
        let mut ln_z = [0.0; LANES];
        for i in 0..LANES {
            ln_z[i] = ln(z[i]);
        }
        for (xc, lc) in x.iter().zip(lp.iter_mut()) {
            for i in 0..LANES {
                lc[i] = (xc[i] - m[i]) - ln_z[i];
            }
        }
    }
}

/// Two-class softmax from one `exp`: with `d = x₁ − x₀` and `e = e^{−|d|}`, the larger
/// logit gets `1/(1 + e)` and the smaller `e/(1 + e)`; `log p = −ln(1 + e)` and
/// `−|d| − ln(1 + e)`.
#[inline(always)]
fn softmax2(x: [&Lanes; 2], p: [&mut Lanes; 2], lp: Option<&mut [Lanes; 2]>) {
    let [p0, p1] = p;
    let mut d = [0.0; LANES];
    let mut e = [0.0; LANES];
    for i in 0..LANES {
        d[i] = x[1][i] - x[0][i];
        e[i] = exp(-d[i].abs());
        let hi = 1.0 / (1.0 + e[i]);
        let lo = e[i] * hi;
        (p0[i], p1[i]) = if d[i] >= 0.0 { (lo, hi) } else { (hi, lo) };
    }
    if let Some([l0, l1]) = lp {
        for i in 0..LANES {
            let l = ln(1.0 + e[i]);
            let lo = -d[i].abs() - l;
            (l0[i], l1[i]) = if d[i] >= 0.0 { (lo, -l) } else { (-l, lo) };
        }
    }
}

impl Block {
    /// A block with every lane zero (filled by [`Block::load`]).
    pub(crate) fn new() -> Self {
        let zero = [[0.0; LANES]; MAX_CLASSES];
        Self {
            x: zero,
            y: zero,
            p: zero,
            lp: zero,
            p_kept: zero,
            lp_kept: zero,
        }
    }

    /// Loads the voxels `at..at + classes.len()` (at most [`LANES`]) of one image:
    /// `image[c·stride + s]` is the logit of channel `c < nc` at voxel `s`, `classes` the
    /// voxels' class indices. Lanes past the end get logit 0 and class 0 (finite values that
    /// callers ignore).
    #[inline(always)]
    pub(crate) fn load(
        &mut self,
        nc: usize,
        image: &[f32],
        stride: usize,
        at: usize,
        classes: &[u8],
        needs: Needs,
    ) {
        let n = classes.len();
        let t = load_classes(classes);
        for c in 0..nc {
            self.x[c] = load(&image[c * stride + at..][..n]);
            let cf = c as f32;
            for i in 0..LANES {
                self.y[c][i] = f32::from(u8::from(t[i] == cf));
            }
        }
        let lp = needs.logs.then_some(&mut self.lp[..nc]);
        softmax(&self.x[..nc], &mut self.p[..nc], lp);
        if needs.kept_softmax {
            softmax(
                &self.x[1..nc],
                &mut self.p_kept[1..nc],
                Some(&mut self.lp_kept[1..nc]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_f64() {
        let mut blk = Block::new();
        let xs: Vec<f32> = (0..3 * LANES)
            .map(|i| 40.0 * ((i as f32) * 0.37).sin())
            .collect();
        let classes: Vec<u8> = (0..LANES as u8).map(|i| i % 3).collect();
        let needs = Needs {
            logs: true,
            kept_softmax: true,
        };
        blk.load(3, &xs, LANES, 0, &classes[..LANES - 3], needs);
        for i in 0..LANES {
            let n = LANES - 3;
            let x: Vec<f64> = (0..3)
                .map(|c| if i < n { xs[c * LANES + i] as f64 } else { 0.0 })
                .collect();
            let m = x.iter().copied().fold(f64::MIN, f64::max);
            let z: f64 = x.iter().map(|v| (v - m).exp()).sum();
            for c in 0..3 {
                let lp = x[c] - m - z.ln();
                assert!((blk.p[c][i] as f64 - lp.exp()).abs() < 1e-6);
                assert!((blk.lp[c][i] as f64 - lp).abs() < 1e-5 * lp.abs().max(1.0));
            }
            let zk: f64 = x[1..].iter().map(|v| (v - m).exp()).sum();
            let pk1 = (x[1] - m).exp() / zk;
            assert!((blk.p_kept[1][i] as f64 - pk1).abs() < 1e-6);
            // padded lanes (the last 3) read class 0
            let t = if i < LANES - 3 { i % 3 } else { 0 };
            for c in 0..3 {
                assert_eq!(blk.y[c][i], if c == t { 1.0 } else { 0.0 });
            }
        }
    }
}
