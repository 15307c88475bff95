//! Turning label volumes into binary masks, with an explicit policy.

use crate::error::{EvalError, Result};

/// How values other than 0 and 1 in a mask are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinarizePolicy {
    /// Only 0 and 1 are accepted; anything else is an error that names the
    /// first offending voxel (the default: a probability map or a
    /// multi-class label passed by mistake is caught, not silently merged).
    #[default]
    Strict,
    /// Every value `> 0` is foreground (multi-class labels are merged into
    /// one lesion class; NaN and negative values are background).
    Positive,
}

/// Binary mask (0/1 bytes, raster order) from `values` of a grid of `shape`.
/// `what` names the input in errors (e.g. the file).
pub fn binarize<T: Copy + Into<f64>>(
    values: &[T],
    shape: [usize; 3],
    policy: BinarizePolicy,
    what: &str,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len());
    let mut bad = 0usize;
    let mut first: Option<(usize, f64)> = None;
    for (idx, &v) in values.iter().enumerate() {
        let x: f64 = v.into();
        if x != 0.0 && x != 1.0 {
            bad += 1;
            if first.is_none() {
                first = Some((idx, x));
            }
        }
        out.push(u8::from(x > 0.0));
    }
    if policy == BinarizePolicy::Strict {
        if let Some((idx, x)) = first {
            let [ni, nj, _] = shape;
            return Err(EvalError::NonBinary {
                what: what.to_string(),
                count: bad,
                first: x,
                at: [idx % ni, (idx / ni) % nj, idx / (ni * nj)],
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_refuses_labels_other_than_0_1() {
        let v = [0u8, 1, 2, 0, 1, 0];
        let err = binarize(&v, [3, 2, 1], BinarizePolicy::Strict, "gt.nii.gz").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("gt.nii.gz") && msg.contains("[2, 0, 0]"),
            "{msg}"
        );
        let ok = binarize(&v, [3, 2, 1], BinarizePolicy::Positive, "gt").unwrap();
        assert_eq!(ok, vec![0, 1, 1, 0, 1, 0]);
    }

    #[test]
    fn float_masks_and_nan() {
        let v = [0.0f32, 1.0, 0.5, f32::NAN, -1.0];
        assert!(binarize(&v, [5, 1, 1], BinarizePolicy::Strict, "p").is_err());
        let ok = binarize(&v, [5, 1, 1], BinarizePolicy::Positive, "p").unwrap();
        assert_eq!(ok, vec![0, 1, 1, 0, 0]);
    }
}
