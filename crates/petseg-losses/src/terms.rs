//! The loss terms and what each one does at a block of voxels: its contribution to the
//! forward sums and to the gradient.
//!
//! A loss is a weighted sum of terms (Dice, focal, cross-entropy, L1-weighted Dice), all
//! functions of the softmax (or sigmoid) of the logits. Gradients come in two kinds: terms that
//! are functions of the probabilities add `∂loss/∂p_c` to `gp` (the kernel applies the softmax
//! Jacobian once for all of them), the focal and cross-entropy terms add `∂loss/∂x_c` directly
//! to `gx`. Every function here works on whole blocks ([`Lanes`]) without branching on the
//! voxel, so it vectorises; the coefficients that need global sums (Dice denominators, β) are
//! computed by the kernel between the two passes and passed in.

use crate::bins::BinEdges;
use crate::block::{dot_rows, Block, Rows};
use crate::lanes::{exp, ln, Lanes, LANES};

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

/// L1-weighted Dice term of L1DFL (`docs/method/losses.md` §5).
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

/// First channel a term keeps (1 when the background is dropped).
pub(crate) fn first_channel(include_background: bool) -> usize {
    usize::from(!include_background)
}

/// Per-lane f32 sums of the Dice, focal and cross-entropy terms over a few blocks.
#[derive(Debug, Clone)]
pub(crate) struct LaneSums {
    /// Dice: Σpy, Σp (or Σp²), Σy per channel.
    pub inter: Rows,
    pub pred: Rows,
    pub truth: Rows,
    pub focal: Lanes,
    pub ce: Lanes,
}

impl LaneSums {
    /// All lanes zero.
    pub(crate) fn zeros() -> Self {
        let rows = [[0.0; LANES]; crate::block::MAX_CLASSES];
        Self {
            inter: rows,
            pred: rows,
            truth: rows,
            focal: [0.0; LANES],
            ce: [0.0; LANES],
        }
    }

    /// Adds the first `n` lanes of `o` (the real voxels of a block at the end of a chunk).
    pub(crate) fn add_first(&mut self, o: &LaneSums, n: usize) {
        let rows = self
            .inter
            .iter_mut()
            .chain(&mut self.pred)
            .chain(&mut self.truth);
        let o_rows = o.inter.iter().chain(&o.pred).chain(&o.truth);
        for (a, b) in rows
            .chain([&mut self.focal, &mut self.ce])
            .zip(o_rows.chain([&o.focal, &o.ce]))
        {
            for i in 0..n {
                a[i] += b[i];
            }
        }
    }
}

/// `1 − v` lane by lane.
#[inline(always)]
fn one_minus(v: &Lanes) -> Lanes {
    let mut out = [0.0; LANES];
    for i in 0..LANES {
        out[i] = 1.0 - v[i];
    }
    out
}

/// `q^γ` lane by lane, with multiplications for the usual integer γ (the branch is on γ, not
/// on the voxel).
#[inline(always)]
fn pow_gamma(q: &Lanes, gamma: f32) -> Lanes {
    let mut out = *q;
    if gamma == 2.0 {
        for v in &mut out {
            *v *= *v;
        }
    } else if gamma == 0.0 {
        out = [1.0; LANES];
    } else if gamma != 1.0 {
        for v in &mut out {
            *v = v.powf(gamma);
        }
    }
    out
}

impl DiceTerm {
    /// Adds `p·y`, `p` (or `p²` with `squared_pred`) and `y` of the kept channels.
    #[inline(always)]
    pub(crate) fn accumulate(&self, blk: &Block, nc: usize, acc: &mut LaneSums) {
        let sq = f32::from(u8::from(self.squared_pred));
        for c in first_channel(self.include_background)..nc {
            let (p, y) = (&blk.p[c], &blk.y[c]);
            for i in 0..LANES {
                acc.inter[c][i] += p[i] * y[i];
                // p·(sq·p + 1 − sq) is p or p², exactly
                acc.pred[c][i] += p[i] * (sq * p[i] + (1.0 - sq));
                acc.truth[c][i] += y[i];
            }
        }
    }

    /// Adds `∂/∂p_c` of this image's Dice: with `A = 2Σpy + s_nr`, `D = ΣP(p) + Σy + s_dr`,
    /// `∂(1 − A/D)/∂p = −2y/D + A·P'(p)/D²` (`P' = 1`, or `2p` with `squared_pred`);
    /// `coef[c] = (−2/D, A/D²)`, already scaled by the loss weight and the mean.
    #[inline(always)]
    pub(crate) fn grad(&self, blk: &Block, nc: usize, coef: &[[f32; 2]], gp: &mut Rows) {
        let sq = f32::from(u8::from(self.squared_pred));
        for c in first_channel(self.include_background)..nc {
            let [k_y, k_p] = coef[c];
            let (p, y) = (&blk.p[c], &blk.y[c]);
            for i in 0..LANES {
                gp[c][i] += k_y * y[i] + k_p * (2.0 * sq * p[i] + (1.0 - sq));
            }
        }
    }
}

/// The sigmoid focal pieces of channel `c`: with `s = ±1` (target or not), `u = −s·x`,
/// returns `(α, s, softplus(u), σ(u))`; `softplus(u) = max(u, 0) + ln(1 + e^{−|u|})` and
/// `σ(u) = (u ≥ 0 ? 1 : e^{−|u|}) / (1 + e^{−|u|})` from one `exp` and one `ln`.
#[inline(always)]
fn sigmoid_parts(t: &FocalTerm, blk: &Block, c: usize, from: usize) -> [Lanes; 4] {
    let (a_pos, a_neg) = (t.alpha_pos[c - from] as f32, t.alpha_neg[c - from] as f32);
    let (x, y) = (&blk.x[c], &blk.y[c]);
    let mut out = [[0.0; LANES]; 4];
    for i in 0..LANES {
        let s = 2.0 * y[i] - 1.0;
        let u = -s * x[i];
        let e = exp(-u.abs());
        let z = 1.0 + e;
        out[0][i] = y[i] * a_pos + (1.0 - y[i]) * a_neg;
        out[1][i] = s;
        out[2][i] = u.max(0.0) + ln(z);
        out[3][i] = (if u >= 0.0 { 1.0 } else { e }) / z;
    }
    out
}

/// The softmax focal pieces: `(α_t, p_t, log p_t)` at each voxel's class `t`, over the kept
/// channels (α_t = 0 for a background voxel when the background is dropped, which zeroes its
/// term).
#[inline(always)]
fn softmax_parts(t: &FocalTerm, blk: &Block, nc: usize, from: usize) -> [Lanes; 3] {
    let (p, lp) = if from == 0 {
        (&blk.p, &blk.lp)
    } else {
        (&blk.p_kept, &blk.lp_kept)
    };
    let mut alpha = [0.0; LANES];
    for c in from..nc {
        let a = t.alpha_pos[c - from] as f32;
        for i in 0..LANES {
            alpha[i] += blk.y[c][i] * a;
        }
    }
    let y = &blk.y[from..nc];
    [alpha, dot_rows(y, &p[from..nc]), dot_rows(y, &lp[from..nc])]
}

impl FocalTerm {
    /// Adds the focal loss of every kept channel (sigmoid) or of each voxel's class (softmax).
    #[inline(always)]
    pub(crate) fn accumulate(&self, blk: &Block, nc: usize, acc: &mut Lanes) {
        let from = first_channel(self.include_background);
        let gamma = self.gamma as f32;
        match self.mode {
            FocalMode::Softmax => {
                // −α_t (1 − p_t)^γ log p_t
                let [alpha, pt, l] = softmax_parts(self, blk, nc, from);
                let q = one_minus(&pt);
                let w = pow_gamma(&q, gamma);
                for i in 0..LANES {
                    acc[i] -= alpha[i] * w[i] * l[i];
                }
            }
            FocalMode::Sigmoid => {
                // MONAI: e^{γ·logσ(u)} · bce = σ(u)^γ · softplus(u)
                for c in from..nc {
                    let [alpha, _, sp, q] = sigmoid_parts(self, blk, c, from);
                    let w = pow_gamma(&q, gamma);
                    for i in 0..LANES {
                        acc[i] += alpha[i] * w[i] * sp[i];
                    }
                }
            }
        }
    }

    /// Adds `scale · ∂term/∂x_c` to `gx`.
    #[inline(always)]
    pub(crate) fn grad(&self, blk: &Block, nc: usize, scale: f32, gx: &mut Rows) {
        let from = first_channel(self.include_background);
        let gamma = self.gamma as f32;
        match self.mode {
            FocalMode::Softmax => {
                // term = −α (1 − e^l)^γ l with l = log p_t over the kept channels:
                // ∂term/∂l = α (γ (1−p_t)^{γ−1} p_t l − (1−p_t)^γ); ∂l/∂x_j = y_j − p_j
                let [alpha, pt, l] = softmax_parts(self, blk, nc, from);
                let q = one_minus(&pt);
                let w = pow_gamma(&q, gamma);
                // γ q^{γ−1} (0 for γ = 0)
                let dw = if gamma == 0.0 {
                    [0.0; LANES]
                } else {
                    pow_gamma(&q, gamma - 1.0)
                };
                let mut h = [0.0; LANES];
                for i in 0..LANES {
                    h[i] = scale * alpha[i] * (gamma * dw[i] * pt[i] * l[i] - w[i]);
                }
                let p = if from == 0 { &blk.p } else { &blk.p_kept };
                for j in from..nc {
                    for i in 0..LANES {
                        gx[j][i] += h[i] * (blk.y[j][i] - p[j][i]);
                    }
                }
            }
            FocalMode::Sigmoid => {
                // term = q^γ softplus(u), u = −s·x, q = σ(u):
                // ∂term/∂x = −s q^γ (γ (1−q) softplus(u) + q)
                for c in from..nc {
                    let [alpha, s, sp, q] = sigmoid_parts(self, blk, c, from);
                    let w = pow_gamma(&q, gamma);
                    for i in 0..LANES {
                        gx[c][i] -=
                            scale * alpha[i] * s[i] * w[i] * (gamma * (1.0 - q[i]) * sp[i] + q[i]);
                    }
                }
            }
        }
    }
}

/// Cross-entropy: adds `−log p_t`.
#[inline(always)]
pub(crate) fn ce_accumulate(blk: &Block, nc: usize, acc: &mut Lanes) {
    let l = dot_rows(&blk.y[..nc], &blk.lp[..nc]);
    for i in 0..LANES {
        acc[i] -= l[i];
    }
}

/// Cross-entropy: adds `scale · ∂(−log p_t)/∂x_j = scale · (p_j − y_j)`.
#[inline(always)]
pub(crate) fn ce_grad(blk: &Block, nc: usize, scale: f32, gx: &mut Rows) {
    for j in 0..nc {
        for i in 0..LANES {
            gx[j][i] += scale * (blk.p[j][i] - blk.y[j][i]);
        }
    }
}

/// The L1DFL histogram sums of one chunk (one image): Σpy, Σ(p² + y) and the count per
/// (copy, channel, bin). Neighbouring voxels often share a bin; spreading them over
/// [`L1Hist::COPIES`] interleaved copies (voxel `i` of a block goes to copy `i mod COPIES`)
/// breaks the chain of dependent additions to the same memory.
#[derive(Debug, Clone)]
pub(crate) struct L1Hist {
    nc: usize,
    nb: usize,
    bins: Vec<BinSums>,
}

/// The sums of one histogram bin.
#[derive(Debug, Clone, Copy, Default)]
struct BinSums {
    py: f64,
    sq: f64,
    count: u64,
}

impl L1Hist {
    /// Interleaved copies of the sums.
    const COPIES: usize = 4;

    /// Zero sums for `nc` channels and `nb` bins.
    pub(crate) fn new(nc: usize, nb: usize) -> Self {
        Self {
            nc,
            nb,
            bins: vec![BinSums::default(); Self::COPIES * nc * nb],
        }
    }

    /// Number of (channel, bin) entries: the length of one image's sums.
    pub(crate) fn entries(&self) -> usize {
        self.nc * self.nb
    }

    /// Adds `py[i]` and `sq[i]` to entry `e[i]` and counts it, for each voxel `i` of `e`.
    #[inline(always)]
    fn add(&mut self, e: &[u32], py: &Lanes, sq: &Lanes) {
        for (i, &e) in e.iter().enumerate() {
            let b = &mut self.bins[e as usize];
            b.py += f64::from(py[i]);
            b.sq += f64::from(sq[i]);
            b.count += 1;
        }
    }

    /// Adds the copies, in order, to `py[c·K + k]`, `sq[c·K + k]` and `counts[k]`.
    pub(crate) fn add_to(&self, py: &mut [f64], sq: &mut [f64], counts: &mut [u64]) {
        for (j, b) in self.bins.iter().enumerate() {
            let e = j % self.entries();
            py[e] += b.py;
            sq[e] += b.sq;
            counts[e % self.nb] += b.count;
        }
    }
}

impl L1DiceTerm {
    /// The histogram bin of `g = |p_c − y_c|` at each lane.
    #[inline(always)]
    fn bins_of(&self, blk: &Block, c: usize) -> [u32; LANES] {
        let mut g = [0.0; LANES];
        for i in 0..LANES {
            g[i] = (blk.p[c][i] - blk.y[c][i]).abs();
        }
        self.bins.bin_lanes(&g)
    }

    /// Adds, for the first `n` lanes, `p·y` and `p² + y` to the sums of the voxel's bin and
    /// counts it. β is applied after all counts are known, so the histogram costs no extra
    /// pass.
    #[inline(always)]
    pub(crate) fn accumulate(&self, blk: &Block, nc: usize, n: usize, hist: &mut L1Hist) {
        let nb = hist.nb;
        for c in 0..nc {
            let k = self.bins_of(blk, c);
            let (p, y) = (&blk.p[c], &blk.y[c]);
            let (mut py, mut sq, mut e) = ([0.0; LANES], [0.0; LANES], [0u32; LANES]);
            for i in 0..LANES {
                py[i] = p[i] * y[i];
                sq[i] = p[i].mul_add(p[i], y[i]);
                e[i] = (((i % L1Hist::COPIES) * nc + c) * nb) as u32 + k[i];
            }
            hist.add(&e[..n], &py, &sq);
        }
    }

    /// Adds `∂/∂p_c` of this image's weighted Dice: with `A = 2Σβpy + s`,
    /// `D = Σβ(p² + y²) + s` and β constant, `∂(1 − A/D)/∂p = −(2βy/D − A·2βp/D²)`;
    /// `coef[c] = (−2/D, 2A/D²)`, already scaled; `beta[k]` per bin.
    #[inline(always)]
    pub(crate) fn grad(
        &self,
        blk: &Block,
        nc: usize,
        coef: &[[f32; 2]],
        beta: &[f32],
        gp: &mut Rows,
    ) {
        for c in 0..nc {
            let k = self.bins_of(blk, c);
            let [k_y, k_p] = coef[c];
            assert!(beta.len() == self.bins.len());
            for i in 0..LANES {
                // SAFETY: bins are < bins.len() (bin_lanes), which is beta.len() (asserted).
                let b = unsafe { *beta.get_unchecked(k[i] as usize) };
                gp[c][i] += b * (k_y * blk.y[c][i] + k_p * blk.p[c][i]);
            }
        }
    }
}
