//! Plumbing shared by the models' fused CPU custom ops (`affine`, `gate`).

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// The values of a contiguous CPU tensor; `op` names the custom op in the
/// error for a non-contiguous layout.
pub(crate) fn contiguous_slice<'a, T: WithDType>(
    op: &str,
    s: &'a CpuStorage,
    l: &Layout,
) -> Result<&'a [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: non-contiguous input")))?;
    Ok(&s.as_slice::<T>()?[a..b])
}

/// Runs the f32 or f64 instance of a kernel (`$T` is bound to the element
/// type); other dtypes are an error naming the op `$op`.
macro_rules! float_dispatch {
    ($op:expr, $s:expr, $T:ident => $body:expr) => {
        match candle_core::backend::BackendStorage::dtype($s) {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            other => Err(candle_core::Error::Msg(format!(
                "{}: dtype {other:?} (only f32 and f64 on the CPU)",
                $op
            ))),
        }
    };
}
pub(crate) use float_dispatch;

/// Helpers shared by the fused ops' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{DType, Device, Tensor, Var};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Values uniform in [−2, 2) from `seed`, as a CPU tensor of `dtype`.
    pub(crate) fn rand_t(seed: u64, shape: &[usize], dtype: DType) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 4.0 - 2.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    /// Checks the gradient of `Σ op(ins) · r` with respect to every f64
    /// input against central finite differences (step 1e-6, tolerance 1e-6
    /// relative); `label` names the case in a failure.
    pub(crate) fn check_finite_differences(
        op: &dyn Fn(&[Tensor]) -> Tensor,
        ins: &[Tensor],
        r: &Tensor,
        label: &str,
    ) {
        let loss =
            |t: &[Tensor]| -> f64 { (op(t) * r).unwrap().sum_all().unwrap().to_scalar().unwrap() };
        let vars: Vec<Var> = ins.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let grads = (op(&ts) * r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let h = 1e-6;
        for (k, v) in vars.iter().enumerate() {
            let g = grads
                .get(v)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let base = ins[k].flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for i in 0..base.len() {
                let shifted = |d: f64| {
                    let mut b = base.clone();
                    b[i] += d;
                    let mut t = ins.to_vec();
                    t[k] = Tensor::from_vec(b, ins[k].dims(), &Device::Cpu).unwrap();
                    loss(&t)
                };
                let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() < 1e-6 * fd.abs().max(1.0),
                    "{label}: input {k}[{i}]: {fd} vs {}",
                    g[i]
                );
            }
        }
    }
}
