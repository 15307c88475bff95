//! Benchmarks of the ops at the shapes SegResNet (init_filters 16) and the
//! Attention U-Net use, at 96³ and 128³ patches: forward and forward+backward
//! wall time (best of `REPS` after one warm-up) and GFLOP/s for convolutions.
//! `scripts/bench_torch.py` measures PyTorch on the same list.
//!
//! usage: cargo bench -p petseg-ops3d --bench ops [-- SIZE... [WORD...]]   (default 96 128;
//! a WORD keeps only the cases whose name contains it, e.g. `pool` or `norm`)
//!
//! `-- conv SIZE...` instead times every convolution of the two networks
//! per direction (forward, input gradient, weight gradient), alternating
//! with the PyTorch peer of each case in a `python3` child (2 threads, same
//! machine, same run; each figure the best over 3 rounds of at least `REPS`
//! repetitions, more for short cases, see `conv_reps`), and prints the
//! ratios. Set `PETSEG_OPS3D_CONV=gemm` to time the im2col + `gemm` kernels
//! instead of the direct SIMD ones, `PETSEG_OPS3D_CONV=direct` to keep the
//! direct kernels where Winograd would run.

use candle_core::{Device, Result, Tensor, Var};
use petseg_ops3d::*;
use std::process::Command;
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
            name: format!("[1,16,{s}³] group_norm_relu(8)"),
            shapes: vec![vec![1, 16, s, s, s], vec![16], vec![16]],
            flops: 0.0,
            op: Box::new(|t| group_norm_relu(&t[0], 8, Some(&t[1]), Some(&t[2]), 1e-5)),
        },
        Case {
            name: format!("[1,16,{s}³] instance_norm"),
            shapes: vec![vec![1, 16, s, s, s]],
            flops: 0.0,
            op: Box::new(|t| instance_norm(&t[0], None, None, 1e-5)),
        },
        Case {
            name: format!("[1,16,{s}³] instance_norm_prelu"),
            shapes: vec![vec![1, 16, s, s, s], vec![1]],
            flops: 0.0,
            op: Box::new(|t| instance_norm_prelu(&t[0], &t[1], 1e-5)),
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

/// A conv3d of the two networks: input shape, output channels, kernel, stride, padding.
type ConvSpec = ([usize; 5], usize, usize, usize, usize);

/// The conv3d shapes of SegResNet (init_filters 16) and the Attention U-Net at a
/// patch of `s`³: encoder levels at s, s/2, s/4, s/8, their stride-2 down
/// convolutions and the 1×1×1 up-path convolution.
fn conv_specs(s: usize) -> Vec<ConvSpec> {
    vec![
        ([1, 2, s, s, s], 16, 3, 1, 1),
        ([1, 16, s, s, s], 16, 3, 1, 1),
        ([1, 16, s, s, s], 32, 3, 2, 1),
        ([1, 32, s / 2, s / 2, s / 2], 32, 3, 1, 1),
        ([1, 32, s / 2, s / 2, s / 2], 64, 3, 2, 1),
        ([1, 64, s / 4, s / 4, s / 4], 64, 3, 1, 1),
        ([1, 128, s / 8, s / 8, s / 8], 128, 3, 1, 1),
        ([1, 32, s / 2, s / 2, s / 2], 16, 1, 1, 0),
    ]
}

/// Repetitions of a convolution case after the warm-up: at least `REPS`, and
/// more for short cases, until a round of repetitions has run for about
/// `CONV_ROUND_SECONDS` (at most `CONV_MAX_REPS`), so that the best-of figure
/// of a few-millisecond case is not one unlucky sample on a shared machine.
/// PyTorch's side ([`TORCH_CONV`]) uses the same rule.
fn conv_reps(warm_up_seconds: f64) -> usize {
    ((CONV_ROUND_SECONDS / warm_up_seconds.max(1e-6)).ceil() as usize).clamp(REPS, CONV_MAX_REPS)
}

/// See [`conv_reps`].
const CONV_ROUND_SECONDS: f64 = 0.5;
/// See [`conv_reps`].
const CONV_MAX_REPS: usize = 30;

/// Our forward, input-gradient, weight-gradient and forward+backward times.
/// A gradient's time is that of `backward()` alone (the forward and the sum
/// done before the clock starts) with only its argument a variable (the
/// backward skips untracked arguments), so it includes candle's backward
/// bookkeeping, as PyTorch's figure includes its own. Each figure is the best
/// of [`conv_reps`] repetitions after a warm-up.
fn conv_times((n, o, k, s, p): ConvSpec) -> Result<[f64; 4]> {
    let dev = Device::Cpu;
    let x = (Tensor::randn(0f32, 1.0, n.as_slice(), &dev)? * 0.1)?;
    let w = (Tensor::randn(0f32, 1.0, (o, n[1], k, k, k), &dev)? * 0.1)?;
    let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
    let cfg = Conv3dConfig {
        stride: [s; 3],
        padding: [p; 3],
        ..Default::default()
    };
    let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        let t0 = Instant::now();
        f()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let bwd = |x: &Tensor, w: &Tensor| -> Result<f64> {
        let loss = conv3d(x, w, None, &cfg)?.sum_all()?;
        time(&|| loss.backward().map(drop))
    };
    let round = || -> Result<[f64; 4]> {
        Ok([
            time(&|| conv3d(&x, &w, None, &cfg).map(drop))?,
            bwd(xv.as_tensor(), &w)?,
            bwd(&x, wv.as_tensor())?,
            time(&|| {
                let y = conv3d(&xv, &wv, None, &cfg)?;
                y.sum_all()?.backward().map(drop)
            })?,
        ])
    };
    let warm_up = round()?;
    let mut t = [f64::MAX; 4];
    for _ in 0..conv_reps(warm_up.iter().sum()) {
        t.iter_mut().zip(round()?).for_each(|(a, b)| *a = a.min(b));
    }
    Ok(t)
}

/// PyTorch's times for the same specs, measured the same way (one line of
/// `n c size o k s p` in, one line of four times out).
const TORCH_CONV: &str = r#"
import math, sys, time, torch, torch.nn.functional as F
torch.set_num_threads(2)
REPS, ROUND_SECONDS, MAX_REPS = 2, 0.5, 30  # as in the Rust side (conv_reps)
def time_of(f):
    t0 = time.perf_counter(); f(); return time.perf_counter() - t0
for line in sys.stdin:
    n0, n1, d, o, k, s, p = map(int, line.split())
    x = torch.randn(n0, n1, d, d, d) * 0.1
    w = torch.randn(o, n1, k, k, k) * 0.1
    xv, wv = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    def bwd(a, b):
        loss = F.conv3d(a, b, None, s, p).sum()
        return time_of(loss.backward)
    def round_():
        with torch.no_grad():
            fwd = time_of(lambda: F.conv3d(x, w, None, s, p))
        r = [fwd, bwd(xv, w), bwd(x, wv),
             time_of(lambda: F.conv3d(xv, wv, None, s, p).sum().backward())]
        xv.grad = wv.grad = None
        return r
    warm_up = sum(round_())
    reps = min(max(math.ceil(ROUND_SECONDS / max(warm_up, 1e-6)), REPS), MAX_REPS)
    t = [float("inf")] * 4
    for _ in range(reps):
        t = [min(a, b) for a, b in zip(t, round_())]
    print(*t, flush=True)
"#;

/// A persistent `python3` child running [`TORCH_CONV`], asked one case at a
/// time so that its timings interleave with ours.
struct TorchPeer {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl TorchPeer {
    fn start() -> std::io::Result<Self> {
        let mut child = Command::new("python3")
            .args(["-c", TORCH_CONV])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(TorchPeer { child, out })
    }

    /// PyTorch's forward, input-gradient, weight-gradient and forward+backward times.
    fn times(&mut self, (n, o, k, s, p): ConvSpec) -> std::io::Result<[f64; 4]> {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{} {} {} {o} {k} {s} {p}", n[0], n[1], n[2])?;
        stdin.flush()?;
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        let v: Vec<f64> = line
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        v.try_into().map_err(|_| {
            std::io::Error::other(format!(
                "python3/torch answered {line:?} (is torch installed?)"
            ))
        })
    }
}

impl Drop for TorchPeer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Rounds of (ours, PyTorch) measurements per case; each figure is the
/// best over the rounds, so that both sides see the same machine load.
const ROUNDS: usize = 3;

/// `conv` mode: per-direction table with PyTorch ratios (torch time / ours).
fn conv_mode(sizes: &[usize]) -> Result<()> {
    let specs: Vec<ConvSpec> = sizes.iter().flat_map(|&s| conv_specs(s)).collect();
    let mut peer = TorchPeer::start();
    let mut ours = Vec::new();
    let mut torch: std::io::Result<Vec<[f64; 4]>> = Ok(Vec::new());
    for &spec in &specs {
        let (mut o, mut t) = ([f64::MAX; 4], [f64::MAX; 4]);
        for _ in 0..ROUNDS {
            let r = conv_times(spec)?;
            o.iter_mut().zip(r).for_each(|(a, b)| *a = a.min(b));
            if let (Ok(p), Ok(_)) = (peer.as_mut(), torch.as_ref()) {
                match p.times(spec) {
                    Ok(r) => t.iter_mut().zip(r).for_each(|(a, b)| *a = a.min(b)),
                    Err(e) => torch = Err(e),
                }
            }
        }
        ours.push(o);
        if let Ok(v) = torch.as_mut() {
            v.push(t);
        }
    }
    let torch = match peer {
        Ok(_) => torch,
        Err(e) => Err(e),
    };
    let kernels = match std::env::var("PETSEG_OPS3D_CONV") {
        Ok(v) if v == "gemm" => "im2col + gemm",
        Ok(v) if v == "direct" => "direct SIMD",
        _ => "direct SIMD + Winograd",
    };
    println!(
        "threads: {}, our kernels: {kernels}",
        rayon::current_num_threads()
    );
    println!("| case | fwd s (ratio) | dinput s (ratio) | dweight s (ratio) | fwd+bwd s (ratio) | fwd+bwd GFLOP/s |");
    println!("|---|---|---|---|---|---|");
    for (i, ((n, o, k, s, p), t)) in specs.iter().zip(&ours).enumerate() {
        let out = (n[2] + 2 * p - k) / s + 1;
        let flops = 2.0 * (o * n[1] * k * k * k * out * out * out) as f64;
        let cell = |j: usize| match &torch {
            Ok(tt) => format!("{:.3} ({:.2})", t[j], tt[i][j] / t[j]),
            Err(_) => format!("{:.3}", t[j]),
        };
        println!(
            "| [1,{},{}³] {}→{o} k{k} s{s} | {} | {} | {} | {} | {:.1} |",
            n[1],
            n[2],
            n[1],
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            3.0 * flops / t[3] / 1e9
        );
    }
    match torch {
        Ok(tt) => {
            println!("\ntorch (2 threads) s: fwd / dinput / dweight / fwd+bwd");
            for ((n, o, k, s, _), r) in specs.iter().zip(tt) {
                println!(
                    "[1,{},{}³] {}→{o} k{k} s{s}: {:.3} / {:.3} / {:.3} / {:.3}",
                    n[1], n[2], n[1], r[0], r[1], r[2], r[3]
                );
            }
        }
        Err(e) => println!("\nno PyTorch column: {e}"),
    }
    Ok(())
}

fn main() -> Result<()> {
    // as the `petseg` binary does (PETSEG_MALLOC=system to compare with glibc's defaults)
    petseg_ops3d::alloc::retain_freed_memory();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![96, 128]
    } else {
        sizes
    };
    if std::env::args().any(|a| a == "conv") {
        return conv_mode(&sizes);
    }
    // Any other word keeps only the cases whose name contains it (e.g. `pool`, `norm`).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<usize>().is_err())
        .collect();
    println!("threads: {}", rayon::current_num_threads());
    println!("| case | fwd s | fwd GFLOP/s | fwd+bwd s | fwd+bwd GFLOP/s |");
    println!("|---|---|---|---|---|");
    for s in sizes {
        for c in cases(s) {
            if !filters.is_empty() && !filters.iter().any(|f| c.name.contains(f.as_str())) {
                continue;
            }
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
