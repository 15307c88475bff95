//! Input gradient of a strided convolution (also the forward of a transposed
//! convolution) by sub-pixel decomposition, for the direct kernels.
//!
//! `gx[i] = Σ_k w[k] · gy[(i + p − k·d)/s]` over the taps `k` for which the
//! division is exact. Split `gx` by phase `π = i mod s` on every axis: within
//! one phase, `i = s·m + π`, the contributing taps are those with
//! `k·d ≡ π + p (mod s)`, and `gy` is read at `m + (π + p − k·d)/s`, which
//! steps by `d/gcd(d, s)` from one such tap to the next. So every phase is a
//! stride-1 convolution of `gy` with a smaller, flipped and channel-transposed
//! kernel; the `s³` phases together do exactly the useful multiply-adds
//! (no zeros inserted, no col2im scatter), and each writes its results
//! straight into its voxels of `gx` ([`OutMap::phase`]).

use super::cpu::direct_fwd_into;
use super::direct::{Isa, Padded};
use super::geom::ConvGeom;
use super::out_map::OutMap;
use crate::elem::{written_vec, SharedMut};
use std::mem::MaybeUninit;

/// The taps of one phase along one axis, as a stride-1 convolution of `gy`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AxisPhase {
    /// Kernel taps `k` of the original convolution, in the order the phase
    /// kernel uses them (increasing offset into `gy`).
    taps: Vec<usize>,
    /// Left padding of the phase convolution (minus the smallest `gy` offset).
    padding: usize,
    /// Dilation of the phase convolution.
    dilation: usize,
    /// Output length of the phase: `#{i < len : i ≡ π (mod s)}`.
    len: usize,
}

/// Phase `ph` of axis `a`, or `None` when its smallest `gy` offset is
/// positive (a padding larger than the dilated kernel, not representable).
fn axis_phase(g: &ConvGeom, a: usize, ph: usize) -> Option<AxisPhase> {
    let (k, s, p, d) = (g.kernel[a], g.stride[a], g.padding[a], g.dilation[a]);
    let len = g.input[a].saturating_sub(ph).div_ceil(s);
    // taps with (ph + p − k·d) ≡ 0 (mod s); their gy offsets decrease with k
    let mut taps: Vec<usize> = (0..k)
        .filter(|&t| (ph + p + s * t * d - t * d).is_multiple_of(s))
        .collect();
    taps.reverse();
    let offset = |t: usize| (ph + p) as isize - (t * d) as isize; // divisible by s
    let dilation = match taps.as_slice() {
        [a, b, ..] => ((offset(*b) - offset(*a)) / s as isize) as usize,
        _ => 1,
    };
    let first = taps.first().map_or(0, |&t| offset(t) / s as isize);
    (first <= 0).then_some(AxisPhase {
        taps,
        padding: (-first) as usize,
        dilation,
        len,
    })
}

/// The phases of every axis, or `None` if one is not representable or the
/// convolution has stride 1 everywhere (the flipped-kernel route is cheaper).
fn phases(g: &ConvGeom) -> Option<[Vec<AxisPhase>; 3]> {
    if g.stride == [1; 3] {
        return None;
    }
    let mut out: [Vec<AxisPhase>; 3] = Default::default();
    for (a, v) in out.iter_mut().enumerate() {
        *v = (0..g.stride[a])
            .map(|ph| axis_phase(g, a, ph))
            .collect::<Option<_>>()?;
    }
    Some(out)
}

/// Input gradient `gx [n, c, in]` of the convolution `g` from `gy [n, o, out]`
/// and `w [o, cg, k]`, or `None` when the sub-pixel route does not apply
/// (stride 1, or a padding larger than the dilated kernel).
pub(super) fn dgrad(isa: Isa, g: &ConvGeom, gy: &[f32], w: &[f32]) -> Option<Vec<f32>> {
    let axes = phases(g)?;
    // every phase with at least one tap and one output voxel: (phase, its stride-1 geometry)
    let mut parts = Vec::new();
    // whether some voxels of gx get no tap (then gx must start at zero)
    let mut uncovered = false;
    for (pd, ad) in axes[0].iter().enumerate() {
        for (phh, ah) in axes[1].iter().enumerate() {
            for (pw, aw) in axes[2].iter().enumerate() {
                let kernel = [ad.taps.len(), ah.taps.len(), aw.taps.len()];
                let output = [ad.len, ah.len, aw.len];
                if output.contains(&0) {
                    continue; // the phase has no voxel
                }
                if kernel.contains(&0) {
                    uncovered = true; // no tap reaches this phase: its gradient is 0
                    continue;
                }
                let gp = ConvGeom {
                    n: g.n,
                    c: g.o,
                    o: g.c,
                    groups: g.groups,
                    input: g.output,
                    kernel,
                    stride: [1; 3],
                    padding: [ad.padding, ah.padding, aw.padding],
                    dilation: [ad.dilation, ah.dilation, aw.dilation],
                    output,
                };
                parts.push(([pd, phh, pw], [ad, ah, aw], gp));
            }
        }
    }
    // the phases all read gy: pad it once for all of them
    let geoms: Vec<ConvGeom> = parts.iter().map(|p| p.2).collect();
    let padded = (!geoms.is_empty()).then(|| Padded::shared(&geoms, gy, isa.widest_block()));
    let compute = |gx: &mut [MaybeUninit<f32>]| {
        if uncovered {
            gx.fill(MaybeUninit::new(0.0));
        }
        let gxp = SharedMut(gx.as_mut_ptr().cast::<f32>());
        for (ph, [ad, ah, aw], gp) in &parts {
            let wp = phase_kernel(g, [ad, ah, aw], gp, w);
            let out = OutMap::phase(g, *ph, gp.output[1]);
            // SAFETY: the phase's voxels s·m + π (per axis, m < its length)
            // lie in gx [n, c, in], channel b·c + ci at b·c + ci times in_vol
            // (`out.chan`); nothing else writes gx meanwhile.
            unsafe { direct_fwd_into(isa, gp, gy, padded.as_ref(), &wp, gxp, &out) };
        }
    };
    // SAFETY: the phases partition gx; every phase with voxels is either
    // written in full or, when it has no tap, zeroed with the rest first.
    Some(unsafe { written_vec(g.x_len(), compute) })
}

/// The kernel of one phase, `[c, og, taps of the phase]`: `w[o, ci, taps]`
/// transposed per group, keeping the taps of the phase in the order the
/// phase convolution uses them.
fn phase_kernel(g: &ConvGeom, axes: [&AxisPhase; 3], gp: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let (cg, og, kvol, pvol) = (g.cg(), g.og(), g.kvol(), gp.kvol());
    let [_, kh, kw] = g.kernel;
    let mut wp = vec![0.0f32; g.c * og * pvol];
    for grp in 0..g.groups {
        for oi in 0..og {
            for ci in 0..cg {
                let src = &w[((grp * og + oi) * cg + ci) * kvol..][..kvol];
                let dst = &mut wp[((grp * cg + ci) * og + oi) * pvol..][..pvol];
                let mut q = 0;
                for &z in &axes[0].taps {
                    for &y in &axes[1].taps {
                        for &x in &axes[2].taps {
                            dst[q] = src[(z * kh + y) * kw + x];
                            q += 1;
                        }
                    }
                }
            }
        }
    }
    wp
}
