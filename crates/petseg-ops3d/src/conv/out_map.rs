//! Where the direct forward writes its output rows.
//!
//! Usually the dense `[n, o, D, H, W]` result of the convolution. The
//! sub-pixel phases of a strided input gradient (`subpixel.rs`) instead write
//! straight into their voxels of the input gradient, `s·m + π` per axis, so
//! that no phase-sized intermediate is written, read back and interleaved.

use super::geom::ConvGeom;

/// Output row `r` (depth plane · rows + row) and column `ow` of a channel lie
/// at `origin + ⌊r / rows⌋·plane + (r mod rows)·row + ow·col` from the
/// channel's start; channels are `chan` elements apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OutMap {
    /// Elements between channels.
    pub chan: usize,
    /// Output rows per depth plane.
    rows: usize,
    /// Elements between depth planes, rows and columns.
    plane: usize,
    row: usize,
    pub col: usize,
    origin: usize,
}

impl OutMap {
    /// The dense output `[n, o, out]` of `g`.
    pub fn dense(g: &ConvGeom) -> Self {
        let [_, oh, ow] = g.output;
        OutMap {
            chan: g.out_vol(),
            rows: oh,
            plane: oh * ow,
            row: ow,
            col: 1,
            origin: 0,
        }
    }

    /// Phase `ph` of the input gradient `[n, c, in]` of the strided
    /// convolution `g`, computed by a stride-1 convolution with `rows` output
    /// rows per depth plane: its voxel `m` (per axis) is `s·m + ph` of the
    /// gradient.
    pub fn phase(g: &ConvGeom, ph: [usize; 3], rows: usize) -> Self {
        let [_, ih, iw] = g.input;
        let [sd, sh, sw] = g.stride;
        OutMap {
            chan: g.in_vol(),
            rows,
            plane: sd * ih * iw,
            row: sh * iw,
            col: sw,
            origin: (ph[0] * ih + ph[1]) * iw + ph[2],
        }
    }

    /// True for the dense layout of rows `wo` long: consecutive rows are
    /// back to back, so a tile's rows are one contiguous run per channel.
    pub fn is_dense(&self, wo: usize) -> bool {
        self.col == 1 && self.row == wo && self.plane == self.rows * wo && self.origin == 0
    }

    /// Offset of column 0 of output row `r` from the channel's start.
    pub fn row_start(&self, r: usize) -> usize {
        self.origin + r / self.rows * self.plane + r % self.rows * self.row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phases of a stride-2 gradient cover every voxel exactly once.
    #[test]
    fn phases_partition_the_gradient() {
        let g = ConvGeom {
            n: 1,
            c: 1,
            o: 1,
            groups: 1,
            input: [5, 4, 7],
            kernel: [3, 3, 3],
            stride: [2, 2, 2],
            padding: [1; 3],
            dilation: [1; 3],
            output: [3, 2, 4],
        };
        let mut hits = vec![0u8; g.in_vol()];
        for pd in 0..2 {
            for ph in 0..2 {
                for pw in 0..2 {
                    let len = |a: usize, p: usize| (g.input[a] - p).div_ceil(2);
                    let (ld, lh, lw) = (len(0, pd), len(1, ph), len(2, pw));
                    let m = OutMap::phase(&g, [pd, ph, pw], lh);
                    for r in 0..ld * lh {
                        for ow in 0..lw {
                            hits[m.row_start(r) + ow * m.col] += 1;
                        }
                    }
                }
            }
        }
        assert!(hits.iter().all(|&h| h == 1), "{hits:?}");
        let dense = OutMap::dense(&g);
        assert!(dense.is_dense(4) && dense.row_start(5) == 5 * 4);
        assert!(!OutMap::phase(&g, [0; 3], 2).is_dense(4));
    }
}
