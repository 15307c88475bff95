//! The input of a stride-1 convolution, zero-padded once per call.
//!
//! The direct kernels read every tap as a contiguous run at a fixed offset
//! from the tile's first output voxel. For strided convolutions that needs
//! the per-tile phase-split copy of `direct::fill`; with stride 1 it only
//! needs zero padding, so the whole input is padded once (one pass, about the
//! input's size) and the kernels read it in place. Copying rows per tile
//! instead would copy each input voxel once per output depth plane that reads
//! it (`kd` times, plus the tiles' halo rows); profiling put such copies at
//! 5–12 % of a network's train step.
//!
//! Layout: `[n·c][E_d][E_h][E_w]` with `E = max(in + 2·p, (out − 1) + (k − 1)·d + 1)`
//! per axis (the second term covers geometries whose output is given
//! explicitly, as for the sub-pixel phases of a strided input gradient) and
//! the input at offset `p`, followed by [`Padded::slack`] zeros so that the
//! padded columns the kernels compute and drop never read past the buffer.

use super::geom::ConvGeom;
use crate::elem::written_vec;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A zero-padded copy of all `n·c` input channels of one or more stride-1
/// convolutions of the same input.
pub(super) struct Padded {
    data: Vec<f32>,
    /// Padded extents `[E_d, E_h, E_w]`.
    pub ext: [usize; 3],
    /// Zeros before the input on each axis (the largest padding of the
    /// geometries it was made for).
    lo: [usize; 3],
}

impl Padded {
    /// True when `g` reads a once-padded input: stride 1 on every axis, and
    /// no more than twice as many input as output channels, so that the copy
    /// stays within the input and output's size (the input gradient of a
    /// 2 → 16 convolution would otherwise pad 16 channels to produce 2; peak
    /// memory is bounded by ~1.5× the tensors of the op, see the README).
    pub fn applies(g: &ConvGeom) -> bool {
        g.stride == [1; 3] && g.c <= 2 * g.o
    }

    /// Zero elements after the last channel: a tile reads at most `cols_pad`
    /// (< its rows · `E_w` + `col_block`) columns past the largest tap offset,
    /// which ends within one row of the last channel's end.
    fn slack(ext: [usize; 3], col_block: usize) -> usize {
        ext[2] + 2 * col_block
    }

    /// Pads `x [n, c, D, H, W]` for the stride-1 geometry `g`; `col_block` is
    /// the widest column block of the micro-kernels that will read it.
    pub fn new(g: &ConvGeom, x: &[f32], col_block: usize) -> Self {
        Self::shared(std::slice::from_ref(g), x, col_block)
    }

    /// Pads `x` once for several stride-1 geometries over the same input
    /// (`n`, `c` and `input` equal; the sub-pixel phases of a strided input
    /// gradient): the largest padding of any of them before the input, and
    /// enough extent after it for the widest read of each. Rayon over channels.
    pub fn shared(geoms: &[ConvGeom], x: &[f32], col_block: usize) -> Self {
        let g = &geoms[0];
        debug_assert!(geoms
            .iter()
            .all(|p| p.stride == [1; 3] && (p.n, p.c, p.input) == (g.n, g.c, g.input)));
        let lo: [usize; 3] =
            std::array::from_fn(|a| geoms.iter().map(|p| p.padding[a]).max().unwrap_or(0));
        let ext: [usize; 3] = std::array::from_fn(|a| {
            let widest = geoms.iter().map(|p| {
                let reach = p.output[a] - 1 + (p.kernel[a] - 1) * p.dilation[a] + 1;
                lo[a] - p.padding[a] + reach.max(p.input[a] + 2 * p.padding[a])
            });
            widest.max().unwrap_or(0)
        });
        let chan = ext.iter().product::<usize>();
        let channels = g.n * g.c;
        let len = channels * chan + Self::slack(ext, col_block);
        let [id, ih, iw] = g.input;
        let [pd, ph, pw] = lo;
        let pad = |spare: &mut [MaybeUninit<f32>]| {
            let (body, tail) = spare.split_at_mut(channels * chan);
            tail.fill(MaybeUninit::new(0.0));
            body.par_chunks_mut(chan)
                .zip(x.par_chunks(id * ih * iw))
                .for_each(|(dst, src)| {
                    for (z, plane) in dst.chunks_exact_mut(ext[1] * ext[2]).enumerate() {
                        let iz = z.checked_sub(pd).filter(|&iz| iz < id);
                        for (y, row) in plane.chunks_exact_mut(ext[2]).enumerate() {
                            let iy = y.checked_sub(ph).filter(|&iy| iy < ih);
                            let (Some(iz), Some(iy)) = (iz, iy) else {
                                row.fill(MaybeUninit::new(0.0));
                                continue;
                            };
                            let src = &src[(iz * ih + iy) * iw..][..iw];
                            row[..pw].fill(MaybeUninit::new(0.0));
                            for (d, &s) in row[pw..pw + iw].iter_mut().zip(src) {
                                *d = MaybeUninit::new(s);
                            }
                            row[pw + iw..].fill(MaybeUninit::new(0.0));
                        }
                    }
                });
        };
        // SAFETY: every element is written: each channel's planes and rows in
        // full (the n·c channels cover the body), then the slack.
        let data = unsafe { written_vec(len, pad) };
        Padded { data, ext, lo }
    }

    /// Elements per padded channel.
    pub fn chan(&self) -> usize {
        self.ext.iter().product()
    }

    /// The whole buffer (reads of a tile may run into the following channels
    /// and the slack).
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Offset of the voxel read by tap (0, 0, 0) of output row `r` (depth
    /// plane · rows + row), column 0, of geometry `g`, in channel
    /// `first_channel` (the input starts `lo − g.padding` later on each axis
    /// than `g` alone would need).
    pub fn tile_base(&self, g: &ConvGeom, first_channel: usize, r: usize) -> usize {
        let (oz, oy) = (r / g.output[1], r % g.output[1]);
        let [sz, sy, sx]: [usize; 3] = std::array::from_fn(|a| self.lo[a] - g.padding[a]);
        first_channel * self.chan() + ((oz + sz) * self.ext[1] + oy + sy) * self.ext[2] + sx
    }

    /// Offset of every tap `(ci, kz, ky, kx)` of one group, in weight order,
    /// relative to [`Padded::tile_base`]; increasing, so the last is the largest.
    pub fn tap_offsets(&self, g: &ConvGeom, offs: &mut Vec<usize>) {
        let [kd, kh, kw] = g.kernel;
        let [dd, dh, dw] = g.dilation;
        let (chan, plane, row) = (self.chan(), self.ext[1] * self.ext[2], self.ext[2]);
        offs.clear();
        for ci in 0..g.cg() {
            for kz in 0..kd {
                for ky in 0..kh {
                    for kx in 0..kw {
                        offs.push(ci * chan + kz * dd * plane + ky * dh * row + kx * dw);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interior voxels land at `+p`, everything else (borders, slack) is zero.
    #[test]
    fn pads_each_channel_and_zeroes_the_rest() {
        let g = ConvGeom {
            n: 2,
            c: 3,
            o: 1,
            groups: 1,
            input: [2, 3, 4],
            kernel: [3, 3, 3],
            stride: [1; 3],
            padding: [1, 0, 2],
            dilation: [1; 3],
            output: [2, 1, 6],
        };
        let x: Vec<f32> = (0..g.x_len()).map(|i| i as f32 + 1.0).collect();
        let p = Padded::new(&g, &x, 48);
        assert_eq!(p.ext, [4, 3, 8]);
        let mut nonzero = 0;
        for ch in 0..6 {
            for z in 0..4 {
                for y in 0..3 {
                    for w in 0..8 {
                        let v = p.data()[ch * p.chan() + (z * 3 + y) * 8 + w];
                        let inside = (1..3).contains(&z) && (2..6).contains(&w);
                        let want = if inside {
                            x[ch * 24 + ((z - 1) * 3 + y) * 4 + (w - 2)]
                        } else {
                            0.0
                        };
                        assert_eq!(v, want, "channel {ch} voxel ({z}, {y}, {w})");
                        nonzero += usize::from(v != 0.0);
                    }
                }
            }
        }
        assert_eq!(nonzero, x.len());
        assert!(p.data()[6 * p.chan()..].iter().all(|&v| v == 0.0));
    }
}
