//! Class-index labels: decoding and validation.
//!
//! Labels are a `[B, 1, *spatial]` tensor of integer class indices in `0..C` (C = number of
//! logit channels). Any integer dtype (u8, u32, i16, i32, i64) or float dtype (f16, bf16, f32,
//! f64) holding whole numbers is accepted; anything else (a fraction, a negative value, an
//! index ≥ C, NaN) is an error naming the value and its flat index.

use std::borrow::Cow;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout};

use crate::error::LossError;

/// Decodes contiguous label storage into one `u8` class index per voxel; valid u8 labels are
/// borrowed, not copied.
pub(crate) fn decode<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    classes: usize,
) -> Result<Cow<'a, [u8]>, LossError> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| LossError::Shape {
            what: "labels",
            shape: layout.dims().to_vec(),
            expected: "a contiguous tensor".into(),
        })?;
    let bad = |index: usize, value: String| LossError::Label {
        value,
        index,
        classes,
    };
    fn ints<T: Copy + Into<i64> + ToString>(
        v: &[T],
        classes: usize,
        bad: impl Fn(usize, String) -> LossError,
    ) -> Result<Vec<u8>, LossError> {
        v.iter()
            .enumerate()
            .map(|(i, &x)| {
                let c: i64 = x.into();
                if (0..classes as i64).contains(&c) {
                    Ok(c as u8)
                } else {
                    Err(bad(i, x.to_string()))
                }
            })
            .collect()
    }
    fn floats(
        v: impl Iterator<Item = f64>,
        classes: usize,
        bad: impl Fn(usize, String) -> LossError,
    ) -> Result<Vec<u8>, LossError> {
        v.enumerate()
            .map(|(i, x)| {
                if x >= 0.0 && x < classes as f64 && x.fract() == 0.0 {
                    Ok(x as u8)
                } else {
                    Err(bad(i, x.to_string()))
                }
            })
            .collect()
    }
    let owned = match storage {
        // the common case: one vectorised scan (a max, which unlike `all` does not stop
        // early and so vectorises), no copy
        CpuStorage::U8(v)
            if usize::from(v[start..end].iter().copied().max().unwrap_or(0)) < classes =>
        {
            return Ok(Cow::Borrowed(&v[start..end]));
        }
        CpuStorage::U8(v) => ints(&v[start..end], classes, bad),
        CpuStorage::U32(v) => ints(&v[start..end], classes, bad),
        CpuStorage::I16(v) => ints(&v[start..end], classes, bad),
        CpuStorage::I32(v) => ints(&v[start..end], classes, bad),
        CpuStorage::I64(v) => ints(&v[start..end], classes, bad),
        CpuStorage::F32(v) => floats(v[start..end].iter().map(|&x| x as f64), classes, bad),
        CpuStorage::F64(v) => floats(v[start..end].iter().copied(), classes, bad),
        CpuStorage::F16(v) => floats(v[start..end].iter().map(|x| x.to_f64()), classes, bad),
        CpuStorage::BF16(v) => floats(v[start..end].iter().map(|x| x.to_f64()), classes, bad),
        other => Err(LossError::DType {
            what: "labels",
            dtype: other.dtype().as_str().to_string(),
            expected: "u8, u32, i16, i32, i64, f16, bf16, f32 or f64 class indices",
        }),
    };
    owned.map(Cow::Owned)
}
