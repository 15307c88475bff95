//! Times the three convolution kernels (forward, input gradient, weight
//! gradient) separately, in wall time and process CPU time, to see where a
//! conv3d forward+backward spends its time.
//!
//! usage: cargo run --release -p petseg-ops3d --example conv_parts -- [C] [O] [SIZE] [STRIDE] [K]

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use petseg_ops3d::{conv3d, Conv3dConfig};
use std::time::Instant;

/// User + system CPU seconds of this process (from /proc/self/stat).
fn cpu_seconds() -> Result<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    let f: Vec<&str> = s
        .rsplit_once(')')
        .context("malformed stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn main() -> Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .context("integers")?;
    let arg = |i: usize, d: usize| a.get(i).copied().unwrap_or(d);
    let (c, o, s, stride, k) = (arg(0, 16), arg(1, 16), arg(2, 96), arg(3, 1), arg(4, 3));
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, c, s, s, s), &dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, (o, c, k, k, k), &dev)?)?;
    let cfg = Conv3dConfig {
        stride: [stride; 3],
        padding: [k / 2; 3],
        ..Default::default()
    };
    for rep in 0..3 {
        let (c0, t0) = (cpu_seconds()?, Instant::now());
        let y = conv3d(x.as_tensor(), w.as_tensor(), None, &cfg)?;
        let (c1, t1) = (cpu_seconds()?, Instant::now());
        let grads = y.sum_all()?.backward()?;
        let (c2, t2) = (cpu_seconds()?, Instant::now());
        drop(grads);
        let flops = 2.0 * (o * c * k * k * k) as f64 * y.elem_count() as f64 / o as f64 / 1e9;
        println!(
            "rep {rep}: fwd {:.3} s wall / {:.2} s cpu ({:.1} GFLOP/s per cpu-s); bwd (dgrad+wgrad) {:.3} s wall / {:.2} s cpu ({:.1} GFLOP/s per cpu-s)",
            (t1 - t0).as_secs_f64(),
            c1 - c0,
            flops / (c1 - c0).max(0.01),
            (t2 - t1).as_secs_f64(),
            c2 - c1,
            2.0 * flops / (c2 - c1).max(0.01)
        );
    }
    Ok(())
}
