//! Sliding-window inference with MONAI's exact semantics
//! (`monai.inferers.sliding_window_inference`, MONAI 1.6.1).
//!
//! * Volumes smaller than the roi along an axis are padded with `cval`
//!   (`diff // 2` before, the rest after) and the output is cropped back.
//! * Windows start every `int(roi · (1 − overlap))` voxels (at least 1; the
//!   roi itself when the roi equals the image size); the last window along an
//!   axis is moved back so that it ends at the border (`dense_patch_slices`).
//! * Each window's output is multiplied by the importance map (all ones, or
//!   a separable Gaussian with σ = `sigma_scale · roi`, clamped below at
//!   `max(min, 1e-3)`, computed in f32 as `compute_importance_map` does) and
//!   added to an f32 accumulator on the CPU; the accumulated weights divide
//!   the sum at the end.
//!
//! The accumulators live in host memory whatever device runs the network,
//! so memory does not grow with the device (`docs/method/inference.md` §2).

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// How overlapping window outputs are blended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlendMode {
    /// Equal weight everywhere in a window.
    Constant,
    /// Gaussian weight, lower near the window's edges.
    Gaussian,
}

impl std::str::FromStr for BlendMode {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(BlendMode::Constant),
            "gaussian" => Ok(BlendMode::Gaussian),
            _ => Err(TrainError::Config(format!(
                "blend mode {s:?}: expected \"constant\" or \"gaussian\""
            ))),
        }
    }
}

/// Sliding-window settings (`docs/method/inference.md` §2; study: roi 128³,
/// overlap 0.25, Gaussian).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlidingWindowConfig {
    /// Window size in voxels along i, j, k.
    pub roi: [usize; 3],
    /// Fraction of the roi shared by neighbouring windows, in [0, 1).
    pub overlap: f64,
    /// Blending of overlapping windows.
    pub mode: BlendMode,
    /// σ of the Gaussian as a fraction of the roi.
    pub sigma_scale: f64,
    /// Windows per network call.
    pub sw_batch_size: usize,
    /// Value padded around inputs smaller than the roi.
    pub cval: f32,
}

impl Default for SlidingWindowConfig {
    fn default() -> Self {
        SlidingWindowConfig {
            roi: [128; 3],
            overlap: 0.25,
            mode: BlendMode::Gaussian,
            sigma_scale: 0.125,
            sw_batch_size: 1,
            cval: 0.0,
        }
    }
}

impl SlidingWindowConfig {
    /// Checks the roi, overlap, σ and batch size.
    pub fn validate(&self) -> Result<()> {
        if self.roi.contains(&0) {
            return Err(TrainError::Config(format!(
                "roi {:?}: every axis must be > 0",
                self.roi
            )));
        }
        if !(0.0..1.0).contains(&self.overlap) {
            return Err(TrainError::Config(format!(
                "overlap {}: must be >= 0 and < 1",
                self.overlap
            )));
        }
        if !(self.sigma_scale.is_finite() && self.sigma_scale > 0.0) {
            return Err(TrainError::Config(format!(
                "sigma_scale {}: must be > 0",
                self.sigma_scale
            )));
        }
        if self.sw_batch_size == 0 {
            return Err(TrainError::Config("sw_batch_size must be >= 1".into()));
        }
        Ok(())
    }
}

/// MONAI's `compute_importance_map` for a 3-D window, C order `(i, j, k)`.
pub fn importance_map(roi: [usize; 3], mode: BlendMode, sigma_scale: f64) -> Vec<f32> {
    let n: usize = roi.iter().product();
    let mut map = match mode {
        BlendMode::Constant => vec![1f32; n],
        BlendMode::Gaussian => {
            let axis = |p: usize| -> Vec<f32> {
                let sigma = (p as f64 * sigma_scale) as f32;
                (0..p)
                    .map(|t| {
                        let x = -((p as f32) - 1.0) / 2.0 + t as f32;
                        (x * x / (-2.0 * sigma * sigma)).exp()
                    })
                    .collect()
            };
            let (a, b, c) = (axis(roi[0]), axis(roi[1]), axis(roi[2]));
            let mut m = Vec::with_capacity(n);
            for &x in &a {
                for &y in &b {
                    let xy = x * y;
                    for &z in &c {
                        m.push(xy * z);
                    }
                }
            }
            m
        }
    };
    let min = map.iter().copied().fold(f32::INFINITY, f32::min).max(1e-3);
    map.iter_mut().for_each(|v| *v = v.max(min));
    map
}

/// Window start positions along one axis (MONAI `dense_patch_slices`).
pub fn window_starts(image: usize, roi: usize, overlap: f64) -> Vec<usize> {
    let interval = if roi == image {
        roi
    } else {
        ((roi as f64) * (1.0 - overlap)) as usize
    }
    .max(1);
    let num = image.div_ceil(interval);
    let count = (0..num)
        .find(|d| d * interval + roi >= image)
        .map_or(1, |d| d + 1);
    (0..count)
        .map(|d| {
            let s = d * interval;
            s - (s + roi).saturating_sub(image)
        })
        .collect()
}

/// Runs `predictor` over sliding windows of a `[C, ni, nj, nk]` C-order
/// input and returns the blended `[K, ni, nj, nk]` output.
///
/// `predictor(windows, n)` receives `n` windows as `[n, C, ri, rj, rk]`
/// and returns `[n, K, ri, rj, rk]`; `out_channels` is `K`.
pub fn sliding_window_inference<F>(
    input: &[f32],
    channels: usize,
    shape: [usize; 3],
    out_channels: usize,
    cfg: &SlidingWindowConfig,
    mut predictor: F,
) -> Result<Vec<f32>>
where
    F: FnMut(&[f32], usize) -> Result<Vec<f32>>,
{
    cfg.validate()?;
    let n_in: usize = shape.iter().product();
    if input.len() != channels * n_in || n_in == 0 {
        return Err(TrainError::Shape(format!(
            "sliding window input has {} values, expected {channels} × {shape:?}",
            input.len()
        )));
    }
    // Pad to at least the roi (MONAI: half = diff // 2 before).
    let roi = cfg.roi;
    let size: [usize; 3] = std::array::from_fn(|a| shape[a].max(roi[a]));
    let before: [usize; 3] = std::array::from_fn(|a| (size[a] - shape[a]) / 2);
    let n_img: usize = size.iter().product();
    let padded;
    let img: &[f32] = if size == shape {
        input
    } else {
        let mut p = vec![cfg.cval; channels * n_img];
        for c in 0..channels {
            for i in 0..shape[0] {
                for j in 0..shape[1] {
                    let src = ((c * shape[0] + i) * shape[1] + j) * shape[2];
                    let dst = ((c * size[0] + i + before[0]) * size[1] + j + before[1]) * size[2]
                        + before[2];
                    p[dst..dst + shape[2]].copy_from_slice(&input[src..src + shape[2]]);
                }
            }
        }
        padded = p;
        &padded
    };
    let starts: Vec<[usize; 3]> = {
        let s: [Vec<usize>; 3] =
            std::array::from_fn(|a| window_starts(size[a], roi[a], cfg.overlap));
        let mut v = Vec::new();
        for &i in &s[0] {
            for &j in &s[1] {
                for &k in &s[2] {
                    v.push([i, j, k]);
                }
            }
        }
        v
    };
    let weight = importance_map(roi, cfg.mode, cfg.sigma_scale);
    let n_roi: usize = roi.iter().product();
    let mut out = vec![0f32; out_channels * n_img];
    let mut count = vec![0f32; n_img];
    for s in &starts {
        for_each_window_row(roi, size, *s, |roi_off, img_off| {
            for k in 0..roi[2] {
                count[img_off + k] += weight[roi_off + k];
            }
        });
    }
    for batch in starts.chunks(cfg.sw_batch_size) {
        let mut win = vec![0f32; batch.len() * channels * n_roi];
        for (b, s) in batch.iter().enumerate() {
            for c in 0..channels {
                let (src_c, dst_c) = (c * n_img, (b * channels + c) * n_roi);
                for_each_window_row(roi, size, *s, |roi_off, img_off| {
                    win[dst_c + roi_off..dst_c + roi_off + roi[2]]
                        .copy_from_slice(&img[src_c + img_off..src_c + img_off + roi[2]]);
                });
            }
        }
        let pred = predictor(&win, batch.len())?;
        if pred.len() != batch.len() * out_channels * n_roi {
            return Err(TrainError::Shape(format!(
                "predictor returned {} values for {} windows, expected {} × {out_channels} × {roi:?}",
                pred.len(),
                batch.len(),
                batch.len()
            )));
        }
        for (b, s) in batch.iter().enumerate() {
            for c in 0..out_channels {
                let (src_c, dst_c) = ((b * out_channels + c) * n_roi, c * n_img);
                for_each_window_row(roi, size, *s, |roi_off, img_off| {
                    for k in 0..roi[2] {
                        out[dst_c + img_off + k] += pred[src_c + roi_off + k] * weight[roi_off + k];
                    }
                });
            }
        }
    }
    for c in 0..out_channels {
        for (o, w) in out[c * n_img..(c + 1) * n_img].iter_mut().zip(&count) {
            *o /= *w;
        }
    }
    if size == shape {
        return Ok(out);
    }
    let mut cropped = vec![0f32; out_channels * n_in];
    for c in 0..out_channels {
        for i in 0..shape[0] {
            for j in 0..shape[1] {
                let dst = ((c * shape[0] + i) * shape[1] + j) * shape[2];
                let src =
                    ((c * size[0] + i + before[0]) * size[1] + j + before[1]) * size[2] + before[2];
                cropped[dst..dst + shape[2]].copy_from_slice(&out[src..src + shape[2]]);
            }
        }
    }
    Ok(cropped)
}

/// Calls `f(roi_offset, image_offset)` for each k-row of a window at `start`.
fn for_each_window_row(
    roi: [usize; 3],
    size: [usize; 3],
    start: [usize; 3],
    mut f: impl FnMut(usize, usize),
) {
    for i in 0..roi[0] {
        for j in 0..roi[1] {
            let roi_off = (i * roi[1] + j) * roi[2];
            let img_off = ((start[0] + i) * size[1] + start[1] + j) * size[2] + start[2];
            f(roi_off, img_off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_follow_monai() {
        // MONAI dense_patch_slices values for these sizes.
        assert_eq!(window_starts(20, 8, 0.25), vec![0, 6, 12]);
        assert_eq!(window_starts(20, 8, 0.5), vec![0, 4, 8, 12]);
        assert_eq!(window_starts(8, 8, 0.5), vec![0]);
        assert_eq!(window_starts(17, 8, 0.25), vec![0, 6, 9]);
    }

    #[test]
    fn identity_predictor_is_reproduced_with_padding() {
        let shape = [7, 9, 5];
        let x: Vec<f32> = (0..2 * 7 * 9 * 5).map(|v| v as f32 * 0.01).collect();
        let cfg = SlidingWindowConfig {
            roi: [4, 4, 8],
            overlap: 0.5,
            mode: BlendMode::Gaussian,
            sw_batch_size: 3,
            ..Default::default()
        };
        let y = sliding_window_inference(&x, 2, shape, 2, &cfg, |w, _| Ok(w.to_vec())).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
