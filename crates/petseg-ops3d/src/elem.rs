//! The element types our CPU kernels are written for, and helpers that turn
//! candle storages into slices and back.

use crate::error::unsupported;
use candle_core::{CpuStorage, DType, Layout, Result, Tensor, WithDType};
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

/// The dtype our kernels compute in for `t`: f64 stays f64 on the CPU,
/// everything else (f16, bf16, and f64 on CUDA) is computed in f32.
pub(crate) fn compute_dtype(t: &Tensor) -> DType {
    if t.dtype() == DType::F64 && t.device().is_cpu() {
        DType::F64
    } else {
        DType::F32
    }
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
