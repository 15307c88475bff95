//! A per-channel affine map `y = x·scale_c + shift_c`, optionally followed by a
//! ReLU, as one fused candle op: BatchNorm in eval mode (with MONAI's
//! following ReLU where there is one).
//!
//! Composed from candle ops (`broadcast_mul`, `broadcast_add`, `relu`) it is
//! three full-size passes and temporaries; here it is one parallel pass, and
//! the backward (input, scale and shift gradients) one more.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::cpu_op::{contiguous_slice, float_dispatch};

/// The op's name in errors.
const OP: &str = "channel_affine";

/// Sizes: `x [n, c, S]` with `S` voxels per channel.
#[derive(Clone, Copy, Debug)]
struct AffineGeom {
    c: usize,
    voxels: usize,
    relu: bool,
}

fn fwd<T: WithDType>(g: AffineGeom, x: &[T], scale: &[T], shift: &[T]) -> Vec<T> {
    let zero = T::from_f64(0.0);
    let sv = g.voxels.max(1);
    let mut y = vec![zero; x.len()];
    y.par_chunks_mut(sv)
        .zip(x.par_chunks(sv))
        .enumerate()
        .for_each(|(plane, (yc, xc))| {
            let (a, b) = (scale[plane % g.c], shift[plane % g.c]);
            let it = yc.iter_mut().zip(xc);
            if g.relu {
                // `max(z, 0)` keeping NaN, as `torch.relu`.
                it.for_each(|(o, &v)| {
                    let z = v * a + b;
                    *o = if z < zero { zero } else { z };
                });
            } else {
                it.for_each(|(o, &v)| *o = v * a + b);
            }
        });
    y
}

/// Packed `[dx, dscale (c), dshift (c)]` from `gy`: `gz = gy` (0 where the
/// output is ≤ 0 with the ReLU), `dx = gz·scale`, `dscale_c = Σ gz·x`,
/// `dshift_c = Σ gz`; per-plane f64 sums added in plane order (independent
/// of the thread count).
fn bwd<T: WithDType>(g: AffineGeom, x: &[T], scale: &[T], shift: &[T], gy: &[T]) -> Vec<T> {
    let zero = T::from_f64(0.0);
    let sv = g.voxels.max(1);
    let mut out = vec![zero; x.len() + 2 * g.c];
    let (dx, params) = out.split_at_mut(x.len());
    let sums: Vec<(f64, f64)> = dx
        .par_chunks_mut(sv)
        .zip(x.par_chunks(sv))
        .zip(gy.par_chunks(sv))
        .enumerate()
        .map(|(plane, ((dc, xc), gc))| {
            let (a, b) = (scale[plane % g.c], shift[plane % g.c]);
            let (mut sa, mut sb) = ([0.0f64; 4], [0.0f64; 4]);
            for (k, ((o, &v), &gv)) in dc.iter_mut().zip(xc).zip(gc).enumerate() {
                let gz = if g.relu && v * a + b <= zero {
                    zero
                } else {
                    gv
                };
                *o = gz * a;
                sa[k % 4] += (gz * v).to_f64();
                sb[k % 4] += gz.to_f64();
            }
            (sa.iter().sum(), sb.iter().sum())
        })
        .collect();
    for ch in 0..g.c {
        let (mut ds, mut dt) = (0.0, 0.0);
        for (a, b) in sums.iter().skip(ch).step_by(g.c) {
            ds += a;
            dt += b;
        }
        params[ch] = T::from_f64(ds);
        params[g.c + ch] = T::from_f64(dt);
    }
    out
}

/// `(x, scale, shift) → x·scale + shift` (then ReLU if set).
#[derive(Clone, Copy, Debug)]
struct AffineOp(AffineGeom);

impl CustomOp3 for AffineOp {
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
            let a = contiguous_slice::<T>(OP, s2, l2)?;
            let b = contiguous_slice::<T>(OP, s3, l3)?;
            Ok(T::to_cpu_storage_owned(fwd(self.0, x, a, b)))
        })?;
        Ok((st, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let params = Tensor::cat(&[scale, shift], 0)?;
        let packed = x.apply_op3_no_bwd(&params, &grad.contiguous()?, &AffineBwdOp(self.0))?;
        let (len, c) = (x.elem_count(), self.0.c);
        Ok((
            Some(packed.narrow(0, 0, len)?.reshape(x.shape())?),
            Some(packed.narrow(0, len, c)?),
            Some(packed.narrow(0, len + c, c)?),
        ))
    }
}

/// `(x, [scale, shift], gy) → [dx, dscale, dshift]` packed (see [`bwd`]).
#[derive(Clone, Copy, Debug)]
struct AffineBwdOp(AffineGeom);

impl CustomOp3 for AffineBwdOp {
    fn name(&self) -> &'static str {
        "channel_affine-backward"
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
        let c = self.0.c;
        let st = float_dispatch!(OP, s1, T => {
            let x = contiguous_slice::<T>(OP, s1, l1)?;
            let p = contiguous_slice::<T>(OP, s2, l2)?;
            let gy = contiguous_slice::<T>(OP, s3, l3)?;
            Ok(T::to_cpu_storage_owned(bwd(self.0, x, &p[..c], &p[c..], gy)))
        })?;
        Ok((st, Shape::from(l1.shape().elem_count() + 2 * c)))
    }
}

/// `x·scale + shift` per channel of `x [N, C, D, H, W]` (`scale`, `shift`:
/// `[C]`), then ReLU if `relu`: the fused op for f32/f64 CPU tensors, candle's
/// composed ops otherwise. Gradients for all three.
pub(crate) fn channel_affine(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    relu: bool,
) -> Result<Tensor> {
    let (_, c, d, h, w) = x.dims5()?;
    if scale.dims() != [c] || shift.dims() != [c] {
        candle_core::bail!(
            "channel_affine: scale {:?} and shift {:?} must be [{c}] for input {:?}",
            scale.dims(),
            shift.dims(),
            x.dims()
        );
    }
    let fused = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && scale.dtype() == x.dtype()
        && shift.dtype() == x.dtype();
    if !fused {
        return composed(x, scale, shift, relu);
    }
    let geom = AffineGeom {
        c,
        voxels: d * h * w,
        relu,
    };
    x.contiguous()?
        .apply_op3(&scale.contiguous()?, &shift.contiguous()?, AffineOp(geom))
}

/// The same from candle ops (other devices and dtypes; the tests' reference).
fn composed(x: &Tensor, scale: &Tensor, shift: &Tensor, relu: bool) -> Result<Tensor> {
    let shape = (1, scale.dim(0)?, 1, 1, 1);
    let y = x
        .broadcast_mul(&scale.reshape(shape)?)?
        .broadcast_add(&shift.reshape(shape)?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_op::testing::{check_finite_differences, rand_t};
    use candle_core::Var;

    /// Output and gradients of x, scale, shift for the loss `Σ y² · r`.
    fn run(f: fn(&Tensor, &Tensor, &Tensor, bool) -> Result<Tensor>, relu: bool) -> Vec<Vec<f32>> {
        let dims = [2, 3, 9, 10, 11];
        let vars: Vec<Var> = [(1, &dims[..]), (2, &[3][..]), (3, &[3][..])]
            .iter()
            .map(|&(seed, s)| Var::from_tensor(&rand_t(seed, s, DType::F32)).unwrap())
            .collect();
        let y = f(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            relu,
        )
        .unwrap();
        let r = rand_t(4, &dims, DType::F32);
        let g = (y.sqr().unwrap() * r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut out = vec![flat(&y)];
        out.extend(vars.iter().map(|v| flat(g.get(v).unwrap())));
        out
    }

    /// The fused op equals the composed one, with and without the ReLU, and
    /// does not depend on the thread count.
    #[test]
    fn fused_matches_composed_and_is_deterministic() {
        for relu in [false, true] {
            let fused = run(channel_affine, relu);
            let composed = run(composed, relu);
            for (k, (a, b)) in fused.iter().zip(&composed).enumerate() {
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                let err = a.iter().zip(b).fold(0f32, |m, (u, v)| m.max((u - v).abs()));
                assert!(
                    err <= 1e-5 * scale,
                    "relu {relu}, tensor {k}: max abs diff {err}"
                );
            }
            let one = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap()
                .install(|| run(channel_affine, relu));
            assert_eq!(one, fused);
        }
    }

    /// Gradients against central finite differences in f64.
    #[test]
    fn gradients_match_finite_differences() {
        for relu in [false, true] {
            let ins = [
                rand_t(5, &[2, 2, 2, 3, 2], DType::F64),
                rand_t(6, &[2], DType::F64),
                rand_t(7, &[2], DType::F64),
            ];
            let r = rand_t(8, &[2, 2, 2, 3, 2], DType::F64);
            let op = |t: &[Tensor]| channel_affine(&t[0], &t[1], &t[2], relu).unwrap();
            check_finite_differences(&op, &ins, &r, &format!("relu {relu}"));
        }
    }
}
