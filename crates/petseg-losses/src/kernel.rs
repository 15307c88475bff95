//! The fused CPU kernel behind every loss: one pass over the voxels for the value, one for the
//! gradient.
//!
//! [`LossOp`] is a candle `CustomOp2` on `(logits, labels)`: its forward pass computes, in a
//! single pass, the per-(b, c) sums each term needs (the L1DFL histogram included: per-bin sums
//! of `p·y` and `p² + y²`, so β is applied after counting, without a second pass) and keeps
//! them; its backward pass runs [`GradOp`], which writes `∂loss/∂logits` straight into the
//! output in one more pass, in closed form (see [`crate::terms`]). The Dice gradient needs the
//! global sums, hence the two passes.
//!
//! Work is split into fixed chunks of voxels run in parallel (rayon); inside a chunk, blocks of
//! [`LANES`] voxels are processed with vectorised code ([`crate::block`]), partial sums are
//! kept per lane in f32 for [`FLUSH_BLOCKS`] blocks, then added to f64 totals; chunk totals are
//! added in chunk order. The result therefore does not depend on the number of threads. On
//! x86-64 the chunk loops are compiled a second time for AVX2 + FMA and chosen at run time.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::block::{store, Block, Needs, Rows, MAX_CLASSES};
use crate::error::LossError;
use crate::labels;
use crate::lanes::LANES;
use crate::terms::{ce_accumulate, ce_grad, first_channel, FocalMode, L1Hist, LaneSums, Terms};

/// Voxels per work item (a multiple of [`LANES`]).
const CHUNK: usize = 8192;
/// Blocks whose f32 lane sums are added before they go into the f64 totals: each lane then
/// sums 16 values, which keeps the f32 rounding near 1e-7 relative.
const FLUSH_BLOCKS: usize = 16;

/// One channel's gradient over one chunk, not yet written.
type OutRow<'a> = &'a mut [MaybeUninit<f32>];

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
    /// Dice: Σpy, Σp (or Σp²), Σy per Dice entry (row × channel).
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

    /// Adds the lane sums of image `b` (lanes in order, in f64) and zeroes them.
    fn flush(&mut self, lanes: &mut LaneSums, terms: &Terms, b: usize, nc: usize) {
        let total = |v: &mut [f32; LANES]| {
            let s = pairwise_sum(v);
            *v = [0.0; LANES];
            s
        };
        if let Some(dt) = &terms.dice {
            let row = if dt.batch { 0 } else { b * nc };
            for c in first_channel(dt.include_background)..nc {
                self.inter[row + c] += total(&mut lanes.inter[c]);
                self.pred[row + c] += total(&mut lanes.pred[c]);
                self.truth[row + c] += total(&mut lanes.truth[c]);
            }
        }
        self.focal += total(&mut lanes.focal);
        self.ce += total(&mut lanes.ce);
    }
}

/// Sum of the lanes by halving (vectorises; error O(log LANES) ulp), widened to f64.
#[inline(always)]
fn pairwise_sum(v: &[f32; LANES]) -> f64 {
    let mut w = *v;
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            w[i] += w[i + n];
        }
    }
    f64::from(w[0])
}

/// What the backward pass needs from the forward pass.
#[derive(Debug)]
struct Saved {
    dims: Dims,
    /// Dice, per entry, with A the numerator and D the denominator: `(−2/D, A/D²)`.
    dice_coef: Vec<(f64, f64)>,
    /// L1DFL, per (b, c): `(−2/D, 2A/D²)`, and β per bin.
    l1_coef: Vec<(f64, f64)>,
    l1_beta: Vec<f64>,
}

/// The gradient coefficients of one backward pass in f32, with the term weights, the means
/// and the incoming gradient folded in.
#[derive(Debug)]
struct GradCoefs {
    /// Dice, per entry: `(−2/D, A/D²)` scaled.
    dice: Vec<[f32; 2]>,
    /// L1DFL, per (b, c): `(−2/D, 2A/D²)` scaled, and β per bin.
    l1: Vec<[f32; 2]>,
    l1_beta: Vec<f32>,
    focal: f32,
    ce: f32,
}

impl GradCoefs {
    fn new(terms: &Terms, sv: &Saved, scale: f64) -> Self {
        let d = sv.dims;
        let pair = |s: f64| move |&(a, b): &(f64, f64)| [(s * a) as f32, (s * b) as f32];
        let dice_scale = terms.dice.as_ref().map_or(0.0, |t| {
            let rows = if t.batch { 1 } else { d.b };
            scale * t.weight / (rows * (d.c - first_channel(t.include_background))) as f64
        });
        let l1_scale = terms
            .l1_dice
            .as_ref()
            .map_or(0.0, |t| scale * t.weight / (d.b * d.c) as f64);
        Self {
            dice: sv.dice_coef.iter().map(pair(dice_scale)).collect(),
            l1: sv.l1_coef.iter().map(pair(l1_scale)).collect(),
            l1_beta: sv.l1_beta.iter().map(|&b| b as f32).collect(),
            focal: terms
                .focal
                .as_ref()
                .map_or(0.0, |t| (scale * t.weight / focal_count(t, d)) as f32),
            ce: terms
                .ce
                .map_or(0.0, |w| (scale * w / (d.b * d.s) as f64) as f32),
        }
    }
}

/// The optional block quantities the terms read: log-probabilities for the cross-entropy
/// (forward only) and the softmax focal term, the kept-channel softmax for the softmax focal
/// term without background.
fn needs(terms: &Terms, forward: bool) -> Needs {
    let softmax_focal = |bg: bool| {
        terms
            .focal
            .as_ref()
            .is_some_and(|f| f.mode == FocalMode::Softmax && f.include_background == bg)
    };
    Needs {
        logs: (forward && terms.ce.is_some()) || softmax_focal(true),
        kept_softmax: softmax_focal(false),
    }
}

/// Number of elements the focal term is averaged over.
fn focal_count(t: &crate::terms::FocalTerm, d: Dims) -> f64 {
    let kept = if t.include_background { d.c } else { d.c - 1 };
    (d.b * kept * d.s) as f64
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

/// The Dice, focal and cross-entropy sums of one block.
#[inline(always)]
fn accumulate_block(terms: &Terms, blk: &Block, nc: usize, acc: &mut LaneSums) {
    if let Some(dt) = &terms.dice {
        dt.accumulate(blk, nc, acc);
    }
    if let Some(ft) = &terms.focal {
        ft.accumulate(blk, nc, &mut acc.focal);
    }
    if terms.ce.is_some() {
        ce_accumulate(blk, nc, &mut acc.ce);
    }
}

/// Forward sums over one chunk.
///
/// `NC` > 0 compiles a copy with the class count fixed (2: the project's case), so the
/// channel loops unroll; 0 reads it from `d`.
#[inline(always)]
fn forward_chunk<const NC: usize>(
    terms: &Terms,
    d: Dims,
    x: &[f32],
    cls: &[u8],
    ch: &Chunk,
) -> Sums {
    let nc = if NC > 0 { NC } else { d.c };
    let needs = needs(terms, true);
    let image = &x[ch.b * nc * d.s..][..nc * d.s];
    let classes = &cls[ch.b * d.s..][..d.s];
    let mut sums = Sums::zeros(terms, d);
    let mut lanes = LaneSums::zeros();
    let mut blk = Block::new();
    let mut hist = terms
        .l1_dice
        .as_ref()
        .map(|t| L1Hist::new(nc, t.bins.len()));
    for (j, at) in (ch.s0..ch.s1).step_by(LANES).enumerate() {
        let n = LANES.min(ch.s1 - at);
        blk.load(nc, image, d.s, at, &classes[at..at + n], needs);
        if n == LANES {
            accumulate_block(terms, &blk, nc, &mut lanes);
        } else {
            let mut tail = LaneSums::zeros();
            accumulate_block(terms, &blk, nc, &mut tail);
            lanes.add_first(&tail, n);
        }
        if let (Some(lt), Some(h)) = (&terms.l1_dice, &mut hist) {
            lt.accumulate(&blk, nc, n, h);
        }
        if (j + 1) % FLUSH_BLOCKS == 0 {
            sums.flush(&mut lanes, terms, ch.b, nc);
        }
    }
    sums.flush(&mut lanes, terms, ch.b, nc);
    if let Some(h) = hist {
        let e = ch.b * h.entries()..(ch.b + 1) * h.entries();
        h.add_to(
            &mut sums.l1_py[e.clone()],
            &mut sums.l1_sq[e],
            &mut sums.l1_counts,
        );
    }
    sums
}

/// `∂loss/∂logits` over one chunk, written to `out` (one slice per channel, the chunk's
/// voxels).
///
/// The p-space parts `gp` go through the softmax Jacobian at the end:
/// `∂x_c = p_c (gp_c − Σ_j p_j gp_j)`; the focal and cross-entropy parts are already in
/// logit space (`gx`).
#[inline(always)]
fn backward_chunk<const NC: usize>(
    terms: &Terms,
    co: &GradCoefs,
    d: Dims,
    x: &[f32],
    cls: &[u8],
    ch: &Chunk,
    out: &mut [OutRow],
) {
    let nc = if NC > 0 { NC } else { d.c };
    let needs = needs(terms, false);
    let image = &x[ch.b * nc * d.s..][..nc * d.s];
    let classes = &cls[ch.b * d.s..][..d.s];
    let dice_row = terms
        .dice
        .as_ref()
        .map_or(0, |t| if t.batch { 0 } else { ch.b * nc });
    let mut blk = Block::new();
    let (mut gp, mut gx): (Rows, Rows) = ([[0.0; LANES]; MAX_CLASSES], [[0.0; LANES]; MAX_CLASSES]);
    for at in (ch.s0..ch.s1).step_by(LANES) {
        let n = LANES.min(ch.s1 - at);
        blk.load(nc, image, d.s, at, &classes[at..at + n], needs);
        for c in 0..nc {
            gp[c] = [0.0; LANES];
            gx[c] = [0.0; LANES];
        }
        if let Some(dt) = &terms.dice {
            dt.grad(&blk, nc, &co.dice[dice_row..], &mut gp);
        }
        if let Some(lt) = &terms.l1_dice {
            lt.grad(&blk, nc, &co.l1[ch.b * nc..], &co.l1_beta, &mut gp);
        }
        if let Some(ft) = &terms.focal {
            ft.grad(&blk, nc, co.focal, &mut gx);
        }
        if terms.ce.is_some() {
            ce_grad(&blk, nc, co.ce, &mut gx);
        }
        let mut mean = [0.0; LANES];
        for c in 0..nc {
            for i in 0..LANES {
                mean[i] += blk.p[c][i] * gp[c][i];
            }
        }
        for c in 0..nc {
            for i in 0..LANES {
                gx[c][i] += blk.p[c][i] * (gp[c][i] - mean[i]);
            }
            store(&gx[c], &mut out[c][at - ch.s0..][..n]);
        }
    }
}

/// Whether the CPU has AVX2 and FMA (checked once, then cached by std).
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// [`forward_chunk`] for the class count at hand, in portable code.
#[inline(always)]
fn forward_any(terms: &Terms, d: Dims, x: &[f32], cls: &[u8], ch: &Chunk) -> Sums {
    match d.c {
        2 => forward_chunk::<2>(terms, d, x, cls, ch),
        _ => forward_chunk::<0>(terms, d, x, cls, ch),
    }
}

/// [`forward_any`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2(terms: &Terms, d: Dims, x: &[f32], cls: &[u8], ch: &Chunk) -> Sums {
    forward_any(terms, d, x, cls, ch)
}

/// Forward sums of one chunk with the best code the CPU runs.
fn forward(terms: &Terms, d: Dims, x: &[f32], cls: &[u8], ch: &Chunk) -> Sums {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features `forward_avx2` is compiled for.
        return unsafe { forward_avx2(terms, d, x, cls, ch) };
    }
    forward_any(terms, d, x, cls, ch)
}

/// [`backward_chunk`] for the class count at hand, in portable code.
#[inline(always)]
fn backward_any(g: &GradOp, x: &[f32], cls: &[u8], ch: &Chunk, out: &mut [OutRow]) {
    let d = g.saved.dims;
    match d.c {
        2 => backward_chunk::<2>(&g.terms, &g.coefs, d, x, cls, ch, out),
        _ => backward_chunk::<0>(&g.terms, &g.coefs, d, x, cls, ch, out),
    }
}

/// [`backward_any`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_avx2(g: &GradOp, x: &[f32], cls: &[u8], ch: &Chunk, out: &mut [OutRow]) {
    backward_any(g, x, cls, ch, out)
}

/// The gradient over one chunk with the best code the CPU runs.
fn backward(g: &GradOp, x: &[f32], cls: &[u8], ch: &Chunk, out: &mut [OutRow]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features `backward_avx2` is compiled for.
        return unsafe { backward_avx2(g, x, cls, ch, out) };
    }
    backward_any(g, x, cls, ch, out)
}

/// The loss value from the totals, and what the backward pass needs.
fn finish(terms: &Terms, d: Dims, sums: &Sums) -> (f64, Saved) {
    let mut value = 0.0;
    let mut saved = Saved {
        dims: d,
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
        let classes = labels::decode(s2, l2, d.c)?;
        let parts: Vec<Sums> = chunks(d)
            .par_iter()
            .map(|ch| forward(&self.terms, d, x, &classes, ch))
            .collect();
        let mut total = Sums::zeros(&self.terms, d);
        parts.iter().for_each(|p| total.add(p));
        let (value, saved) = finish(&self.terms, d, &total);
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
        arg2: &Tensor,
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
        let grad = arg1.apply_op2_no_bwd(
            arg2,
            &GradOp {
                terms: self.terms.clone(),
                coefs: GradCoefs::new(&self.terms, &saved, scale),
                saved,
            },
        )?;
        Ok((Some(grad), None))
    }
}

/// Backward op: `(logits, labels) → scale · ∂loss/∂logits`, using the sums saved by
/// [`LossOp`].
struct GradOp {
    terms: Arc<Terms>,
    saved: Arc<Saved>,
    coefs: GradCoefs,
}

impl CustomOp2 for GradOp {
    fn name(&self) -> &'static str {
        "petseg-seg-loss-grad"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l)?;
        let d = self.saved.dims;
        let classes = labels::decode(s2, l2, d.c)?;
        let mut out: Vec<f32> = Vec::with_capacity(x.len());
        let mut work: Vec<(Chunk, Vec<OutRow>)> = Vec::new();
        let spare = &mut out.spare_capacity_mut()[..x.len()];
        for (b, image) in spare.chunks_mut(d.c * d.s).enumerate() {
            let mut channels: Vec<_> = image
                .chunks_mut(d.s)
                .map(|ch| ch.chunks_mut(CHUNK))
                .collect();
            for j in 0..d.s.div_ceil(CHUNK) {
                let slices: Vec<OutRow> = channels.iter_mut().filter_map(|it| it.next()).collect();
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
        work.into_par_iter()
            .for_each(|(ch, mut slices)| backward(self, x, &classes, &ch, &mut slices));
        // SAFETY: the chunks cover every voxel of every channel of every image, and
        // `backward_chunk` writes each of their voxels, so all `x.len()` values are initialised.
        unsafe { out.set_len(x.len()) };
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}
