//! `upsample_trilinear3d` and `upsample_nearest3d` with autograd, matching
//! `torch.nn.functional.interpolate` (modes `trilinear` and `nearest`).
//!
//! Each axis gets a table of source indices and weights (computed once, as
//! PyTorch computes them); the kernels then loop over output voxels. The
//! backward is the exact adjoint: a scatter-add with the same tables.

use crate::elem::{
    compute_dtype, contiguous, dims5, dispatch_float, first_touch, prepare, storage, through_f32,
    Elem,
};
use crate::error::{config_err, shape_err};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Output size of an up-sampling, as a scale factor per axis or explicit sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpsampleTarget {
    /// Scale factors (D, H, W): output `floor(in · scale)`; like PyTorch with
    /// `scale_factor` (and `recompute_scale_factor` unset), source coordinates
    /// then use `1/scale`, not `in/out`.
    Scale([f64; 3]),
    /// Output sizes (D, H, W); source coordinates use `in/out`.
    Size([usize; 3]),
}

/// Interpolation mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mode {
    Nearest,
    Trilinear { align_corners: bool },
}

/// Geometry of one up-sampling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct UpsampleGeom {
    pub n: usize,
    pub c: usize,
    pub input: [usize; 3],
    pub output: [usize; 3],
    /// The user's scale factor per axis, if the target was given as a scale.
    pub scale: [Option<f64>; 3],
    pub mode: Mode,
}

/// One output index's two source indices and their weights along one axis
/// (nearest: `i0 = i1`, `l0 = 1`, `l1 = 0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tap {
    pub i0: usize,
    pub i1: usize,
    pub l0: f64,
    pub l1: f64,
}

impl UpsampleGeom {
    /// Source taps of every output index along `axis`, computed like PyTorch's
    /// `area_pixel_compute_source_index` (linear) and `nearest_idx` (nearest),
    /// in f32 as PyTorch does for f32 tensors.
    pub fn taps(&self, axis: usize) -> Vec<Tap> {
        let (i, o) = (self.input[axis], self.output[axis]);
        let user = self.scale[axis].filter(|s| *s > 0.0);
        match self.mode {
            Mode::Nearest => {
                let scale = user.map_or(i as f32 / o as f32, |s| (1.0 / s) as f32);
                (0..o)
                    .map(|d| {
                        let s = if o == i {
                            d
                        } else if o == 2 * i {
                            d >> 1
                        } else {
                            ((d as f32 * scale).floor() as usize).min(i - 1)
                        };
                        Tap {
                            i0: s,
                            i1: s,
                            l0: 1.0,
                            l1: 0.0,
                        }
                    })
                    .collect()
            }
            Mode::Trilinear { align_corners } => {
                let scale: f32 = if align_corners {
                    if o > 1 {
                        (i - 1) as f32 / (o - 1) as f32
                    } else {
                        0.0
                    }
                } else {
                    user.map_or(i as f32 / o as f32, |s| (1.0 / s) as f32)
                };
                (0..o)
                    .map(|d| {
                        let src = if align_corners {
                            scale * d as f32
                        } else {
                            (scale * (d as f32 + 0.5) - 0.5).max(0.0)
                        };
                        let i0 = (src as usize).min(i - 1);
                        let i1 = if i0 < i - 1 { i0 + 1 } else { i0 };
                        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
                        Tap {
                            i0,
                            i1,
                            l0: (1.0 - l1) as f64,
                            l1: l1 as f64,
                        }
                    })
                    .collect()
            }
        }
    }
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
    pub fn in_vol(&self) -> usize {
        self.input.iter().product()
    }
    pub fn out_vol(&self) -> usize {
        self.output.iter().product()
    }
    fn dims(&self, s: [usize; 3]) -> Shape {
        Shape::from((self.n, self.c, s[0], s[1], s[2]))
    }
}

/// Per-axis tables converted to the element type.
struct Tables<T> {
    axes: [Vec<(usize, usize, T, T)>; 3],
}

impl<T: Elem> Tables<T> {
    fn new(g: &UpsampleGeom) -> Self {
        let conv = |a| {
            g.taps(a)
                .into_iter()
                .map(|t| (t.i0, t.i1, T::from_f64(t.l0), T::from_f64(t.l1)))
                .collect()
        };
        Tables {
            axes: [conv(0), conv(1), conv(2)],
        }
    }
}

fn upsample_fwd<T: Elem>(g: &UpsampleGeom, x: &[T]) -> Vec<T> {
    let t = Tables::<T>::new(g);
    let [_, ih, iw] = g.input;
    let [_, oh, ow] = g.output;
    let (iv, ov) = (g.in_vol(), g.out_vol());
    let mut y = vec![T::from_f64(0.0); g.planes() * ov];
    y.par_chunks_mut(ov.max(1))
        .zip(x.par_chunks(iv.max(1)))
        .for_each(|(yp, xp)| {
            for (z, &(z0, z1, a0, a1)) in t.axes[0].iter().enumerate() {
                for (yy, &(y0, y1, b0, b1)) in t.axes[1].iter().enumerate() {
                    let r00 = &xp[(z0 * ih + y0) * iw..][..iw];
                    let r01 = &xp[(z0 * ih + y1) * iw..][..iw];
                    let r10 = &xp[(z1 * ih + y0) * iw..][..iw];
                    let r11 = &xp[(z1 * ih + y1) * iw..][..iw];
                    let out = &mut yp[(z * oh + yy) * ow..][..ow];
                    for (o, &(x0, x1, c0, c1)) in out.iter_mut().zip(&t.axes[2]) {
                        *o = a0
                            * (b0 * (c0 * r00[x0] + c1 * r00[x1])
                                + b1 * (c0 * r01[x0] + c1 * r01[x1]))
                            + a1 * (b0 * (c0 * r10[x0] + c1 * r10[x1])
                                + b1 * (c0 * r11[x0] + c1 * r11[x1]));
                    }
                }
            }
        });
    y
}

fn upsample_bwd<T: Elem>(g: &UpsampleGeom, gy: &[T]) -> Vec<T> {
    let t = Tables::<T>::new(g);
    let [_, ih, iw] = g.input;
    let [_, oh, ow] = g.output;
    let (iv, ov) = (g.in_vol(), g.out_vol());
    let mut gx = vec![T::from_f64(0.0); g.planes() * iv];
    gx.par_chunks_mut(iv.max(1))
        .zip(gy.par_chunks(ov.max(1)))
        .for_each(|(gxp, gyp)| {
            first_touch(gxp);
            for (z, &(z0, z1, a0, a1)) in t.axes[0].iter().enumerate() {
                for (yy, &(y0, y1, b0, b1)) in t.axes[1].iter().enumerate() {
                    let src = &gyp[(z * oh + yy) * ow..][..ow];
                    for (zi, yi, w) in [
                        (z0, y0, a0 * b0),
                        (z0, y1, a0 * b1),
                        (z1, y0, a1 * b0),
                        (z1, y1, a1 * b1),
                    ] {
                        let row = &mut gxp[(zi * ih + yi) * iw..][..iw];
                        for (&v, &(x0, x1, c0, c1)) in src.iter().zip(&t.axes[2]) {
                            let wv = w * v;
                            row[x0] += c0 * wv;
                            row[x1] += c1 * wv;
                        }
                    }
                }
            }
        });
    gx
}

/// Forward up-sampling op; backward through [`UpsampleBwdOp`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpsampleOp {
    pub geom: UpsampleGeom,
}

impl CustomOp1 for UpsampleOp {
    fn name(&self) -> &'static str {
        match self.geom.mode {
            Mode::Nearest => "upsample_nearest3d",
            Mode::Trilinear { .. } => "upsample_trilinear3d",
        }
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        through_f32([(s, l)], None, |[(s, l)]| {
            let st = dispatch_float!(self.name(), s, T => {
                Ok(storage(upsample_fwd(&self.geom, contiguous::<T>(self.name(), s, l)?)))
            })?;
            Ok((st, self.geom.dims(self.geom.output)))
        })
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        through_f32([(s, l)], None, |[(s, l)]| {
            let st = crate::cuda::upsample::run(self.name(), &self.geom, false, s, l)?;
            Ok((st, self.geom.dims(self.geom.output)))
        })
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op1_no_bwd(&UpsampleBwdOp { geom: self.geom })?,
        ))
    }
}

/// Adjoint of [`UpsampleOp`]: `gy [N,C,out] → gx [N,C,in]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpsampleBwdOp {
    pub geom: UpsampleGeom,
}

impl CustomOp1 for UpsampleBwdOp {
    fn name(&self) -> &'static str {
        "upsample3d-backward"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        through_f32([(s, l)], None, |[(s, l)]| {
            let st = dispatch_float!(self.name(), s, T => {
                Ok(storage(upsample_bwd(&self.geom, contiguous::<T>(self.name(), s, l)?)))
            })?;
            Ok((st, self.geom.dims(self.geom.input)))
        })
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        through_f32([(s, l)], None, |[(s, l)]| {
            let st = crate::cuda::upsample::run(self.name(), &self.geom, true, s, l)?;
            Ok((st, self.geom.dims(self.geom.input)))
        })
    }
}

fn upsample(op: &'static str, x: &Tensor, target: UpsampleTarget, mode: Mode) -> Result<Tensor> {
    let [n, c, d, h, w] = dims5(op, "input x", x)?;
    let input = [d, h, w];
    let mut output = [0; 3];
    let mut scale = [None; 3];
    for a in 0..3 {
        let ax = ["D", "H", "W"][a];
        if input[a] == 0 {
            return Err(shape_err(op, format!("input {ax} is 0")));
        }
        output[a] = match target {
            UpsampleTarget::Size(s) => s[a],
            UpsampleTarget::Scale(s) => {
                if !(s[a].is_finite() && s[a] > 0.0) {
                    return Err(config_err(
                        op,
                        format!("scale {ax} = {} must be finite and > 0", s[a]),
                    ));
                }
                scale[a] = Some(s[a]);
                (input[a] as f64 * s[a]).floor() as usize
            }
        };
        if output[a] == 0 {
            return Err(config_err(
                op,
                format!(
                    "output {ax} would be 0 (input {}, target {target:?})",
                    input[a]
                ),
            ));
        }
    }
    let geom = UpsampleGeom {
        n,
        c,
        input,
        output,
        scale,
        mode,
    };
    prepare(x, compute_dtype(x))?
        .apply_op1(UpsampleOp { geom })?
        .to_dtype(x.dtype())
}

/// Trilinear interpolation of `x [N, C, D, H, W]`, exactly as
/// `F.interpolate(x, size=… or scale_factor=…, mode="trilinear", align_corners=…)`.
pub fn upsample_trilinear3d(
    x: &Tensor,
    target: UpsampleTarget,
    align_corners: bool,
) -> Result<Tensor> {
    upsample(
        "upsample_trilinear3d",
        x,
        target,
        Mode::Trilinear { align_corners },
    )
}

/// Nearest-neighbour interpolation of `x [N, C, D, H, W]`, exactly as
/// `F.interpolate(x, …, mode="nearest")` (PyTorch's legacy `floor(dst·scale)`
/// rule, not `nearest-exact`).
pub fn upsample_nearest3d(x: &Tensor, target: UpsampleTarget) -> Result<Tensor> {
    upsample("upsample_nearest3d", x, target, Mode::Nearest)
}
