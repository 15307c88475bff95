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

    /// PyTorch's `torch.nn.init._calculate_fan_in_and_fan_out(w)[0]`:
    /// `w.size(1)` times the receptive field `∏ w.shape[2:]`.
    fn torch_fan_in(weight_shape: &[usize]) -> usize {
        weight_shape[1] * weight_shape[2..].iter().product::<usize>()
    }

    /// PyTorch's `ConvTranspose3d(cin, cout, k, groups=g).weight` shape.
    fn torch_conv_transpose3d_shape(
        cin: usize,
        cout: usize,
        g: usize,
        k: [usize; 3],
    ) -> Vec<usize> {
        vec![cin, cout / g, k[0], k[1], k[2]]
    }

    /// PyTorch's `Conv3d(cin, cout, k, groups=g).weight` shape.
    fn torch_conv3d_shape(cin: usize, cout: usize, g: usize, k: [usize; 3]) -> Vec<usize> {
        vec![cout, cin / g, k[0], k[1], k[2]]
    }

    /// The bound of `kaiming_uniform_(w, a=√5)`: `gain·√3/√fan_in` with
    /// `gain = √(2/(1 + a²))`; PyTorch's conv bias bound is `1/√fan_in` (the
    /// same number, computed here the other way).
    fn kaiming_bound(fan_in: usize) -> f64 {
        let a = 5f64.sqrt();
        let gain = (2.0 / (1.0 + a * a)).sqrt();
        gain * 3f64.sqrt() / (fan_in as f64).sqrt()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// All values within `±bound` (the f32 rounding of a draw may land on the
    /// rounded bound, not beyond it), and both tails reached: the largest
    /// value above `0.9·bound` and the smallest below `−0.9·bound`.
    fn assert_fills_bound(what: &str, v: &[f32], bound: f64) {
        let b = bound as f32;
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        assert!(
            lo >= -b && hi <= b,
            "{what}: values in [{lo}, {hi}] outside ±{b}"
        );
        assert!(
            hi > 0.9 * b && lo < -0.9 * b,
            "{what}: values in [{lo}, {hi}] do not fill ±{b} ({} draws)",
            v.len()
        );
    }

    /// `conv_transpose3d_weight` against PyTorch's `ConvTranspose3d` init:
    /// shape `[Cin, Cout/groups, kd, kh, kw]`, bound from `fan_in = Cout/groups·kd·kh·kw`
    /// (`w.size(1)·k³`, not the input channels) via the kaiming formula;
    /// seeded. More input than output channels, fewer (so a fan_in from the
    /// wrong channel count breaks the bound or the spread), a non-cubic
    /// kernel, and a grouped layer (the function takes the weight's dim 1,
    /// `Cout/groups`).
    #[test]
    fn conv_transpose3d_weight_seeded_and_bounded() -> Result<()> {
        let dev = Device::Cpu;
        // (Cin, Cout, groups, kernel)
        for (cin, cout, g, k) in [
            (8, 2, 1, [3, 3, 3]),
            (4, 16, 1, [2, 3, 4]),
            (6, 8, 2, [3, 3, 3]),
        ] {
            let what = format!("ConvTranspose3d({cin}, {cout}, {k:?}, groups={g})");
            let shape = torch_conv_transpose3d_shape(cin, cout, g, k);
            let bound = kaiming_bound(torch_fan_in(&shape));
            let draw = |seed| {
                conv_transpose3d_weight(
                    &mut ChaCha8Rng::seed_from_u64(seed),
                    cin,
                    cout / g,
                    k,
                    &dev,
                )
            };
            let (a, b, c) = (draw(3)?, draw(3)?, draw(4)?);
            assert_eq!(a.dims(), shape, "{what}: shape");
            let va = values(&a);
            assert_eq!(va, values(&b), "{what}: same seed, other values");
            assert_ne!(va, values(&c), "{what}: other seed, same values");
            assert_fills_bound(&what, &va, bound);
        }
        Ok(())
    }

    /// `conv_bias` with the `fan_in` PyTorch uses for the bias of each layer
    /// (that of its weight): bound `1/√fan_in`, seeded; a plain and a
    /// grouped `Conv3d` and a plain and a grouped `ConvTranspose3d`.
    #[test]
    fn conv_bias_seeded_and_bounded() -> Result<()> {
        let dev = Device::Cpu;
        // (layer, PyTorch weight shape, bias length Cout)
        for (what, shape, out_c) in [
            (
                "Conv3d(3, 300, 3)",
                torch_conv3d_shape(3, 300, 1, [3; 3]),
                300,
            ),
            (
                "Conv3d(8, 256, 3, groups=2)",
                torch_conv3d_shape(8, 256, 2, [3; 3]),
                256,
            ),
            (
                "ConvTranspose3d(16, 300, 2)",
                torch_conv_transpose3d_shape(16, 300, 1, [2; 3]),
                300,
            ),
            (
                "ConvTranspose3d(8, 400, (1, 2, 3), groups=4)",
                torch_conv_transpose3d_shape(8, 400, 4, [1, 2, 3]),
                400,
            ),
        ] {
            let fan_in = torch_fan_in(&shape);
            let bound = 1.0 / (fan_in as f64).sqrt();
            let draw = |seed| conv_bias(&mut ChaCha8Rng::seed_from_u64(seed), out_c, fan_in, &dev);
            let (a, b, c) = (draw(5)?, draw(5)?, draw(6)?);
            assert_eq!(a.dims(), [out_c], "{what}: shape");
            let va = values(&a);
            assert_eq!(va, values(&b), "{what}: same seed, other values");
            assert_ne!(va, values(&c), "{what}: other seed, same values");
            assert_fills_bound(what, &va, bound);
        }
        Ok(())
    }
}
