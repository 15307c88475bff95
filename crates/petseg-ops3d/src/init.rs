//! Seeded weight initialisation matching PyTorch's defaults for `Conv3d` and
//! `ConvTranspose3d`. candle's CPU RNG cannot be seeded, so every draw comes
//! from a caller-owned [`ChaCha8Rng`]: the same seed gives the same weights on
//! every machine and device.
//!
//! PyTorch initialises conv weights with `kaiming_uniform_(a = √5)`, i.e.
//! `U(−b, b)` with `b = gain·√3/√fan_in = 1/√fan_in` (gain = √(2/(1+5))), and
//! biases with `U(−1/√fan_in, 1/√fan_in)`. `fan_in` is `weight.size(1)·k³`:
//! input channels per group for `Conv3d`, **output** channels for
//! `ConvTranspose3d` (whose weight is `[Cin, Cout, k…]`).

use crate::error::config_err;
use candle_core::{Device, Result, Tensor};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// An f32 tensor of `shape` with entries drawn from `U(−bound, bound)` in
/// row-major order.
pub fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], bound: f64, dev: &Device) -> Result<Tensor> {
    if !(bound.is_finite() && bound >= 0.0) {
        return Err(config_err(
            "init::uniform",
            format!("bound = {bound} must be finite and ≥ 0"),
        ));
    }
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Tensor::from_vec(data, shape, dev)
}

fn fan_bound(op: &'static str, fan_in: usize) -> Result<f64> {
    if fan_in == 0 {
        return Err(config_err(
            op,
            "fan_in is 0 (a zero-sized channel count or kernel)",
        ));
    }
    Ok(1.0 / (fan_in as f64).sqrt())
}

/// `Conv3d` weight `[out_c, in_c_per_group, kd, kh, kw]`, `U(±1/√fan_in)` with
/// `fan_in = in_c_per_group·kd·kh·kw`.
pub fn conv3d_weight(
    rng: &mut ChaCha8Rng,
    out_c: usize,
    in_c_per_group: usize,
    k: [usize; 3],
    dev: &Device,
) -> Result<Tensor> {
    let b = fan_bound(
        "init::conv3d_weight",
        in_c_per_group * k.iter().product::<usize>(),
    )?;
    uniform(rng, &[out_c, in_c_per_group, k[0], k[1], k[2]], b, dev)
}

/// `ConvTranspose3d` weight `[in_c, out_c, kd, kh, kw]`, `U(±1/√fan_in)` with
/// PyTorch's `fan_in = weight.size(1)·k³ = out_c·kd·kh·kw`.
pub fn conv_transpose3d_weight(
    rng: &mut ChaCha8Rng,
    in_c: usize,
    out_c: usize,
    k: [usize; 3],
    dev: &Device,
) -> Result<Tensor> {
    let b = fan_bound(
        "init::conv_transpose3d_weight",
        out_c * k.iter().product::<usize>(),
    )?;
    uniform(rng, &[in_c, out_c, k[0], k[1], k[2]], b, dev)
}

/// Bias `[out_c]`, `U(±1/√fan_in)`; pass the same `fan_in` as the weight's.
pub fn conv_bias(
    rng: &mut ChaCha8Rng,
    out_c: usize,
    fan_in: usize,
    dev: &Device,
) -> Result<Tensor> {
    let b = fan_bound("init::conv_bias", fan_in)?;
    uniform(rng, &[out_c], b, dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn seeded_and_bounded() -> Result<()> {
        let dev = Device::Cpu;
        let a = conv3d_weight(&mut ChaCha8Rng::seed_from_u64(7), 4, 3, [3, 3, 3], &dev)?;
        let b = conv3d_weight(&mut ChaCha8Rng::seed_from_u64(7), 4, 3, [3, 3, 3], &dev)?;
        let c = conv3d_weight(&mut ChaCha8Rng::seed_from_u64(8), 4, 3, [3, 3, 3], &dev)?;
        assert_eq!(a.dims(), [4, 3, 3, 3, 3]);
        let (va, vb, vc) = (
            a.flatten_all()?.to_vec1::<f32>()?,
            b.flatten_all()?.to_vec1::<f32>()?,
            c.flatten_all()?.to_vec1::<f32>()?,
        );
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        let bound = 1.0 / 81f32.sqrt();
        assert!(va.iter().all(|v| v.abs() <= bound));
        // spread: the maximum magnitude is close to the bound for 324 draws
        assert!(va.iter().fold(0f32, |m, v| m.max(v.abs())) > 0.9 * bound);
        let t = conv_transpose3d_weight(&mut ChaCha8Rng::seed_from_u64(1), 8, 2, [3, 3, 3], &dev)?;
        assert_eq!(t.dims(), [8, 2, 3, 3, 3]);
        let bt = 1.0 / 54f32.sqrt();
        assert!(t
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.abs() <= bt));
        assert!(conv_bias(&mut ChaCha8Rng::seed_from_u64(1), 3, 0, &dev).is_err());
        Ok(())
    }
}
