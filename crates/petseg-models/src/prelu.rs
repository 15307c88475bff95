//! `torch.nn.PReLU` with one shared slope as a fused candle op: one parallel
//! pass forward, one parallel pass backward producing both the input and the
//! slope gradient.
//!
//! Composed from candle ops (`where(x ≥ 0, x, w·x)`), the graph keeps a byte
//! mask and the full-size `w·x` until the backward, which then builds two more
//! full-size tensors (`where_cond` against zeros, twice) and reduces the slope
//! gradient through a broadcast. Here the graph keeps only `x` and `w`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task (and per partial sum of the slope gradient, so
/// the summation order, hence the result, does not depend on the thread count).
const CHUNK: usize = 1 << 15;

/// Float element types of the kernel.
trait Float: candle_core::WithDType {
    fn storage_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [Self]> {
        let (a, b) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("prelu: non-contiguous input".into()))?;
        Ok(&s.as_slice::<Self>()?[a..b])
    }
}
impl Float for f32 {}
impl Float for f64 {}

/// `y = x` where `x > 0`, else `w·x` (PyTorch's PReLU).
#[derive(Clone, Copy, Debug)]
struct PReluOp;

fn fwd<T: Float>(x: &[T], w: T) -> Vec<T> {
    let zero = T::from_f64(0.0);
    let mut y = vec![zero; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(yc, xc)| {
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = if v > zero { v } else { w * v };
            }
        });
    y
}

/// Packed `[dx (len), dw (1)]`: `dx = gy` where `x > 0`, else `w·gy`;
/// `dw = Σ_{x ≤ 0} gy·x` (f64 partial sums per chunk, added in chunk order).
fn bwd<T: Float>(x: &[T], w: T, gy: &[T]) -> Vec<T> {
    let zero = T::from_f64(0.0);
    let mut out = vec![zero; x.len() + 1];
    let (dx, dw) = out.split_at_mut(x.len());
    let partial: Vec<f64> = dx
        .par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .zip(gy.par_chunks(CHUNK))
        .map(|((dc, xc), gc)| {
            let mut lanes = [0.0f64; 4];
            for (k, ((o, &v), &g)) in dc.iter_mut().zip(xc).zip(gc).enumerate() {
                if v > zero {
                    *o = g;
                } else {
                    *o = w * g;
                    lanes[k % 4] += (g * v).to_f64();
                }
            }
            lanes.iter().sum()
        })
        .collect();
    dw[0] = T::from_f64(partial.iter().sum());
    out
}

fn float_op<R>(
    name: &str,
    s: &CpuStorage,
    f32_op: impl FnOnce() -> Result<R>,
    f64_op: impl FnOnce() -> Result<R>,
) -> Result<R> {
    match candle_core::backend::BackendStorage::dtype(s) {
        DType::F32 => f32_op(),
        DType::F64 => f64_op(),
        other => Err(candle_core::Error::Msg(format!(
            "{name}: dtype {other:?} (only f32 and f64 on the CPU)"
        ))),
    }
}

impl CustomOp2 for PReluOp {
    fn name(&self) -> &'static str {
        "prelu"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let st = float_op(
            self.name(),
            s1,
            || {
                let (x, w) = (f32::storage_slice(s1, l1)?, f32::storage_slice(s2, l2)?);
                Ok(CpuStorage::F32(fwd(x, w[0])))
            },
            || {
                let (x, w) = (f64::storage_slice(s1, l1)?, f64::storage_slice(s2, l2)?);
                Ok(CpuStorage::F64(fwd(x, w[0])))
            },
        )?;
        Ok((st, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &PReluBwdOp)?;
        let len = x.elem_count();
        Ok((
            Some(packed.narrow(0, 0, len)?.reshape(x.shape())?),
            Some(packed.narrow(0, len, 1)?),
        ))
    }
}

/// `(x, w, gy) → [dx, dw]` (see [`bwd`]).
#[derive(Clone, Copy, Debug)]
struct PReluBwdOp;

impl CustomOp3 for PReluBwdOp {
    fn name(&self) -> &'static str {
        "prelu-backward"
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
        let st = float_op(
            self.name(),
            s1,
            || {
                let x = f32::storage_slice(s1, l1)?;
                let (w, gy) = (f32::storage_slice(s2, l2)?, f32::storage_slice(s3, l3)?);
                Ok(CpuStorage::F32(bwd(x, w[0], gy)))
            },
            || {
                let x = f64::storage_slice(s1, l1)?;
                let (w, gy) = (f64::storage_slice(s2, l2)?, f64::storage_slice(s3, l3)?);
                Ok(CpuStorage::F64(bwd(x, w[0], gy)))
            },
        )?;
        Ok((st, Shape::from(l1.shape().elem_count() + 1)))
    }
}

/// PReLU of `x` (any shape) with the single slope `w [1]`: the fused op for
/// f32/f64 on the CPU, candle's composed ops elsewhere.
pub(crate) fn prelu(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let fused = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && w.dtype() == x.dtype();
    if fused {
        x.contiguous()?.apply_op2(&w.contiguous()?, PReluOp)
    } else {
        composed(x, w)
    }
}

/// `where(x > 0, x, w·x)` from candle ops (other devices and dtypes; the tests'
/// reference).
fn composed(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let w = w.reshape(vec![1; x.rank()])?;
    x.gt(0.0)?.where_cond(x, &x.broadcast_mul(&w)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn data(n: usize, seed: u32) -> Vec<f64> {
        // A deterministic mix of signs and magnitudes, with exact zeros.
        (0..n)
            .map(|i| {
                let k = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000;
                if k.is_multiple_of(97) {
                    0.0
                } else {
                    k as f64 / 250.0 - 2.0
                }
            })
            .collect()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// The fused op against the composed one: output, input and slope gradients,
    /// f32 over several chunks.
    #[test]
    fn fused_matches_composed() {
        let dev = Device::Cpu;
        let n = 3 * CHUNK + 17;
        let x = Tensor::from_vec(data(n, 1), (1, 1, 1, 1, n), &dev)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let probe = Tensor::from_vec(data(n, 2), (1, 1, 1, 1, n), &dev)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        let wv = Var::from_tensor(&Tensor::new(&[0.3f32], &dev).unwrap()).unwrap();
        let run = |f: fn(&Tensor, &Tensor) -> Result<Tensor>| {
            let y = f(xv.as_tensor(), wv.as_tensor()).unwrap();
            let g = (&y * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (y, g.get(&xv).unwrap().clone(), g.get(&wv).unwrap().clone())
        };
        let (y1, gx1, gw1) = run(prelu);
        let (y2, gx2, gw2) = run(composed);
        assert_eq!(max_diff(&y1, &y2), 0.0);
        assert_eq!(max_diff(&gx1, &gx2), 0.0);
        let gw = gw2.to_vec1::<f32>().unwrap()[0] as f64;
        assert!(
            max_diff(&gw1, &gw2) <= 1e-5 * gw.abs().max(1.0),
            "slope gradient"
        );
    }

    /// Input and slope gradients against central finite differences in f64.
    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let x0 = data(40, 3);
        let r = Tensor::from_vec(data(40, 4), 40, &dev).unwrap();
        let loss = |x: &[f64], w: f64| -> f64 {
            let x = Tensor::from_vec(x.to_vec(), 40, &dev).unwrap();
            let w = Tensor::new(&[w], &dev).unwrap();
            (prelu(&x, &w).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let w0 = -0.7;
        let xv = Var::from_tensor(&Tensor::from_vec(x0.clone(), 40, &dev).unwrap()).unwrap();
        let wv = Var::from_tensor(&Tensor::new(&[w0], &dev).unwrap()).unwrap();
        let g = (prelu(xv.as_tensor(), wv.as_tensor()).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx = g.get(&xv).unwrap().to_vec1::<f64>().unwrap();
        let gw = g.get(&wv).unwrap().to_vec1::<f64>().unwrap()[0];
        let h = 1e-6;
        for i in 0..40 {
            if x0[i].abs() < 1e-3 {
                continue; // the kink
            }
            let (mut p, mut m) = (x0.clone(), x0.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (loss(&p, w0) - loss(&m, w0)) / (2.0 * h);
            assert!((fd - gx[i]).abs() < 1e-6, "dx[{i}]: {fd} vs {}", gx[i]);
        }
        let fd = (loss(&x0, w0 + h) - loss(&x0, w0 - h)) / (2.0 * h);
        assert!((fd - gw).abs() < 1e-6, "dw: {fd} vs {gw}");
    }
}
