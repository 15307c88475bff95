//! Per-channel batch statistics for BatchNorm's running averages, computed in one
//! parallel pass per channel on the CPU (candle's reductions are single-threaded and the
//! composed version needs four full-size passes and two temporaries).

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `[C, M]` → `[C, 2]`: each channel's mean and unbiased variance (two-pass, in f64).
struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "batch_norm_channel_stats"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (c, m) = layout.shape().dims2()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: input must be contiguous", self.name())
        };
        let data = &storage.as_slice::<f32>()?[start..end];
        let stats: Vec<f32> = data
            .par_chunks(m)
            .flat_map_iter(|row| {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
                let ss = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>();
                [mean as f32, (ss / (m - 1) as f64) as f32]
            })
            .collect();
        Ok((CpuStorage::F32(stats), Shape::from((c, 2))))
    }
}

/// Mean and unbiased variance (`[C]` each, f32) of every row of `x [C, M]`, `M ≥ 2`.
/// Not differentiable (the running statistics take no gradient).
pub(crate) fn channel_mean_var(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (_, m) = x.dims2()?;
    if matches!(x.device(), Device::Cpu) {
        let x = x.detach().to_dtype(DType::F32)?.contiguous()?;
        let stats = x.apply_op1_no_bwd(&ChannelStats)?;
        return Ok((
            stats.narrow(1, 0, 1)?.squeeze(1)?,
            stats.narrow(1, 1, 1)?.squeeze(1)?,
        ));
    }
    let x = x.detach().to_dtype(DType::F32)?;
    let mean = x.mean_keepdim(1)?;
    let var = (x.broadcast_sub(&mean)?.sqr()?.sum(1)? / (m - 1) as f64)?;
    Ok((mean.squeeze(1)?, var))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_composed_statistics() {
        let x = (Tensor::randn(0f32, 3.0, (5, 1000), &Device::Cpu).unwrap() + 2.0).unwrap();
        let (mean, var) = channel_mean_var(&x).unwrap();
        let ref_mean = x.mean_keepdim(1).unwrap();
        let ref_var = (x
            .broadcast_sub(&ref_mean)
            .unwrap()
            .sqr()
            .unwrap()
            .sum(1)
            .unwrap()
            / 999.0)
            .unwrap();
        let d = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        assert!(d(&mean, &ref_mean.squeeze(1).unwrap()) < 1e-5);
        assert!(d(&var, &ref_var) < 1e-4);
        let v: Vec<f32> = var.to_vec1().unwrap();
        assert!(v.iter().all(|&s| (s - 9.0).abs() < 1.5), "{v:?}");
    }
}
