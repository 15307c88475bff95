//! GPU check: runs every op forward and backward on CUDA device 0 and on the
//! CPU, prints the max abs error of outputs and gradients (relative to the
//! largest reference magnitude), repeats a few of them with f16 and bf16
//! inputs, times conv3d at [1,32,96³] and exits non-zero on any mismatch. Build: `cargo build --release -p petseg-ops3d --features
//! cuda --examples`; run on the GPU machine with `scripts/gpu-check.sh`.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use petseg_ops3d::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

type OpFn = Box<dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>>;

fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

fn max_abs(t: &Tensor) -> Result<f32> {
    Ok(t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// Output and gradients of `sum(f(inputs) * r)` on `dev`, with the inputs
/// of `dtype` (the 1-D ones, norm parameters, stay f32 as the networks keep
/// them), returned in f32 on the CPU.
fn run(dev: &Device, dtype: DType, shapes: &[Vec<usize>], f: &OpFn) -> Result<Vec<Tensor>> {
    let vars: Vec<Var> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let t = Tensor::from_vec(
                rand_vec(i as u64 + 1, s.iter().product()),
                s.as_slice(),
                dev,
            )?;
            Var::from_tensor(&t.to_dtype(if s.len() > 1 { dtype } else { DType::F32 })?)
        })
        .collect::<candle_core::Result<_>>()?;
    let ins: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ins)?;
    let r = Tensor::from_vec(rand_vec(99, y.elem_count()), y.dims(), dev)?.to_dtype(y.dtype())?;
    let grads = y.mul(&r)?.sum_all()?.backward()?;
    let on_cpu = |t: &Tensor| t.to_dtype(DType::F32)?.to_device(&Device::Cpu);
    let mut out = vec![on_cpu(&y)?];
    for v in &vars {
        out.push(on_cpu(grads.get(v).context("missing gradient")?)?);
    }
    Ok(out)
}

fn cases() -> Vec<(&'static str, Vec<Vec<usize>>, OpFn)> {
    let c = |s, p| Conv3dConfig {
        stride: [s; 3],
        padding: [p; 3],
        ..Default::default()
    };
    vec![
        (
            "conv3d k3 s1 p1 +bias",
            vec![vec![2, 4, 9, 10, 11], vec![6, 4, 3, 3, 3], vec![6]],
            Box::new(move |t| conv3d(&t[0], &t[1], Some(&t[2]), &c(1, 1))),
        ),
        (
            "conv3d k3 s2 p1",
            vec![vec![1, 3, 17, 16, 15], vec![5, 3, 3, 3, 3]],
            Box::new(move |t| conv3d(&t[0], &t[1], None, &c(2, 1))),
        ),
        (
            "conv3d k1",
            vec![vec![2, 8, 7, 6, 5], vec![4, 8, 1, 1, 1]],
            Box::new(move |t| conv3d(&t[0], &t[1], None, &c(1, 0))),
        ),
        (
            "conv3d groups2 dil2",
            vec![vec![1, 4, 9, 9, 9], vec![6, 2, 3, 3, 3]],
            Box::new(|t| {
                conv3d(
                    &t[0],
                    &t[1],
                    None,
                    &Conv3dConfig {
                        stride: [1, 2, 1],
                        padding: [2; 3],
                        dilation: [2; 3],
                        groups: 2,
                    },
                )
            }),
        ),
        (
            "conv3d [1,16,64³] k3 (multi-tile)",
            vec![vec![1, 16, 64, 64, 64], vec![16, 16, 3, 3, 3]],
            Box::new(move |t| conv3d(&t[0], &t[1], None, &c(1, 1))),
        ),
        (
            "conv_transpose3d k3 s2 p1 op1",
            vec![vec![1, 4, 5, 6, 7], vec![4, 3, 3, 3, 3], vec![3]],
            Box::new(|t| {
                let cfg = ConvTranspose3dConfig {
                    stride: [2; 3],
                    padding: [1; 3],
                    output_padding: [1; 3],
                    ..Default::default()
                };
                conv_transpose3d(&t[0], &t[1], Some(&t[2]), &cfg)
            }),
        ),
        (
            "conv3d 32→32 k3 (Winograd on the CPU)",
            vec![vec![1, 32, 9, 10, 11], vec![32, 32, 3, 3, 3]],
            Box::new(move |t| conv3d(&t[0], &t[1], None, &c(1, 1))),
        ),
        (
            "conv_transpose3d mixed, dilated",
            vec![vec![2, 2, 5, 6, 5], vec![2, 3, 2, 3, 3]],
            Box::new(|t| {
                let cfg = ConvTranspose3dConfig {
                    stride: [2, 1, 3],
                    padding: [0, 1, 1],
                    output_padding: [1, 0, 2],
                    dilation: [1, 2, 1],
                };
                conv_transpose3d(&t[0], &t[1], None, &cfg)
            }),
        ),
        (
            "max_pool3d k3 s2 p1",
            vec![vec![2, 3, 9, 10, 11]],
            Box::new(|t| max_pool3d(&t[0], [3; 3], [2; 3], [1; 3])),
        ),
        (
            "avg_pool3d k2 s2",
            vec![vec![2, 3, 9, 10, 11]],
            Box::new(|t| avg_pool3d(&t[0], [2; 3], [2; 3], [0; 3])),
        ),
        (
            "avg_pool3d k3 s2 p1",
            vec![vec![2, 3, 9, 10, 11]],
            Box::new(|t| avg_pool3d(&t[0], [3; 3], [2; 3], [1; 3])),
        ),
        (
            "trilinear x2",
            vec![vec![1, 4, 7, 8, 9]],
            Box::new(|t| upsample_trilinear3d(&t[0], UpsampleTarget::Scale([2.0; 3]), false)),
        ),
        (
            "trilinear size ac",
            vec![vec![1, 2, 5, 6, 7]],
            Box::new(|t| upsample_trilinear3d(&t[0], UpsampleTarget::Size([9, 4, 13]), true)),
        ),
        (
            "nearest x2",
            vec![vec![1, 2, 5, 6, 7]],
            Box::new(|t| upsample_nearest3d(&t[0], UpsampleTarget::Scale([2.0; 3]))),
        ),
        (
            "nearest to a size",
            vec![vec![1, 2, 5, 6, 7]],
            Box::new(|t| upsample_nearest3d(&t[0], UpsampleTarget::Size([7, 9, 4]))),
        ),
        (
            "nearest x(1.5, 1.7, 0.6)",
            vec![vec![1, 2, 5, 6, 7]],
            Box::new(|t| upsample_nearest3d(&t[0], UpsampleTarget::Scale([1.5, 1.7, 0.6]))),
        ),
        (
            "group_norm 8 groups",
            vec![vec![2, 16, 9, 10, 11], vec![16], vec![16]],
            Box::new(|t| group_norm(&t[0], 8, Some(&t[1]), Some(&t[2]), 1e-5)),
        ),
        (
            "instance_norm",
            vec![vec![2, 4, 9, 10, 11]],
            Box::new(|t| instance_norm(&t[0], None, None, 1e-5)),
        ),
        (
            "instance_norm affine",
            vec![vec![2, 4, 9, 10, 11], vec![4], vec![4]],
            Box::new(|t| instance_norm(&t[0], Some(&t[1]), Some(&t[2]), 1e-5)),
        ),
        (
            "group_norm_relu 8 groups",
            vec![vec![2, 16, 9, 10, 11], vec![16], vec![16]],
            Box::new(|t| group_norm_relu(&t[0], 8, Some(&t[1]), Some(&t[2]), 1e-5)),
        ),
        (
            "instance_norm_prelu",
            vec![vec![2, 4, 9, 10, 11], vec![1]],
            Box::new(|t| instance_norm_prelu(&t[0], &t[1], 1e-5)),
        ),
    ]
}

/// Cases also run with f16 and bf16 inputs (every op computes in f32 inside
/// and rounds once, on either device, so the two agree to a half-precision
/// ulp or so).
const HALF_CASES: [&str; 5] = [
    "conv3d k3 s1 p1 +bias",
    "conv_transpose3d k3 s2 p1 op1",
    "trilinear x2",
    "group_norm_relu 8 groups",
    "max_pool3d k3 s2 p1",
];

/// Compares the CPU and CUDA results of one case; prints a line and returns
/// the number of mismatches (relative error above `tol`).
fn compare(name: &str, dtype: DType, cpu: &[Tensor], cuda: &[Tensor], tol: f32) -> Result<usize> {
    let mut line = format!("{:44}", format!("{name} ({dtype:?})"));
    let mut failures = 0;
    for (k, (a, b)) in cpu.iter().zip(cuda).enumerate() {
        let scale = max_abs(a)?.max(1.0);
        let err = max_abs(&(a - b)?)? / scale;
        let what = if k == 0 {
            "y".to_string()
        } else {
            format!("g{}", k - 1)
        };
        line += &format!("  {what} {err:.1e}");
        if err.is_nan() || err > tol {
            failures += 1;
            line += " MISMATCH";
        }
    }
    println!("{line}");
    Ok(failures)
}

fn time_conv(dev: &Device, reps: usize) -> Result<(f64, f64)> {
    let x = Var::from_tensor(&Tensor::from_vec(
        rand_vec(5, 32 * 96 * 96 * 96),
        (1, 32, 96, 96, 96),
        dev,
    )?)?;
    let w = Var::from_tensor(
        &(Tensor::from_vec(rand_vec(6, 32 * 32 * 27), (32, 32, 3, 3, 3), dev)? * 0.05)?,
    )?;
    let cfg = Conv3dConfig {
        padding: [1; 3],
        ..Default::default()
    };
    let (mut fwd, mut both) = (f64::MAX, f64::MAX);
    for _ in 0..reps + 1 {
        dev.synchronize()?;
        let t0 = Instant::now();
        let y = conv3d(x.as_tensor(), w.as_tensor(), None, &cfg)?;
        dev.synchronize()?;
        let t1 = Instant::now();
        let g = y.sum_all()?.backward()?;
        let _ = g
            .get(&w)
            .context("no grad")?
            .sum_all()?
            .to_scalar::<f32>()?;
        dev.synchronize()?;
        fwd = fwd.min((t1 - t0).as_secs_f64());
        both = both.min(t0.elapsed().as_secs_f64());
    }
    Ok((fwd, both))
}

fn main() -> Result<()> {
    let gpu = Device::new_cuda(0).context("creating CUDA device 0")?;
    let mut failures = 0;
    for (name, shapes, f) in cases() {
        let half: &[(DType, f32)] = if HALF_CASES.contains(&name) {
            &[(DType::F16, 1e-2), (DType::BF16, 3e-2)]
        } else {
            &[]
        };
        for &(dtype, tol) in [(DType::F32, 1e-3)].iter().chain(half) {
            let on = |dev: &Device| {
                run(dev, dtype, &shapes, &f)
                    .with_context(|| format!("{name} ({dtype:?}) on {dev:?}"))
            };
            failures += compare(name, dtype, &on(&Device::Cpu)?, &on(&gpu)?, tol)?;
        }
    }
    let flops = 2.0 * 32.0 * 32.0 * 27.0 * 96f64.powi(3) / 1e9;
    let (f, b) = time_conv(&gpu, 5)?;
    println!("conv3d [1,32,96³] 32→32 k3 p1 on CUDA: fwd {:.2} ms ({:.0} GFLOP/s), fwd+bwd {:.2} ms ({:.0} GFLOP/s)", f * 1e3, flops / f, b * 1e3, 3.0 * flops / b);
    let (f, b) = time_conv(&Device::Cpu, 1)?;
    println!(
        "conv3d [1,32,96³] 32→32 k3 p1 on CPU ({} threads): fwd {:.2} s, fwd+bwd {:.2} s",
        rayon::current_num_threads(),
        f,
        b
    );
    if failures > 0 {
        bail!("{failures} mismatches between CUDA and CPU");
    }
    println!("all CUDA results match the CPU");
    Ok(())
}
