//! Pooling kernels on CUDA (forward per output voxel; backward as a gather
//! per input voxel).

use super::{device_repr, grid, input, launch};
use crate::pool::{PoolGeom, PoolKind};
use candle_core::cuda_backend::CudaStorage;
use candle_core::{Layout, Result};

/// Mirror of `PoolP` in kernels.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct PoolP {
    planes: i64,
    dims: [i32; 15], // id ih iw od oh ow kd kh kw sd sh sw pd ph pw
}
device_repr!(PoolP);

impl PoolP {
    fn new(g: &PoolGeom) -> Self {
        let mut dims = [0i32; 15];
        for (i, v) in [g.input, g.output, g.kernel, g.stride, g.padding]
            .iter()
            .flatten()
            .enumerate()
        {
            dims[i] = *v as i32;
        }
        PoolP {
            planes: g.planes() as i64,
            dims,
        }
    }
}

/// `x → y`.
pub(crate) fn forward(
    op: &'static str,
    g: &PoolGeom,
    kind: PoolKind,
    s: &CudaStorage,
    l: &Layout,
) -> Result<CudaStorage> {
    let dev = s.device.clone();
    let x = input(op, s, l, g.planes() * g.in_vol())?;
    let n = g.planes() * g.out_vol();
    let mut y = dev.alloc_zeros::<f32>(n)?;
    let (p, is_max) = (PoolP::new(g), (kind == PoolKind::Max) as i32);
    launch!(dev, "pool_fwd", grid(n); &x, &mut y, &p, &is_max);
    Ok(CudaStorage::wrap_cuda_slice(y, dev))
}

/// `(x, gy) → gx`.
pub(crate) fn backward(
    op: &'static str,
    g: &PoolGeom,
    kind: PoolKind,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<CudaStorage> {
    let dev = s1.device.clone();
    let n = g.planes() * g.in_vol();
    let x = input(op, s1, l1, n)?;
    let gy = input(op, s2, l2, g.planes() * g.out_vol())?;
    let mut gx = dev.alloc_zeros::<f32>(n)?;
    let (p, is_max) = (PoolP::new(g), (kind == PoolKind::Max) as i32);
    launch!(dev, "pool_bwd", grid(n); &x, &gy, &mut gx, &p, &is_max);
    Ok(CudaStorage::wrap_cuda_slice(gx, dev))
}
