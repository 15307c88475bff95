//! The element types our CPU kernels are written for, and helpers that turn
//! candle storages into slices and back.

use crate::error::unsupported;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor, WithDType};
use std::mem::MaybeUninit;

/// Floating-point element type of the CPU kernels: `f32` (the training type)
/// and `f64` (used by the gradient checks, where finite differences need the
/// extra precision). Both are supported by the `gemm` crate.
pub(crate) trait Elem: WithDType {
    /// Negative infinity (padding value of max pooling).
    const NEG_INF: Self;
    /// Zero.
    const ZERO: Self;
}

impl Elem for f32 {
    const NEG_INF: Self = f32::NEG_INFINITY;
    const ZERO: Self = 0.0;
}

impl Elem for f64 {
    const NEG_INF: Self = f64::NEG_INFINITY;
    const ZERO: Self = 0.0;
}

/// The contiguous data of a storage/layout pair. Our public wrappers make every
/// input contiguous, so a strided layout here is an internal error.
pub(crate) fn contiguous<'a, T: Elem>(
    op: &'static str,
    s: &'a CpuStorage,
    l: &Layout,
) -> Result<&'a [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| unsupported(op, "non-contiguous layout reached the kernel"))?;
    Ok(&s.as_slice::<T>()?[a..b])
}

/// Calls `$body` with `$T` bound to the element type of the CPU storage `$s`
/// (f32 or f64); any other dtype is an error.
macro_rules! dispatch_float {
    ($op:expr, $s:expr, $T:ident => $body:expr) => {
        match $crate::elem::dtype_of($s) {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            other => Err($crate::error::unsupported(
                $op,
                format!("dtype {other:?} in the CPU kernel (only f32 and f64)"),
            )),
        }
    };
}
pub(crate) use dispatch_float;

/// The dtype `t` enters our ops in: f64 stays f64 on the CPU (f32 on CUDA),
/// f32 stays f32, and f16/bf16 stay half precision. Half-precision tensors
/// are converted to f32 inside the op ([`through_f32`]), so that the autograd
/// graph keeps them (the op's saved arguments and its result) in half
/// precision, as under PyTorch's autocast; the arithmetic is f32.
pub(crate) fn compute_dtype(t: &Tensor) -> DType {
    match t.dtype() {
        DType::F64 if t.device().is_cpu() => DType::F64,
        DType::F16 | DType::BF16 => t.dtype(),
        _ => DType::F32,
    }
}

/// The dtype of an op's parameters (weights of norms, PReLU slopes) for an
/// input entering in `dt`: half-precision inputs keep f32 parameters (the
/// op converts the input, so their gradients stay f32), otherwise `dt`.
pub(crate) fn param_dtype(dt: DType) -> DType {
    if is_half(dt) {
        DType::F32
    } else {
        dt
    }
}

/// f16 or bf16.
pub(crate) fn is_half(dt: DType) -> bool {
    matches!(dt, DType::F16 | DType::BF16)
}

/// Runs the f32/f64 kernel `f` on `inputs` of any float dtype: every f16/bf16
/// input is converted to a contiguous f32 copy for the call (transient, not
/// part of the autograd graph), and the result is converted to `out` (by
/// default the first input's dtype). Without half-precision inputs this is
/// `f(inputs)`. Generic over the backend, so the CPU and CUDA forwards of
/// every op share it.
pub(crate) fn through_f32<S: BackendStorage, const N: usize>(
    inputs: [(&S, &Layout); N],
    out: Option<DType>,
    f: impl FnOnce([(&S, &Layout); N]) -> Result<(S, Shape)>,
) -> Result<(S, Shape)> {
    let want = out.unwrap_or(inputs[0].0.dtype());
    if !inputs.iter().any(|(s, _)| is_half(s.dtype())) && !is_half(want) {
        return f(inputs);
    }
    let mut owned: [Option<(S, Layout)>; N] = std::array::from_fn(|_| None);
    for (o, (s, l)) in owned.iter_mut().zip(inputs) {
        if is_half(s.dtype()) {
            *o = Some((s.to_dtype(l, DType::F32)?, Layout::contiguous(l.shape())));
        }
    }
    let refs: [(&S, &Layout); N] = std::array::from_fn(|i| match &owned[i] {
        Some((s, l)) => (s, l),
        None => inputs[i],
    });
    let (res, shape) = f(refs)?;
    if res.dtype() == want {
        return Ok((res, shape));
    }
    let res = res.to_dtype(&Layout::contiguous(shape.clone()), want)?;
    Ok((res, shape))
}

/// Casts to the compute dtype and makes the tensor contiguous.
pub(crate) fn prepare(t: &Tensor, dtype: DType) -> Result<Tensor> {
    t.to_dtype(dtype)?.contiguous()
}

/// A raw pointer that may be shared between rayon tasks that write disjoint
/// parts of one buffer. Every use documents why the parts are disjoint.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the Send wrapper).
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}
// SAFETY: only used for buffers whose regions written by different tasks are
// disjoint (see each call site).
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

/// Dims of a 5-D tensor, or a shape error that names `what`.
pub(crate) fn dims5(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 5]> {
    match *t.dims() {
        [a, b, c, d, e] => Ok([a, b, c, d, e]),
        _ => Err(crate::error::shape_err(
            op,
            format!(
                "{what} must be 5-D [N, C, D, H, W], got rank {} shape {:?}",
                t.rank(),
                t.dims()
            ),
        )),
    }
}

/// The dtype of a CPU storage.
pub(crate) fn dtype_of(s: &CpuStorage) -> DType {
    candle_core::backend::BackendStorage::dtype(s)
}

/// An error naming `op` and the dtypes unless every storage has the same
/// dtype (the kernels run in one element type).
pub(crate) fn same_dtype(op: &'static str, storages: &[&CpuStorage]) -> Result<()> {
    let dtypes: Vec<DType> = storages.iter().map(|s| dtype_of(s)).collect();
    if dtypes.windows(2).any(|w| w[0] != w[1]) {
        return Err(crate::error::unsupported(
            op,
            format!("mixed dtypes {dtypes:?}"),
        ));
    }
    Ok(())
}

/// Wraps kernel output into a CPU storage.
pub(crate) fn storage<T: Elem>(v: Vec<T>) -> CpuStorage {
    T::to_cpu_storage_owned(v)
}

/// A vector of `len` elements written by `init` into uninitialised memory.
/// Volume-sized results use it instead of `vec![0; len]`: once freed memory is
/// reused (see [`crate::alloc`]) that zero fill is a full extra pass.
///
/// # Safety
/// `init` must write every one of the `len` elements of the slice it gets.
pub(crate) unsafe fn written_vec<T>(
    len: usize,
    init: impl FnOnce(&mut [MaybeUninit<T>]),
) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    init(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees that `init` initialised all `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Writes zeros over a freshly allocated (zeroed) gradient plane before it is
/// scatter-added into: the first touch of each page is then a write (one page
/// fault, in the task that owns the plane) instead of a read that maps the
/// shared zero page followed by a write that copies it (two faults).
pub(crate) fn first_touch<T: Elem>(plane: &mut [T]) {
    plane.fill(T::ZERO);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal dtypes pass; a mixed set is refused with the op and the dtypes named.
    #[test]
    fn same_dtype_names_the_mixture() {
        let (a, b) = (CpuStorage::F32(vec![1.0]), CpuStorage::F32(vec![2.0]));
        let c = CpuStorage::F64(vec![3.0]);
        assert!(same_dtype("op", &[&a, &b]).is_ok());
        let msg = same_dtype("conv3d", &[&a, &b, &c]).unwrap_err().to_string();
        assert!(
            msg.contains("conv3d") && msg.contains("mixed dtypes [F32, F32, F64]"),
            "{msg}"
        );
    }
}
