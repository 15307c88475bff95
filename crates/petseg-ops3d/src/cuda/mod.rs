//! CUDA implementations (f32) of every op, behind the `cuda` feature.
//!
//! The kernels (`kernels.cu`) are CUDA C compiled once per process with NVRTC
//! and loaded into the candle device as a custom module; convolutions use
//! im2col / col2im kernels plus cuBLAS sgemm on the device's cuBLAS handle.
//! Backward passes go through the same custom ops as on the CPU, so they run
//! on the GPU too. The col2im and pooling/up-sampling backward kernels are
//! written as gathers (no atomics), so results are deterministic.

pub(crate) mod conv;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod upsample;

use crate::error::unsupported;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig};
use candle_core::cuda_backend::CudaStorage;
use candle_core::{Layout, Result};
use std::sync::OnceLock;

/// Name of our module in the device's custom-module cache.
pub(crate) const MODULE: &str = "petseg_ops3d_kernels";

/// The PTX of `kernels.cu`, compiled on first use.
pub(crate) fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(include_str!("kernels.cu"))
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(|e| unsupported("cuda", format!("NVRTC could not compile kernels.cu: {e}")))
}

/// Grid-stride launch over `n` items (256 threads per block).
pub(crate) fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of 256 threads per item (block reductions).
pub(crate) fn blocks(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches kernel `$name` of `kernels.cu` on `$dev` with launch config `$cfg`
/// and the given arguments (which must match the kernel's signature).
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr; $($arg:expr),+ $(,)?) => {{
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
        use candle_core::cuda_backend::WrapErr;
        let f = $dev.get_or_load_custom_func($name, $crate::cuda::MODULE, $crate::cuda::ptx()?)?;
        let mut b = f.builder();
        $( b.arg($arg); )+
        // SAFETY: the argument list matches the kernel signature in kernels.cu,
        // and every buffer holds at least the elements the kernel indexes.
        unsafe { b.launch($cfg) }.w()?;
    }};
}
pub(crate) use launch;

/// The contiguous f32 data of an input, checked to hold `len` elements.
pub(crate) fn input<'a>(
    op: &'static str,
    s: &'a CudaStorage,
    l: &Layout,
    len: usize,
) -> Result<CudaView<'a, f32>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| unsupported(op, "non-contiguous layout reached the CUDA kernel"))?;
    if b - a != len {
        return Err(crate::error::shape_err(
            op,
            format!("CUDA kernel input has {} elements, expected {len}", b - a),
        ));
    }
    Ok(s.as_cuda_slice::<f32>()?.slice(a..b))
}

/// Marks a `#[repr(C)]` parameter struct as passable to kernels by value.
macro_rules! device_repr {
    ($t:ty) => {
        // SAFETY: plain-old-data struct with the same #[repr(C)] layout as its
        // counterpart in kernels.cu.
        unsafe impl candle_core::cuda_backend::cudarc::driver::DeviceRepr for $t {}
    };
}
pub(crate) use device_repr;
