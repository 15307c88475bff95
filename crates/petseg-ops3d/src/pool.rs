//! `max_pool3d` and `avg_pool3d` with autograd: direct loops, rayon over the
//! `N·C` planes (each task writes only its own plane, forward and backward).

use crate::elem::{
    compute_dtype, contiguous, dims5, dispatch_float, first_touch, prepare, same_dtype, storage,
    through_f32, Elem,
};
use crate::error::{config_err, shape_err};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Geometry of a pooling window sweep over `nc` planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolGeom {
    pub n: usize,
    pub c: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub output: [usize; 3],
}

impl PoolGeom {
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
    pub fn in_vol(&self) -> usize {
        self.input.iter().product()
    }
    pub fn out_vol(&self) -> usize {
        self.output.iter().product()
    }
    /// Window of output voxel `o` on one axis, clipped to the input:
    /// `[start, end)` in input coordinates.
    #[inline]
    fn window(&self, axis: usize, o: usize) -> (usize, usize) {
        let s = (o * self.stride[axis]) as isize - self.padding[axis] as isize;
        let e = (s + self.kernel[axis] as isize).min(self.input[axis] as isize);
        (s.max(0) as usize, e.max(0) as usize)
    }
    fn in_dims(&self) -> Shape {
        let [d, h, w] = self.input;
        Shape::from((self.n, self.c, d, h, w))
    }
    fn out_dims(&self) -> Shape {
        let [d, h, w] = self.output;
        Shape::from((self.n, self.c, d, h, w))
    }
    /// Calls `f(output index, window)` for every output voxel of one plane, in
    /// output order, with the window as input-index ranges `[z0, z1)`,
    /// `[y0, y1)`, `[x0, x1)` (clipped to the plane). A generic closure, so the
    /// window loops of each caller compile to plain nested loops.
    #[inline]
    fn for_each_window(&self, mut f: impl FnMut(usize, Window)) {
        let [od, oh, ow] = self.output;
        let xs: Vec<(usize, usize)> = (0..ow).map(|x| self.window(2, x)).collect();
        for z in 0..od {
            let zr = self.window(0, z);
            for y in 0..oh {
                let yr = self.window(1, y);
                for (x, &xr) in xs.iter().enumerate() {
                    f(
                        (z * oh + y) * ow + x,
                        Window {
                            z: zr,
                            y: yr,
                            x: xr,
                        },
                    );
                }
            }
        }
    }
}

/// A pooling window: `[start, end)` input coordinates per axis.
#[derive(Clone, Copy, Debug)]
struct Window {
    z: (usize, usize),
    y: (usize, usize),
    x: (usize, usize),
}

impl Window {
    /// Calls `f(input index)` for every voxel of the window in D, H, W order
    /// (`ih`, `iw`: the plane's height and width).
    #[inline]
    fn for_each(&self, ih: usize, iw: usize, mut f: impl FnMut(usize)) {
        for zz in self.z.0..self.z.1 {
            for yy in self.y.0..self.y.1 {
                let row = (zz * ih + yy) * iw;
                for i in row + self.x.0..row + self.x.1 {
                    f(i);
                }
            }
        }
    }
}

/// Max or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolKind {
    Max,
    /// Average with `count_include_pad = true`: divides by `kd·kh·kw`.
    Avg,
}

/// No maximum yet (an empty window keeps it: cannot happen with padding ≤ k/2).
const NO_INDEX: usize = usize::MAX;

/// One step of a running maximum `(m, k)`: `v` at input index `i` replaces it
/// when larger or NaN. Branch-free (random data would mispredict).
#[inline(always)]
fn update<T: Elem>(m: &mut T, k: &mut usize, v: T, i: usize) {
    #[allow(clippy::eq_op)]
    let take = (v > *m) | (v != v);
    *m = if take { v } else { *m };
    *k = if take { i } else { *k };
}

/// The first maximum of every window of one plane, one output row `(z, y)`
/// at a time: calls `f(first output index of the row, maxima, their input
/// indices)`. Each window's voxels are visited in D, H, W order and a value
/// replaces the running maximum when it is larger or NaN, so the first
/// maximum wins and a NaN (the last one) wins, as in PyTorch. Working on whole
/// rows keeps the inner loop over `W` free of window bookkeeping.
#[inline]
fn row_maxima<T: Elem>(g: &PoolGeom, xp: &[T], mut f: impl FnMut(usize, &[T], &[usize])) {
    let [_, ih, iw] = g.input;
    let [od, oh, ow] = g.output;
    let xs: Vec<(usize, usize)> = (0..ow).map(|x| g.window(2, x)).collect();
    let (mut vals, mut idx) = (vec![T::NEG_INF; ow], vec![NO_INDEX; ow]);
    let pairs = g.kernel[2] == 2 && g.stride[2] == 2 && g.padding[2] == 0;

    for z in 0..od {
        let (z0, z1) = g.window(0, z);
        for y in 0..oh {
            let (y0, y1) = g.window(1, y);
            // Start from each window's first voxel (taking it again below is a no-op).
            for ((m, k), &(x0, x1)) in vals.iter_mut().zip(idx.iter_mut()).zip(&xs) {
                (*m, *k) = if z0 < z1 && y0 < y1 && x0 < x1 {
                    let i = (z0 * ih + y0) * iw + x0;
                    (xp[i], i)
                } else {
                    (T::NEG_INF, NO_INDEX)
                };
            }
            for zz in z0..z1 {
                for yy in y0..y1 {
                    let row = (zz * ih + yy) * iw;
                    let xr = &xp[row..row + iw];
                    let running = vals.iter_mut().zip(idx.iter_mut());
                    if pairs {
                        // W windows are the disjoint pairs (2·x, 2·x + 1).
                        for (x, ((m, k), p)) in running.zip(xr.chunks_exact(2)).enumerate() {
                            update(m, k, p[0], row + 2 * x);
                            update(m, k, p[1], row + 2 * x + 1);
                        }
                    } else {
                        for ((m, k), &(x0, x1)) in running.zip(&xs) {
                            for (i, &v) in (row + x0..).zip(&xr[x0..x1]) {
                                update(m, k, v, i);
                            }
                        }
                    }
                }
            }
            f((z * oh + y) * ow, &vals, &idx);
        }
    }
}

fn pool_fwd<T: Elem>(g: &PoolGeom, kind: PoolKind, x: &[T]) -> Vec<T> {
    let (iv, ov) = (g.in_vol(), g.out_vol());
    let div = T::from_f64(g.kernel.iter().product::<usize>() as f64);
    let [_, ih, iw] = g.input;
    let mut y = vec![T::ZERO; g.planes() * ov];
    y.par_chunks_mut(ov.max(1))
        .zip(x.par_chunks(iv.max(1)))
        .for_each(|(yp, xp)| match kind {
            PoolKind::Max => row_maxima(g, xp, |o, vals, _| {
                yp[o..o + vals.len()].copy_from_slice(vals);
            }),
            PoolKind::Avg => g.for_each_window(|o, win| {
                let mut s = T::ZERO;
                win.for_each(ih, iw, |i| s += xp[i]);
                yp[o] = s / div;
            }),
        });
    y
}

/// Max: routes each output gradient to its window's first argmax in `x`.
fn max_pool_bwd<T: Elem>(g: &PoolGeom, x: &[T], gy: &[T]) -> Vec<T> {
    let (iv, ov) = (g.in_vol(), g.out_vol());
    let mut gx = vec![T::ZERO; g.planes() * iv];
    gx.par_chunks_mut(iv.max(1))
        .zip(x.par_chunks(iv.max(1)))
        .zip(gy.par_chunks(ov.max(1)))
        .for_each(|((gxp, xp), gyp)| {
            first_touch(gxp);
            row_maxima(g, xp, |o, _, idx| {
                for (&i, &gv) in idx.iter().zip(&gyp[o..o + idx.len()]) {
                    if i != NO_INDEX {
                        gxp[i] += gv;
                    }
                }
            })
        });
    gx
}

/// Avg: spreads each output gradient evenly (÷ k³) over its window.
fn avg_pool_bwd<T: Elem>(g: &PoolGeom, gy: &[T]) -> Vec<T> {
    let (iv, ov) = (g.in_vol(), g.out_vol());
    let div = T::from_f64(g.kernel.iter().product::<usize>() as f64);
    let [_, ih, iw] = g.input;
    let mut gx = vec![T::ZERO; g.planes() * iv];
    gx.par_chunks_mut(iv.max(1))
        .zip(gy.par_chunks(ov.max(1)))
        .for_each(|(gxp, gyp)| {
            first_touch(gxp);
            g.for_each_window(|o, win| {
                let v = gyp[o] / div;
                win.for_each(ih, iw, |i| gxp[i] += v);
            })
        });
    gx
}

/// Forward pooling op (autograd via [`PoolBwdOp`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolOp {
    pub geom: PoolGeom,
    pub kind: PoolKind,
}

impl CustomOp1 for PoolOp {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "max_pool3d",
            PoolKind::Avg => "avg_pool3d",
        }
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        through_f32([(s, l)], None, |[(s, l)]| {
            let st = dispatch_float!(self.name(), s, T => {
                let x = contiguous::<T>(self.name(), s, l)?;
                Ok(storage(pool_fwd(&self.geom, self.kind, x)))
            })?;
            Ok((st, self.geom.out_dims()))
        })
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        through_f32([(s, l)], None, |[(s, l)]| {
            let st = crate::cuda::pool::forward(self.name(), &self.geom, self.kind, s, l)?;
            Ok((st, self.geom.out_dims()))
        })
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(x.apply_op2_no_bwd(
            &grad,
            &PoolBwdOp {
                geom: self.geom,
                kind: self.kind,
            },
        )?))
    }
}

/// Backward pooling op `(x, gy) → gx` (x is only read for max pooling).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolBwdOp {
    pub geom: PoolGeom,
    pub kind: PoolKind,
}

impl CustomOp2 for PoolBwdOp {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "max_pool3d-backward",
            PoolKind::Avg => "avg_pool3d-backward",
        }
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        through_f32([(s1, l1), (s2, l2)], None, |[(s1, l1), (s2, l2)]| {
            same_dtype(self.name(), &[s1, s2])?;
            let st = dispatch_float!(self.name(), s1, T => {
                let x = contiguous::<T>(self.name(), s1, l1)?;
                let gy = contiguous::<T>(self.name(), s2, l2)?;
                let gx = match self.kind {
                    PoolKind::Max => max_pool_bwd(&self.geom, x, gy),
                    PoolKind::Avg => avg_pool_bwd(&self.geom, gy),
                };
                Ok(storage(gx))
            })?;
            Ok((st, self.geom.in_dims()))
        })
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        through_f32([(s1, l1), (s2, l2)], None, |[(s1, l1), (s2, l2)]| {
            let st =
                crate::cuda::pool::backward(self.name(), &self.geom, self.kind, s1, l1, s2, l2)?;
            Ok((st, self.geom.in_dims()))
        })
    }
}

fn pool(
    op: &'static str,
    kind: PoolKind,
    x: &Tensor,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Result<Tensor> {
    let [n, c, d, h, w] = dims5(op, "input x", x)?;
    let input = [d, h, w];
    let mut output = [0; 3];
    for a in 0..3 {
        let ax = ["D", "H", "W"][a];
        if kernel[a] == 0 || stride[a] == 0 {
            return Err(config_err(
                op,
                format!("kernel and stride must be ≥ 1, got kernel {kernel:?}, stride {stride:?}"),
            ));
        }
        if 2 * padding[a] > kernel[a] {
            return Err(config_err(
                op,
                format!(
                    "padding {ax} = {} must be at most half the kernel ({})",
                    padding[a], kernel[a]
                ),
            ));
        }
        if input[a] + 2 * padding[a] < kernel[a] {
            return Err(shape_err(
                op,
                format!(
                    "input {ax} = {} plus padding 2·{} is smaller than the kernel {}",
                    input[a], padding[a], kernel[a]
                ),
            ));
        }
        output[a] = (input[a] + 2 * padding[a] - kernel[a]) / stride[a] + 1;
    }
    let geom = PoolGeom {
        n,
        c,
        input,
        kernel,
        stride,
        padding,
        output,
    };
    prepare(x, compute_dtype(x))?
        .apply_op1(PoolOp { geom, kind })?
        .to_dtype(x.dtype())
}

/// 3-D max pooling like `torch.nn.functional.max_pool3d` (dilation 1,
/// `ceil_mode = false`). Padding (at most half the kernel) acts as −∞.
/// `x [N, C, D, H, W]` → `[N, C, (D + 2p − k)/s + 1, …]`. The backward routes
/// each gradient to the first maximum of its window (PyTorch's choice on ties).
pub fn max_pool3d(
    x: &Tensor,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Result<Tensor> {
    pool("max_pool3d", PoolKind::Max, x, kernel, stride, padding)
}

/// 3-D average pooling like `torch.nn.functional.avg_pool3d` with its defaults
/// `count_include_pad = true`, `ceil_mode = false`: every window sum is divided
/// by `kd·kh·kw`, padded zeros included.
pub fn avg_pool3d(
    x: &Tensor,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Result<Tensor> {
    pool("avg_pool3d", PoolKind::Avg, x, kernel, stride, padding)
}
