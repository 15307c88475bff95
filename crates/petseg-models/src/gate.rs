//! The output of MONAI's attention gate joined to the up-sampled features,
//! `cat([x · sigmoid(p), up], 1)`, as one fused candle op.
//!
//! Composed from candle ops, the graph keeps `sigmoid(p)`, the full-size gated
//! tensor `x · sigmoid(p)` and the concatenation until the backward, and the
//! backward builds several more full-size tensors (the broadcast's gradient,
//! both products, the narrows' zero padding). Here the graph keeps only the
//! inputs (which the network keeps anyway) and the output; the backward is
//! two parallel passes.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::cpu_op::{contiguous_slice, float_dispatch};

/// The op's name in errors.
const OP: &str = "gate_cat";

/// Voxels per parallel task of the psi-gradient pass.
const CHUNK: usize = 1 << 14;

/// Sizes: `x [n, cx, S]`, `p [n, 1, S]`, `up [n, cu, S]` with `S` voxels.
#[derive(Clone, Copy, Debug)]
struct GateGeom {
    n: usize,
    cx: usize,
    cu: usize,
    voxels: usize,
}

/// `sigmoid(p)` for every voxel of every sample.
fn sigmoid<T: WithDType>(p: &[T]) -> Vec<T> {
    let mut s = vec![T::from_f64(0.0); p.len()];
    s.par_chunks_mut(CHUNK)
        .zip(p.par_chunks(CHUNK))
        .for_each(|(sc, pc)| {
            for (o, &v) in sc.iter_mut().zip(pc) {
                *o = T::from_f64(1.0 / (1.0 + (-v.to_f64()).exp()));
            }
        });
    s
}

fn fwd<T: WithDType>(g: GateGeom, x: &[T], p: &[T], up: &[T]) -> Vec<T> {
    let sv = g.voxels.max(1);
    let sig = sigmoid(p);
    let c = g.cx + g.cu;
    let mut y = vec![T::from_f64(0.0); g.n * c * g.voxels];
    y.par_chunks_mut(sv).enumerate().for_each(|(plane, yc)| {
        let (s, ch) = (plane / c, plane % c);
        if ch < g.cx {
            let xc = &x[(s * g.cx + ch) * sv..][..sv];
            let sc = &sig[s * sv..][..sv];
            for ((o, &a), &b) in yc.iter_mut().zip(xc).zip(sc) {
                *o = a * b;
            }
        } else {
            yc.copy_from_slice(&up[(s * g.cu + ch - g.cx) * sv..][..sv]);
        }
    });
    y
}

/// Packed `[dx (n·cx·S), dp (n·S)]` from `gy [n, cx + cu, S]`:
/// `dx = gy_x · σ(p)`, `dp = σ(p)(1 − σ(p)) · Σ_c gy_x,c · x_c` (channels summed
/// in order, so the result does not depend on the thread count).
fn bwd<T: WithDType>(g: GateGeom, x: &[T], p: &[T], gy: &[T]) -> Vec<T> {
    let sv = g.voxels.max(1);
    let sig = sigmoid(p);
    let c = g.cx + g.cu;
    let mut out = vec![T::from_f64(0.0); g.n * (g.cx + 1) * g.voxels];
    let (dx, dp) = out.split_at_mut(g.n * g.cx * g.voxels);
    dx.par_chunks_mut(sv).enumerate().for_each(|(plane, dc)| {
        let (s, ch) = (plane / g.cx, plane % g.cx);
        let gc = &gy[(s * c + ch) * sv..][..sv];
        let sc = &sig[s * sv..][..sv];
        for ((o, &a), &b) in dc.iter_mut().zip(gc).zip(sc) {
            *o = a * b;
        }
    });
    dp.par_chunks_mut(sv).enumerate().for_each(|(s, d)| {
        d.par_chunks_mut(CHUNK).enumerate().for_each(|(k, dc)| {
            let start = k * CHUNK;
            let mut acc = vec![T::from_f64(0.0); dc.len()];
            for ch in 0..g.cx {
                let gc = &gy[(s * c + ch) * sv + start..][..dc.len()];
                let xc = &x[(s * g.cx + ch) * sv + start..][..dc.len()];
                for ((a, &gv), &xv) in acc.iter_mut().zip(gc).zip(xc) {
                    *a += gv * xv;
                }
            }
            let sc = &sig[s * sv + start..][..dc.len()];
            for ((o, &a), &sg) in dc.iter_mut().zip(&acc).zip(sc) {
                *o = a * sg * (T::from_f64(1.0) - sg);
            }
        })
    });
    out
}

/// `(x, p, up) → cat([x · sigmoid(p), up], 1)`.
#[derive(Clone, Copy, Debug)]
struct GateCatOp(GateGeom);

impl CustomOp3 for GateCatOp {
    fn name(&self) -> &'static str {
        OP
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let st = float_dispatch!(OP, s1, T => {
            let x = contiguous_slice::<T>(OP, s1, l1)?;
            let p = contiguous_slice::<T>(OP, s2, l2)?;
            let up = contiguous_slice::<T>(OP, s3, l3)?;
            Ok(T::to_cpu_storage_owned(fwd(self.0, x, p, up)))
        })?;
        let mut dims = l1.dims().to_vec();
        dims[1] = self.0.cx + self.0.cu;
        Ok((st, Shape::from(dims)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        _up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let packed = x.apply_op3_no_bwd(p, &grad, &GateBwdOp(self.0))?;
        let len = x.elem_count();
        Ok((
            Some(packed.narrow(0, 0, len)?.reshape(x.shape())?),
            Some(packed.narrow(0, len, p.elem_count())?.reshape(p.shape())?),
            Some(grad.narrow(1, self.0.cx, self.0.cu)?),
        ))
    }
}

/// `(x, p, gy) → [dx, dp]` packed (see [`bwd`]).
#[derive(Clone, Copy, Debug)]
struct GateBwdOp(GateGeom);

impl CustomOp3 for GateBwdOp {
    fn name(&self) -> &'static str {
        "gate_cat-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let st = float_dispatch!(OP, s1, T => {
            let x = contiguous_slice::<T>(OP, s1, l1)?;
            let p = contiguous_slice::<T>(OP, s2, l2)?;
            let gy = contiguous_slice::<T>(OP, s3, l3)?;
            Ok(T::to_cpu_storage_owned(bwd(self.0, x, p, gy)))
        })?;
        let g = self.0;
        Ok((st, Shape::from(g.n * (g.cx + 1) * g.voxels)))
    }
}

/// `cat([x · sigmoid(p), up], 1)` for `x [N, Cx, D, H, W]`, `p [N, 1, D, H, W]`
/// (the gate's logits) and `up [N, Cu, D, H, W]`: the fused op for f32/f64
/// CPU tensors, candle's composed ops otherwise. Gradients for all three.
pub(crate) fn gate_cat(x: &Tensor, p: &Tensor, up: &Tensor) -> Result<Tensor> {
    let (n, cx, d, h, w) = x.dims5()?;
    let (pn, pc, pd, ph, pw) = p.dims5()?;
    let (un, cu, ud, uh, uw) = up.dims5()?;
    if (pn, pc, pd, ph, pw) != (n, 1, d, h, w) || (un, ud, uh, uw) != (n, d, h, w) {
        candle_core::bail!(
            "gate_cat: x {:?}, gate {:?} and up {:?} must share N, D, H, W, the gate with one channel",
            x.dims(),
            p.dims(),
            up.dims()
        );
    }
    let fused = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && p.dtype() == x.dtype()
        && up.dtype() == x.dtype();
    if !fused {
        return composed(x, p, up);
    }
    let geom = GateGeom {
        n,
        cx,
        cu,
        voxels: d * h * w,
    };
    x.contiguous()?
        .apply_op3(&p.contiguous()?, &up.contiguous()?, GateCatOp(geom))
}

/// The same from candle ops (other devices and dtypes; the tests' reference).
fn composed(x: &Tensor, p: &Tensor, up: &Tensor) -> Result<Tensor> {
    let att = x.broadcast_mul(&candle_nn::ops::sigmoid(p)?)?;
    Tensor::cat(&[&att, up], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_op::testing::{check_finite_differences, rand_t};
    use candle_core::Var;

    /// Output and the gradients of x, p, up for the loss `Σ y² · r`.
    fn run(
        f: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
        dtype: DType,
        dims: [usize; 3],
    ) -> Vec<Vec<f64>> {
        let [cx, cu, s] = dims;
        let vars: Vec<Var> = [(1, cx), (2, 1), (3, cu)]
            .iter()
            .map(|&(seed, c)| Var::from_tensor(&rand_t(seed, &[2, c, s, s + 1, 3], dtype)).unwrap())
            .collect();
        let y = f(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
        )
        .unwrap();
        let r = rand_t(4, y.dims(), dtype);
        let g = (y.sqr().unwrap() * r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let flat = |t: &Tensor| {
            t.flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        let mut out = vec![flat(&y)];
        out.extend(vars.iter().map(|v| flat(g.get(v).unwrap())));
        out
    }

    /// The fused op equals the composed one (f32, several psi chunks) and
    /// does not depend on the thread count.
    #[test]
    fn fused_matches_composed_and_is_deterministic() {
        let dims = [3, 2, 26];
        let fused = run(gate_cat, DType::F32, dims);
        let composed = run(composed, DType::F32, dims);
        for (k, (a, b)) in fused.iter().zip(&composed).enumerate() {
            let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
            let err = a.iter().zip(b).fold(0f64, |m, (u, v)| m.max((u - v).abs()));
            assert!(err <= 1e-6 * scale, "tensor {k}: max abs diff {err}");
        }
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| run(gate_cat, DType::F32, dims));
        assert_eq!(one, fused);
    }

    /// Gradients against central finite differences in f64.
    #[test]
    fn gradients_match_finite_differences() {
        let ins: Vec<Tensor> = [(5, 2), (6, 1), (7, 3)]
            .iter()
            .map(|&(seed, c)| rand_t(seed, &[1, c, 3, 2, 3], DType::F64))
            .collect();
        let r = rand_t(8, &[1, 5, 3, 2, 3], DType::F64);
        let op = |t: &[Tensor]| gate_cat(&t[0], &t[1], &t[2]).unwrap();
        check_finite_differences(&op, &ins, &r, "gate_cat");
    }
}
