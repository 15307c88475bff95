use candle_core::{Device, Tensor, Var};
use petseg_ops3d::{conv3d, Conv3dConfig};
use std::time::Instant;
fn main() -> candle_core::Result<()> {
    petseg_ops3d::alloc::retain_freed_memory();
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize| a[i].parse::<usize>().unwrap();
    let (c, o, s, st, k) = (n(0), n(1), n(2), n(3), n(4));
    let reps: usize = std::env::var("REPS")
        .map(|v| v.parse().unwrap())
        .unwrap_or(15);
    let dev = Device::Cpu;
    let x = (Tensor::randn(0f32, 1.0, (1, c, s, s, s), &dev)? * 0.1)?;
    let w = (Tensor::randn(0f32, 1.0, (o, c, k, k, k), &dev)? * 0.1)?;
    let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
    let cfg = Conv3dConfig {
        stride: [st; 3],
        padding: [k / 2; 3],
        ..Default::default()
    };
    let out = (s + 2 * (k / 2) - k) / st + 1;
    let fl = 2.0 * (o * c * k * k * k * out * out * out) as f64 / 1e9;
    let mut bests = [[f64::MAX; 3]; 2];
    for it in 0..2 * reps {
        let v = it % 2;
        let best = &mut bests[v];
        let t0 = Instant::now();
        drop(conv3d(&x, &w, None, &cfg)?);
        best[0] = best[0].min(t0.elapsed().as_secs_f64());
        let l = conv3d(xv.as_tensor(), &w, None, &cfg)?.sum_all()?;
        let t0 = Instant::now();
        drop(l.backward()?);
        best[1] = best[1].min(t0.elapsed().as_secs_f64());
        let l = conv3d(&x, wv.as_tensor(), None, &cfg)?.sum_all()?;
        let t0 = Instant::now();
        drop(l.backward()?);
        best[2] = best[2].min(t0.elapsed().as_secs_f64());
    }
    for (v, best) in bests.iter().enumerate() {
        println!("v{v} {c}->{o}@{s} s{st} k{k}: fwd {:.4} ({:.0}) dx {:.4} ({:.0}) dw {:.4} ({:.0}) GFLOP/s", best[0], fl / best[0], best[1], fl / best[1], best[2], fl / best[2]);
    }
    Ok(())
}
