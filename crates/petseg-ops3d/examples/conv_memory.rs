//! Peak-memory check of conv3d forward+backward on the CPU: reports the rise of
//! the process's peak RSS (VmHWM from /proc/self/status) over the baseline
//! taken after the inputs exist, against the bytes of input, weight, output
//! and their gradients. The target is ≤ ~1.5× (no volume-sized im2col buffer).
//! `scripts/conv_memory_torch.py` measures PyTorch the same way.
//!
//! A second line gives the same ratio for the peak of live heap bytes (a
//! counting allocator): what the op and candle's autograd hold at once,
//! without the pages the allocator keeps after frees (glibc serves blocks
//! below its dynamic mmap threshold from heaps it rarely shrinks, so RSS can
//! exceed the live bytes by tens of MB), but with candle's zero-filled
//! gradient buffers counted in full even where their pages are never touched.
//!
//! usage: cargo run --release -p petseg-ops3d --example conv_memory -- [C] [O] [SIZE] [STRIDE]
//! (defaults 16 16 96 1; Linux only)

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use petseg_ops3d::{conv3d, Conv3dConfig};

#[path = "support/heap_counter.rs"]
mod heap_counter;
use heap_counter::HeapCounter;

#[global_allocator]
static HEAP: HeapCounter = HeapCounter::new();

/// A `Vm*` field of /proc/self/status in bytes.
fn status_bytes(field: &str) -> Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} not in /proc/self/status"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()?;
    Ok(kb * 1024)
}

fn main() -> Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .context("arguments must be integers")?;
    let arg = |i: usize, d: usize| a.get(i).copied().unwrap_or(d);
    let (c, o, s, stride) = (arg(0, 16), arg(1, 16), arg(2, 96), arg(3, 1));
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, c, s, s, s), &dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, (o, c, 3, 3, 3), &dev)?)?;
    // the peak so far may lie above the current RSS (temporaries of the
    // inputs' creation): reset it, so that VmHWM below is this op's
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
    let base = status_bytes("VmRSS:")?;
    let heap_base = HEAP.reset_peak();
    let cfg = Conv3dConfig {
        stride: [stride; 3],
        padding: [1; 3],
        ..Default::default()
    };
    let y = conv3d(x.as_tensor(), w.as_tensor(), None, &cfg)?;
    let grads = y.sum_all()?.backward()?;
    let gx = grads.get(&x).context("no input gradient")?;
    let gw = grads.get(&w).context("no weight gradient")?;
    let peak = status_bytes("VmHWM:")?;
    let heap_rise = (HEAP.peak() - heap_base) as u64;
    // tensors that must exist: output y, the upstream gradient (ones, same size), gx, gw
    let need = 4 * (2 * y.elem_count() + gx.elem_count() + gw.elem_count()) as u64;
    let rise = peak.saturating_sub(base);
    let inputs = 4 * (x.elem_count() + w.elem_count()) as u64;
    println!(
        "conv3d [1,{c},{s}³]→{o} k3 s{stride} p1 fwd+bwd: peak RSS rise {:.1} MB over the baseline with inputs ({:.1} MB) allocated; \
         output + upstream grad + input grad + weight grad = {:.1} MB; rise/needed = {:.2}; \
         (inputs + rise)/(inputs + needed) = {:.2}",
        rise as f64 / 1e6,
        inputs as f64 / 1e6,
        need as f64 / 1e6,
        rise as f64 / need as f64,
        (inputs + rise) as f64 / (inputs + need) as f64
    );
    println!(
        "live heap: peak rise {:.1} MB; (inputs + rise)/(inputs + needed) = {:.2}",
        heap_rise as f64 / 1e6,
        (inputs + heap_rise) as f64 / (inputs + need) as f64
    );
    Ok(())
}
