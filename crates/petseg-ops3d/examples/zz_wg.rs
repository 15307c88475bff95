use candle_core::{Device, Tensor, Var};
use petseg_ops3d::{conv3d, Conv3dConfig};
use std::time::Instant;
fn main() -> candle_core::Result<()> {
    petseg_ops3d::alloc::retain_freed_memory();
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let (c, o, s) = (a[0], a[1], a[2]);
    let dev = Device::Cpu;
    let x = (Tensor::randn(0f32, 1.0, (1, c, s, s, s), &dev)? * 0.1)?;
    let w = (Tensor::randn(0f32, 1.0, (o, c, 3, 3, 3), &dev)? * 0.1)?;
    let wv = Var::from_tensor(&w)?;
    let cfg = Conv3dConfig {
        padding: [1; 3],
        ..Default::default()
    };
    let fl = 2.0 * (o * c * 27 * s * s * s) as f64 / 1e9;
    let mut best = f64::MAX;
    for _ in 0..20 {
        let l = conv3d(&x, wv.as_tensor(), None, &cfg)?.sum_all()?;
        let t0 = Instant::now();
        drop(l.backward()?);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    println!("{c}->{o}@{s}: dw {best:.4} ({:.0} GFLOP/s)", fl / best);
    Ok(())
}
