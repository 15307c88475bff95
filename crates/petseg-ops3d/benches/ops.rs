//! Benchmarks of the ops at the shapes SegResNet (init_filters 16) and the
//! Attention U-Net use, at 96³ and 128³ patches: forward and forward+backward
//! wall time (best of `REPS` after one warm-up) and GFLOP/s for convolutions.
//! `scripts/bench_torch.py` measures PyTorch on the same list.
//!
//! usage: cargo bench -p petseg-ops3d --bench ops [-- SIZE...]   (default 96 128)

use candle_core::{Device, Result, Tensor, Var};
use petseg_ops3d::*;
use std::time::Instant;

const REPS: usize = 2;

/// An op applied to the case's inputs.
type OpFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

/// One benchmark: name, input shapes, FLOPs of the forward (0 if not a conv), op.
struct Case {
    name: String,
    shapes: Vec<Vec<usize>>,
    flops: f64,
    op: OpFn,
}

fn conv_case(name: &str, n: [usize; 5], o: usize, k: usize, s: usize, p: usize) -> Case {
    let out = (n[2] + 2 * p - k) / s + 1;
    let flops = 2.0 * (o * n[1] * k * k * k) as f64 * (out * out * out) as f64;
    let cfg = Conv3dConfig {
        stride: [s; 3],
        padding: [p; 3],
        ..Default::default()
    };
    Case {
        name: format!("{name} conv3d {}→{o} k{k} s{s}", n[1]),
        shapes: vec![n.to_vec(), vec![o, n[1], k, k, k]],
        flops,
        op: Box::new(move |t| conv3d(&t[0], &t[1], None, &cfg)),
    }
}

fn cases(s: usize) -> Vec<Case> {
    let h = s / 2;
    let up = ConvTranspose3dConfig {
        stride: [2; 3],
        padding: [1; 3],
        output_padding: [1; 3],
        ..Default::default()
    };
    vec![
        conv_case(&format!("[1,2,{s}³]"), [1, 2, s, s, s], 16, 3, 1, 1),
        conv_case(&format!("[1,16,{s}³]"), [1, 16, s, s, s], 16, 3, 1, 1),
        conv_case(&format!("[1,16,{s}³]"), [1, 16, s, s, s], 32, 3, 2, 1),
        conv_case(&format!("[1,32,{h}³]"), [1, 32, h, h, h], 32, 3, 1, 1),
        conv_case(&format!("[1,32,{h}³]"), [1, 32, h, h, h], 16, 1, 1, 0),
        Case {
            name: format!("[1,32,{h}³] conv_transpose3d 32→16 k3 s2 p1 op1"),
            shapes: vec![vec![1, 32, h, h, h], vec![32, 16, 3, 3, 3]],
            flops: 2.0 * (32 * 16 * 27) as f64 * (h * h * h) as f64,
            op: Box::new(move |t| conv_transpose3d(&t[0], &t[1], None, &up)),
        },
        Case {
            name: format!("[1,16,{h}³] trilinear x2"),
            shapes: vec![vec![1, 16, h, h, h]],
            flops: 0.0,
            op: Box::new(|t| upsample_trilinear3d(&t[0], UpsampleTarget::Scale([2.0; 3]), false)),
        },
        Case {
            name: format!("[1,16,{s}³] group_norm(8)"),
            shapes: vec![vec![1, 16, s, s, s], vec![16], vec![16]],
            flops: 0.0,
            op: Box::new(|t| group_norm(&t[0], 8, Some(&t[1]), Some(&t[2]), 1e-5)),
        },
        Case {
            name: format!("[1,16,{s}³] instance_norm"),
            shapes: vec![vec![1, 16, s, s, s]],
            flops: 0.0,
            op: Box::new(|t| instance_norm(&t[0], None, None, 1e-5)),
        },
        Case {
            name: format!("[1,16,{s}³] max_pool3d k2 s2"),
            shapes: vec![vec![1, 16, s, s, s]],
            flops: 0.0,
            op: Box::new(|t| max_pool3d(&t[0], [2; 3], [2; 3], [0; 3])),
        },
    ]
}

fn bench(c: &Case) -> Result<(f64, f64)> {
    let dev = Device::Cpu;
    let vars: Vec<Var> = c
        .shapes
        .iter()
        .map(|s| Var::from_tensor(&(Tensor::randn(0f32, 1.0, s.as_slice(), &dev)? * 0.1)?))
        .collect::<Result<_>>()?;
    let ins: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let (mut fwd, mut both) = (f64::MAX, f64::MAX);
    for _ in 0..=REPS {
        let t0 = Instant::now();
        let y = (c.op)(&ins)?;
        let t1 = Instant::now();
        let grads = y.sum_all()?.backward()?;
        drop(grads);
        fwd = fwd.min((t1 - t0).as_secs_f64());
        both = both.min(t0.elapsed().as_secs_f64());
    }
    Ok((fwd, both))
}

fn main() -> Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![96, 128]
    } else {
        sizes
    };
    println!("threads: {}", rayon::current_num_threads());
    println!("| case | fwd s | fwd GFLOP/s | fwd+bwd s | fwd+bwd GFLOP/s |");
    println!("|---|---|---|---|---|");
    for s in sizes {
        for c in cases(s) {
            let (f, b) = bench(&c)?;
            let gf = |flops: f64, t: f64| {
                if flops > 0.0 {
                    format!("{:.1}", flops / t / 1e9)
                } else {
                    "–".into()
                }
            };
            println!(
                "| {} | {f:.3} | {} | {b:.3} | {} |",
                c.name,
                gf(c.flops, f),
                gf(3.0 * c.flops, b)
            );
        }
    }
    Ok(())
}
