//! Intensity normalisation of the input channels (`docs/method/preprocessing.md` §2).
//!
//! Channel 0 is the CT, either clipped to a HU window and scaled to [0, 1]
//! (the study's choice, default window [−154, 325] HU) or min–max scaled per
//! volume (the reference code's choice). Channel 1 is the PET in raw SUV:
//! no normalisation at all, because SUV is already a physical unit.

use serde::{Deserialize, Serialize};

use crate::error::{AugmentError, Result};

/// How the CT channel is scaled to the network's input range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CtNormalisation {
    /// Clip to `[lower_hu, upper_hu]`, then map linearly to [0, 1].
    Window {
        /// Lower HU bound (maps to 0).
        lower_hu: f32,
        /// Upper HU bound (maps to 1).
        upper_hu: f32,
    },
    /// `(x − min) / (max − min)` over the whole volume; a constant volume maps to 0.
    MinMax,
}

impl Default for CtNormalisation {
    /// The study's window: [−154, 325] HU.
    fn default() -> Self {
        CtNormalisation::Window {
            lower_hu: -154.0,
            upper_hu: 325.0,
        }
    }
}

impl CtNormalisation {
    /// Checks the window bounds.
    pub fn validate(&self) -> Result<()> {
        if let CtNormalisation::Window { lower_hu, upper_hu } = *self {
            if !(lower_hu.is_finite() && upper_hu.is_finite() && upper_hu > lower_hu) {
                return Err(AugmentError::Config(format!(
                    "CT window [{lower_hu}, {upper_hu}] HU: need finite bounds with upper > lower"
                )));
            }
        }
        Ok(())
    }

    /// Normalises CT values in place. Non-finite values become 0.
    pub fn apply(&self, hu: &mut [f32]) {
        match *self {
            CtNormalisation::Window { lower_hu, upper_hu } => {
                let scale = 1.0 / (upper_hu - lower_hu);
                for v in hu.iter_mut() {
                    *v = if v.is_finite() {
                        (v.clamp(lower_hu, upper_hu) - lower_hu) * scale
                    } else {
                        0.0
                    };
                }
            }
            CtNormalisation::MinMax => {
                let (lo, hi) = hu
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    });
                let range = hi - lo;
                for v in hu.iter_mut() {
                    *v = if v.is_finite() && range > 0.0 {
                        (*v - lo) / range
                    } else {
                        0.0
                    };
                }
            }
        }
    }

    /// The normalised value of air (−1000 HU), used to pad CT patches
    /// outside the volume: 0 for both modes (the window clips air to its
    /// lower bound; min–max maps the minimum, normally air, to 0).
    pub fn pad_value(&self) -> f32 {
        0.0
    }
}

/// Replaces non-finite PET values by 0 (raw SUV is otherwise kept).
pub fn sanitise_suv(suv: &mut [f32]) {
    for v in suv.iter_mut() {
        if !v.is_finite() {
            *v = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_maps_bounds_to_unit_interval() {
        let mut v = vec![-1000.0, -154.0, 85.5, 325.0, 2000.0, f32::NAN];
        CtNormalisation::default().apply(&mut v);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[1], 0.0);
        assert!((v[2] - 0.5).abs() < 1e-6);
        assert_eq!(v[3], 1.0);
        assert_eq!(v[4], 1.0);
        assert_eq!(v[5], 0.0);
    }

    #[test]
    fn min_max_scales_to_unit_interval_and_handles_constant() {
        let mut v = vec![-1000.0, 0.0, 1000.0];
        CtNormalisation::MinMax.apply(&mut v);
        assert_eq!(v, vec![0.0, 0.5, 1.0]);
        let mut c = vec![3.0; 4];
        CtNormalisation::MinMax.apply(&mut c);
        assert_eq!(c, vec![0.0; 4]);
    }

    #[test]
    fn bad_window_is_refused() {
        let w = CtNormalisation::Window {
            lower_hu: 10.0,
            upper_hu: -10.0,
        };
        assert!(w.validate().is_err());
    }
}
