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
