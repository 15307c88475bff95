//! `max_pool3d` and `avg_pool3d` with autograd: direct loops, rayon over the
//! `N·C` planes (each task writes only its own plane, forward and backward).

use crate::elem::{
    compute_dtype, contiguous, dims5, dispatch_float, dtype_of, prepare, storage, Elem,
};
use crate::error::{config_err, shape_err, unsupported};
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
    /// Calls `f(output index, input index)` for every input voxel of every
    /// window of one plane, windows in output order, voxels in D,H,W order.
    #[inline]
    fn for_each_window(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
        let [_, ih, iw] = self.input;
        let [od, oh, ow] = self.output;
        for z in 0..od {
            let (z0, z1) = self.window(0, z);
            for y in 0..oh {
                let (y0, y1) = self.window(1, y);
                for x in 0..ow {
                    let (x0, x1) = self.window(2, x);
                    let mut it = (z0..z1).flat_map(move |zz| {
                        (y0..y1)
                            .flat_map(move |yy| (x0..x1).map(move |xx| (zz * ih + yy) * iw + xx))
                    });
                    f((z * oh + y) * ow + x, &mut it);
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

/// Index (within the plane) of the first maximum of a window; a NaN (the last
/// one) wins, as in PyTorch. `None` for an empty window (cannot happen with padding ≤ k/2).
#[inline]
fn argmax<T: Elem>(plane: &[T], it: &mut dyn Iterator<Item = usize>) -> Option<usize> {
    let mut best: Option<(usize, T)> = None;
    for i in it {
        let v = plane[i];
        #[allow(clippy::eq_op)]
        let is_nan = v != v;
        match best {
            Some((_, m)) if !(v > m || is_nan) => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

fn pool_fwd<T: Elem>(g: &PoolGeom, kind: PoolKind, x: &[T]) -> Vec<T> {
    let (iv, ov) = (g.in_vol(), g.out_vol());
    let div = T::from_f64(g.kernel.iter().product::<usize>() as f64);
    let mut y = vec![T::from_f64(0.0); g.planes() * ov];
    y.par_chunks_mut(ov.max(1))
        .zip(x.par_chunks(iv.max(1)))
        .for_each(|(yp, xp)| {
            g.for_each_window(|o, it| {
                yp[o] = match kind {
                    PoolKind::Max => argmax(xp, it).map_or(T::NEG_INF, |i| xp[i]),
                    PoolKind::Avg => it.fold(T::from_f64(0.0), |s, i| s + xp[i]) / div,
                }
            })
        });
    y
}

/// Max: routes each output gradient to its window's first argmax in `x`.
fn max_pool_bwd<T: Elem>(g: &PoolGeom, x: &[T], gy: &[T]) -> Vec<T> {
    let (iv, ov) = (g.in_vol(), g.out_vol());
    let mut gx = vec![T::from_f64(0.0); g.planes() * iv];
    gx.par_chunks_mut(iv.max(1))
        .zip(x.par_chunks(iv.max(1)))
        .zip(gy.par_chunks(ov.max(1)))
        .for_each(|((gxp, xp), gyp)| {
            g.for_each_window(|o, it| {
                if let Some(i) = argmax(xp, it) {
                    gxp[i] += gyp[o];
                }
            })
        });
    gx
}

/// Avg: spreads each output gradient evenly (÷ k³) over its window.
fn avg_pool_bwd<T: Elem>(g: &PoolGeom, gy: &[T]) -> Vec<T> {
    let (iv, ov) = (g.in_vol(), g.out_vol());
    let div = T::from_f64(g.kernel.iter().product::<usize>() as f64);
    let mut gx = vec![T::from_f64(0.0); g.planes() * iv];
    gx.par_chunks_mut(iv.max(1))
        .zip(gy.par_chunks(ov.max(1)))
        .for_each(|(gxp, gyp)| {
            g.for_each_window(|o, it| {
                let v = gyp[o] / div;
                it.for_each(|i| gxp[i] += v);
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
        let st = dispatch_float!(self.name(), s, T => {
            let x = contiguous::<T>(self.name(), s, l)?;
            Ok(storage(pool_fwd(&self.geom, self.kind, x)))
        })?;
        Ok((st, self.geom.out_dims()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let st = crate::cuda::pool::forward(self.name(), &self.geom, self.kind, s, l)?;
        Ok((st, self.geom.out_dims()))
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
        if dtype_of(s1) != dtype_of(s2) {
            return Err(unsupported(
                self.name(),
                format!("mixed dtypes {:?} and {:?}", dtype_of(s1), dtype_of(s2)),
            ));
        }
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
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let st = crate::cuda::pool::backward(self.name(), &self.geom, self.kind, s1, l1, s2, l2)?;
        Ok((st, self.geom.in_dims()))
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
