//! The fused CPU kernel behind every loss: one pass over the voxels for the value, one for the
//! gradient.
//!
//! A loss is a weighted sum of [`Terms`] (Dice, focal, cross-entropy, L1-weighted Dice), all
//! functions of the softmax (or sigmoid) of the logits at each voxel. [`LossOp`] is a candle
//! `CustomOp2` on `(logits, labels)`: its forward pass computes the per-(b, c) sums each term
//! needs in a single pass (the L1DFL histogram included: per-bin sums of `p·y` and `p² + y²`, so
//! β is applied after counting, without a second pass) and keeps them; its backward pass runs
//! [`GradOp`], which writes `∂loss/∂logits` in one more pass, in closed form (see the comments at
//! each term). Work is split into fixed chunks of voxels and the partial sums are added in chunk
//! order, so the result does not depend on the number of threads. Sums are accumulated in f64.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::bins::BinEdges;
use crate::error::LossError;
use crate::labels;

/// Voxels per work item.
const CHUNK: usize = 8192;
/// Largest number of classes (logit channels) the kernel handles.
pub(crate) const MAX_CLASSES: usize = 16;

/// Which probability the focal term uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FocalMode {
    /// MONAI `softmax_focal_loss`: softmax over the kept channels.
    Softmax,
    /// MONAI `sigmoid_focal_loss`: per channel, on the raw logit.
    Sigmoid,
}

/// Dice term (MONAI `DiceLoss(softmax=True, to_onehot_y=True)`).
#[derive(Debug, Clone)]
pub(crate) struct DiceTerm {
    pub weight: f64,
    pub include_background: bool,
    pub squared_pred: bool,
    pub batch: bool,
    pub smooth_nr: f64,
    pub smooth_dr: f64,
}

/// Focal term (MONAI `FocalLoss`, mean over B × kept channels × voxels).
#[derive(Debug, Clone)]
pub(crate) struct FocalTerm {
    pub weight: f64,
    pub mode: FocalMode,
    pub gamma: f64,
    /// α per kept channel, for a voxel whose class is that channel (`pos`) and for the other
    /// channels (`neg`, sigmoid only); all 1 when no α is set.
    pub alpha_pos: Vec<f64>,
    pub alpha_neg: Vec<f64>,
    pub include_background: bool,
}

/// L1-weighted Dice term of L1DFL (SPEC §6).
#[derive(Debug, Clone)]
pub(crate) struct L1DiceTerm {
    pub weight: f64,
    pub bins: BinEdges,
    pub smooth: f64,
}

/// The terms of one loss; absent terms cost nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Terms {
    pub dice: Option<DiceTerm>,
    pub focal: Option<FocalTerm>,
    /// Weight of the cross-entropy term (torch `CrossEntropyLoss`, mean over B × voxels).
    pub ce: Option<f64>,
    pub l1_dice: Option<L1DiceTerm>,
}

/// Sizes of the problem: batch, classes, voxels per image.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    c: usize,
    s: usize,
}

/// Partial sums over a chunk of voxels (f64).
#[derive(Debug, Clone)]
struct Sums {
    /// Dice: Σpy, Σp (or Σp²), Σy per Dice entry.
    inter: Vec<f64>,
    pred: Vec<f64>,
    truth: Vec<f64>,
    focal: f64,
    ce: f64,
    /// L1DFL: per (b, c, bin) Σpy and Σ(p² + y²), and the bin counts.
    l1_py: Vec<f64>,
    l1_sq: Vec<f64>,
    l1_counts: Vec<u64>,
}

impl Sums {
    fn zeros(terms: &Terms, d: Dims) -> Self {
        let dice_len = terms
            .dice
            .as_ref()
            .map_or(0, |t| if t.batch { d.c } else { d.b * d.c });
        let bins = terms.l1_dice.as_ref().map_or(0, |t| t.bins.len());
        Self {
            inter: vec![0.0; dice_len],
            pred: vec![0.0; dice_len],
            truth: vec![0.0; dice_len],
            focal: 0.0,
            ce: 0.0,
            l1_py: vec![0.0; d.b * d.c * bins],
            l1_sq: vec![0.0; d.b * d.c * bins],
            l1_counts: vec![0; bins],
        }
    }

    fn add(&mut self, o: &Sums) {
        let add = |a: &mut Vec<f64>, b: &Vec<f64>| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.inter, &o.inter);
        add(&mut self.pred, &o.pred);
        add(&mut self.truth, &o.truth);
        add(&mut self.l1_py, &o.l1_py);
        add(&mut self.l1_sq, &o.l1_sq);
        self.l1_counts
            .iter_mut()
            .zip(&o.l1_counts)
            .for_each(|(x, y)| *x += y);
        self.focal += o.focal;
        self.ce += o.ce;
    }
}

/// What the backward pass needs from the forward pass.
#[derive(Debug)]
struct Saved {
    dims: Dims,
    classes: Arc<Vec<u8>>,
    /// Dice, per entry, with A the numerator and D the denominator: `(−2/D, A/D²)`.
    dice_coef: Vec<(f64, f64)>,
    /// L1DFL, per (b, c): `(−2/D, 2A/D²)`, and β per bin.
    l1_coef: Vec<(f64, f64)>,
    l1_beta: Vec<f64>,
}

/// Softmax of `x[..n]` restricted to channels `from..n`: probabilities, and log-probabilities
/// when `logs` is set. Two channels take one `exp` (and one `ln`) instead of two.
///
/// `ln(1 + e)` with `e = exp(−|d|) ∈ (0, 1]` is computed as `(1 + e).ln()`: its absolute error
/// (≤ 6e-8) is far below the loss tolerance, and glibc's `log1pf` is several times slower.
#[inline(always)]
fn softmax(x: &[f32], from: usize, logs: bool, p: &mut [f32], lp: &mut [f32]) {
    let n = x.len();
    if n - from == 2 {
        let (a, b) = (from, from + 1);
        let d = x[b] - x[a];
        let e = (-d.abs()).exp();
        let z = 1.0 + e;
        let (hi, lo) = if d >= 0.0 { (b, a) } else { (a, b) };
        p[hi] = 1.0 / z;
        p[lo] = e / z;
        if logs {
            let l = z.ln();
            lp[hi] = -l;
            lp[lo] = -d.abs() - l;
        }
        return;
    }
    let m = x[from..].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut z = 0.0f32;
    for c in from..n {
        p[c] = (x[c] - m).exp();
        z += p[c];
    }
    let inv_z = 1.0 / z;
    for c in from..n {
        p[c] *= inv_z;
    }
    if logs {
        let log_z = m + z.ln();
        for c in from..n {
            lp[c] = x[c] - log_z;
        }
    }
}

/// `q^γ`, with multiplications for the usual integer γ.
#[inline]
fn pow_gamma(q: f64, gamma: f64) -> f64 {
    if gamma == 2.0 {
        q * q
    } else if gamma == 1.0 {
        q
    } else if gamma == 0.0 {
        1.0
    } else {
        q.powf(gamma)
    }
}

/// For the sigmoid focal term at `u = −s·x`: `(softplus(u), σ(u))` from one `exp` and one `ln`
/// (`softplus(u) = max(u, 0) + ln(1 + e^{−|u|})`; see [`softmax`] for the `ln`).
#[inline(always)]
fn softplus_sigmoid(u: f32) -> (f64, f64) {
    let e = (-u.abs()).exp();
    let z = 1.0 + e;
    let sp = u.max(0.0) + z.ln();
    let q = if u >= 0.0 { 1.0 / z } else { e / z };
    (sp as f64, q as f64)
}

/// Whether any term needs log-probabilities of the full softmax.
fn needs_logs(terms: &Terms) -> bool {
    terms.ce.is_some()
        || terms
            .focal
            .as_ref()
            .is_some_and(|f| f.mode == FocalMode::Softmax && f.include_background)
}

/// Number of elements the focal term is averaged over.
fn focal_count(t: &FocalTerm, d: Dims) -> f64 {
    let kept = if t.include_background { d.c } else { d.c - 1 };
    (d.b * kept * d.s) as f64
}

/// Channels kept by a term.
fn first_channel(include_background: bool) -> usize {
    usize::from(!include_background)
}

/// A work item: voxels `s0..s1` of image `b`.
struct Chunk {
    b: usize,
    s0: usize,
    s1: usize,
}

fn chunks(d: Dims) -> Vec<Chunk> {
    (0..d.b)
        .flat_map(|b| {
            (0..d.s.div_ceil(CHUNK)).map(move |j| Chunk {
                b,
                s0: j * CHUNK,
                s1: ((j + 1) * CHUNK).min(d.s),
            })
        })
        .collect()
}

/// Forward sums over one chunk.
///
/// `FIXED_C` > 0 compiles a copy with the class count fixed (2: the project's case), so the
/// channel loops unroll; 0 reads it from `d`.
fn forward_chunk<const FIXED_C: usize>(
    terms: &Terms,
    d: Dims,
    x: &[f32],
    cls: &[u8],
    ch: &Chunk,
) -> Sums {
    let mut sums = Sums::zeros(terms, d);
    let (mut xv, mut p, mut lp, mut pk, mut lpk) = (
        [0f32; MAX_CLASSES],
        [0f32; MAX_CLASSES],
        [0f32; MAX_CLASSES],
        [0f32; MAX_CLASSES],
        [0f32; MAX_CLASSES],
    );
    let nc = if FIXED_C > 0 { FIXED_C } else { d.c };
    let base = ch.b * nc * d.s;
    let logs = needs_logs(terms);
    for s in ch.s0..ch.s1 {
        let t = cls[ch.b * d.s + s] as usize;
        for c in 0..nc {
            xv[c] = x[base + c * d.s + s];
        }
        softmax(&xv[..nc], 0, logs, &mut p, &mut lp);
        if let Some(dt) = &terms.dice {
            let row = if dt.batch { 0 } else { ch.b * nc };
            for c in first_channel(dt.include_background)..nc {
                let y = f64::from(u8::from(c == t));
                let pc = p[c] as f64;
                sums.inter[row + c] += pc * y;
                sums.pred[row + c] += if dt.squared_pred { pc * pc } else { pc };
                sums.truth[row + c] += y;
            }
        }
        if let Some(ft) = &terms.focal {
            let from = first_channel(ft.include_background);
            match ft.mode {
                FocalMode::Softmax => {
                    if t >= from {
                        let (pt, l) = if from == 0 {
                            (p[t], lp[t])
                        } else {
                            softmax(&xv[..nc], from, true, &mut pk, &mut lpk);
                            (pk[t], lpk[t])
                        };
                        let q = 1.0 - pt as f64;
                        sums.focal += -ft.alpha_pos[t - from] * pow_gamma(q, ft.gamma) * l as f64;
                    }
                }
                FocalMode::Sigmoid => {
                    for c in from..nc {
                        let sign = if c == t { 1.0 } else { -1.0 };
                        let alpha = if c == t {
                            ft.alpha_pos[c - from]
                        } else {
                            ft.alpha_neg[c - from]
                        };
                        // MONAI: e^{γ·logσ(u)} · bce = q^γ · softplus(u), q = σ(u)
                        let (sp, q) = softplus_sigmoid(-sign * xv[c]);
                        sums.focal += alpha * pow_gamma(q, ft.gamma) * sp;
                    }
                }
            }
        }
        if terms.ce.is_some() {
            sums.ce -= lp[t] as f64;
        }
        if let Some(lt) = &terms.l1_dice {
            let nb = lt.bins.len();
            for c in 0..nc {
                let y = if c == t { 1.0f32 } else { 0.0 };
                let k = lt.bins.bin_of((p[c] - y).abs());
                let pc = p[c] as f64;
                let idx = ((ch.b * nc + c) * nb) + k;
                sums.l1_py[idx] += pc * y as f64;
                sums.l1_sq[idx] += pc * pc + y as f64;
                sums.l1_counts[k] += 1;
            }
        }
    }
    sums
}

/// The loss value from the totals, and what the backward pass needs.
fn finish(terms: &Terms, d: Dims, sums: &Sums, classes: Arc<Vec<u8>>) -> (f64, Saved) {
    let mut value = 0.0;
    let mut saved = Saved {
        dims: d,
        classes,
        dice_coef: Vec::new(),
        l1_coef: Vec::new(),
        l1_beta: Vec::new(),
    };
    if let Some(dt) = &terms.dice {
        let rows = if dt.batch { 1 } else { d.b };
        let from = first_channel(dt.include_background);
        let mut total = 0.0;
        for r in 0..rows {
            for c in from..d.c {
                let e = r * d.c + c;
                // MONAI: 1 − (2·tp + smooth_nr) / (2·tp + fp + fn + smooth_dr)
                let num = 2.0 * sums.inter[e] + dt.smooth_nr;
                let den = sums.pred[e] + sums.truth[e] + dt.smooth_dr;
                total += 1.0 - num / den;
            }
        }
        saved.dice_coef = (0..sums.inter.len())
            .map(|e| {
                let num = 2.0 * sums.inter[e] + dt.smooth_nr;
                let den = sums.pred[e] + sums.truth[e] + dt.smooth_dr;
                (-2.0 / den, num / (den * den))
            })
            .collect();
        value += dt.weight * total / (rows * (d.c - from)) as f64;
    }
    if let Some(ft) = &terms.focal {
        value += ft.weight * sums.focal / focal_count(ft, d);
    }
    if let Some(w) = terms.ce {
        value += w * sums.ce / (d.b * d.s) as f64;
    }
    if let Some(lt) = &terms.l1_dice {
        let nb = lt.bins.len();
        let beta = lt.bins.beta_per_bin(&sums.l1_counts);
        let mut total = 0.0;
        for e in 0..d.b * d.c {
            let dot = |v: &[f64]| {
                v[e * nb..(e + 1) * nb]
                    .iter()
                    .zip(&beta)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
            };
            let num = 2.0 * dot(&sums.l1_py) + lt.smooth;
            let den = dot(&sums.l1_sq) + lt.smooth;
            total += num / den;
            saved.l1_coef.push((-2.0 / den, 2.0 * num / (den * den)));
        }
        saved.l1_beta = beta;
        value += lt.weight * (1.0 - total / (d.b * d.c) as f64);
    }
    (value, saved)
}

/// Gradient of the loss with respect to the logits over one chunk, times `scale`.
///
/// Terms written as ∂/∂p go through the softmax Jacobian at the end
/// (`∂x_c = p_c (∂p_c − Σ_j p_j ∂p_j)`); the focal and cross-entropy terms are written directly
/// in logit space.
fn backward_chunk<const FIXED_C: usize>(
    terms: &Terms,
    sv: &Saved,
    x: &[f32],
    ch: &Chunk,
    scale: f64,
    out: &mut [&mut [f32]],
) {
    let d = sv.dims;
    let nc = if FIXED_C > 0 { FIXED_C } else { d.c };
    let (mut xv, mut p, mut lp, mut pk, mut lpk) = (
        [0f32; MAX_CLASSES],
        [0f32; MAX_CLASSES],
        [0f32; MAX_CLASSES],
        [0f32; MAX_CLASSES],
        [0f32; MAX_CLASSES],
    );
    let base = ch.b * nc * d.s;
    let dice_rows = terms
        .dice
        .as_ref()
        .map_or(1, |t| if t.batch { 1 } else { d.b });
    let dice_scale = terms.dice.as_ref().map_or(0.0, |t| {
        t.weight / (dice_rows * (nc - first_channel(t.include_background))) as f64
    });
    let focal_scale = terms
        .focal
        .as_ref()
        .map_or(0.0, |t| t.weight / focal_count(t, d));
    let ce_scale = terms.ce.map_or(0.0, |w| w / (d.b * d.s) as f64);
    let l1_scale = terms
        .l1_dice
        .as_ref()
        .map_or(0.0, |t| t.weight / (d.b * nc) as f64);
    let logs = needs_logs(terms);
    for s in ch.s0..ch.s1 {
        let t = sv.classes[ch.b * d.s + s] as usize;
        for c in 0..nc {
            xv[c] = x[base + c * d.s + s];
        }
        softmax(&xv[..nc], 0, logs, &mut p, &mut lp);
        let mut gp = [0f64; MAX_CLASSES]; // ∂loss/∂p_c
        let mut gx = [0f64; MAX_CLASSES]; // ∂loss/∂x_c, direct part
        if let Some(dt) = &terms.dice {
            // f = 1 − A/D, A = 2Σpy + s_nr, D = ΣP(p) + Σy + s_dr:
            // ∂f/∂p = −2y/D + A·P'(p)/D², P' = 1 or 2p
            let row = if dt.batch { 0 } else { ch.b * nc };
            for c in first_channel(dt.include_background)..nc {
                let (k_y, k_p) = sv.dice_coef[row + c];
                let dp = if dt.squared_pred {
                    2.0 * p[c] as f64
                } else {
                    1.0
                };
                let ky = if c == t { k_y } else { 0.0 };
                gp[c] += dice_scale * (ky + k_p * dp);
            }
        }
        if let Some(lt) = &terms.l1_dice {
            // w = A/D, A = 2Σβpy + s, D = Σβ(p² + y²) + s, β constant:
            // ∂(1 − w)/∂p = −(2βy/D − A·2βp/D²)
            for c in 0..nc {
                let y = if c == t { 1.0f32 } else { 0.0 };
                let beta = sv.l1_beta[lt.bins.bin_of((p[c] - y).abs())];
                let e = ch.b * nc + c;
                let (k_y, k_p) = sv.l1_coef[e];
                gp[c] += l1_scale * beta * (k_y * y as f64 + k_p * p[c] as f64);
            }
        }
        if let Some(ft) = &terms.focal {
            let from = first_channel(ft.include_background);
            match ft.mode {
                FocalMode::Softmax => {
                    // term = −α (1 − e^l)^γ l with l = log p_t over the kept channels:
                    // ∂term/∂l = α (γ (1−p)^{γ−1} p l − (1−p)^γ); ∂l/∂x_j = δ_tj − p_j
                    if t >= from {
                        let (pr, l) = if from == 0 {
                            (&p, lp[t] as f64)
                        } else {
                            softmax(&xv[..nc], from, true, &mut pk, &mut lpk);
                            (&pk, lpk[t] as f64)
                        };
                        let pt = pr[t] as f64;
                        let q = 1.0 - pt;
                        let dq = if ft.gamma == 0.0 {
                            0.0
                        } else {
                            ft.gamma * pow_gamma(q, ft.gamma - 1.0)
                        };
                        let h = ft.alpha_pos[t - from] * (dq * pt * l - pow_gamma(q, ft.gamma));
                        for j in from..nc {
                            let delta = if j == t { 1.0 } else { 0.0 };
                            gx[j] += focal_scale * h * (delta - pr[j] as f64);
                        }
                    }
                }
                FocalMode::Sigmoid => {
                    // term = q^γ softplus(u), u = −s·x, q = σ(u), s = ±1 (target or not):
                    // ∂term/∂x = −s q^γ (γ (1−q) softplus(u) + q)
                    for c in from..nc {
                        let sign = if c == t { 1.0 } else { -1.0 };
                        let alpha = if c == t {
                            ft.alpha_pos[c - from]
                        } else {
                            ft.alpha_neg[c - from]
                        };
                        let (sp, q) = softplus_sigmoid(-sign * xv[c]);
                        gx[c] += focal_scale
                            * alpha
                            * (-sign as f64)
                            * pow_gamma(q, ft.gamma)
                            * (ft.gamma * (1.0 - q) * sp + q);
                    }
                }
            }
        }
        if terms.ce.is_some() {
            for j in 0..nc {
                let delta = if j == t { 1.0 } else { 0.0 };
                gx[j] += ce_scale * (p[j] as f64 - delta);
            }
        }
        let mean: f64 = (0..nc).map(|j| p[j] as f64 * gp[j]).sum();
        for c in 0..nc {
            let g = gx[c] + p[c] as f64 * (gp[c] - mean);
            out[c][s - ch.s0] = (scale * g) as f32;
        }
    }
}

/// Shape checks; returns the problem sizes.
fn dims(logits: &[usize], labels: &[usize]) -> Result<Dims, LossError> {
    if logits.len() < 3 || logits[1] < 2 || logits[1] > MAX_CLASSES {
        return Err(LossError::Shape {
            what: "logits",
            shape: logits.to_vec(),
            expected: format!("[B, C, *spatial] with 2 <= C <= {MAX_CLASSES}"),
        });
    }
    let mut want = logits.to_vec();
    want[1] = 1;
    if labels != want.as_slice() {
        return Err(LossError::Shape {
            what: "labels",
            shape: labels.to_vec(),
            expected: format!("{want:?} (class indices)"),
        });
    }
    Ok(Dims {
        b: logits[0],
        c: logits[1],
        s: logits[2..].iter().product(),
    })
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => Err(LossError::DType {
            what: "logits",
            dtype: format!("{:?}", l.dims()),
            expected: "contiguous f32 (cast by the caller)",
        }
        .into()),
    }
}

/// Forward op: `(logits f32 [B,C,*], labels [B,1,*]) → scalar f32 loss`.
pub(crate) struct LossOp {
    terms: Arc<Terms>,
    saved: Mutex<Option<Arc<Saved>>>,
}

impl LossOp {
    pub(crate) fn new(terms: Terms) -> Self {
        Self {
            terms: Arc::new(terms),
            saved: Mutex::new(None),
        }
    }
}

impl CustomOp2 for LossOp {
    fn name(&self) -> &'static str {
        "petseg-seg-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims(l1.dims(), l2.dims())?;
        let x = f32_slice(s1, l1)?;
        let classes = Arc::new(labels::decode(s2, l2, d.c)?);
        let parts: Vec<Sums> = chunks(d)
            .par_iter()
            .map(|ch| match d.c {
                2 => forward_chunk::<2>(&self.terms, d, x, &classes, ch),
                _ => forward_chunk::<0>(&self.terms, d, x, &classes, ch),
            })
            .collect();
        let mut total = Sums::zeros(&self.terms, d);
        parts.iter().for_each(|p| total.add(p));
        let (value, saved) = finish(&self.terms, d, &total, classes);
        *self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("loss state poisoned".into()))? =
            Some(Arc::new(saved));
        Ok((CpuStorage::F32(vec![value as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        _arg2: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("loss state poisoned".into()))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("loss backward called before forward".into()))?;
        let scale = grad_res
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        let grad = arg1.apply_op1_no_bwd(&GradOp {
            terms: self.terms.clone(),
            saved,
            scale,
        })?;
        Ok((Some(grad), None))
    }
}

/// Backward op: `logits → scale · ∂loss/∂logits`, using the sums saved by [`LossOp`].
struct GradOp {
    terms: Arc<Terms>,
    saved: Arc<Saved>,
    scale: f64,
}

impl CustomOp1 for GradOp {
    fn name(&self) -> &'static str {
        "petseg-seg-loss-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l)?;
        let d = self.saved.dims;
        let mut out = vec![0f32; x.len()];
        let mut work: Vec<(Chunk, Vec<&mut [f32]>)> = Vec::new();
        for (b, image) in out.chunks_mut(d.c * d.s).enumerate() {
            let mut channels: Vec<_> = image
                .chunks_mut(d.s)
                .map(|ch| ch.chunks_mut(CHUNK))
                .collect();
            for j in 0..d.s.div_ceil(CHUNK) {
                let slices: Vec<&mut [f32]> =
                    channels.iter_mut().filter_map(|it| it.next()).collect();
                work.push((
                    Chunk {
                        b,
                        s0: j * CHUNK,
                        s1: ((j + 1) * CHUNK).min(d.s),
                    },
                    slices,
                ));
            }
        }
        work.into_par_iter().for_each(|(ch, mut slices)| match d.c {
            2 => backward_chunk::<2>(&self.terms, &self.saved, x, &ch, self.scale, &mut slices),
            _ => backward_chunk::<0>(&self.terms, &self.saved, x, &ch, self.scale, &mut slices),
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}
