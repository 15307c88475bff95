//! Up-sampling kernels on CUDA. The per-axis tables are computed on the host
//! by the same code as on the CPU ([`UpsampleGeom::taps`]) and uploaded; the
//! backward uses the inverse tables (CSR per axis) as a gather.

use super::{device_repr, grid, input, launch};
use crate::upsample::UpsampleGeom;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{Layout, Result};

/// Mirror of `UpP` in kernels.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct UpP {
    planes: i64,
    dims: [i32; 6], // id ih iw od oh ow
}
device_repr!(UpP);

/// Forward tables: per axis `i0[out], i1[out]` and `l0[out], l1[out]`.
fn forward_tables(g: &UpsampleGeom) -> (Vec<i32>, Vec<f32>) {
    let (mut idx, mut lam) = (Vec::new(), Vec::new());
    for a in 0..3 {
        let t = g.taps(a);
        idx.extend(
            t.iter()
                .map(|t| t.i0 as i32)
                .chain(t.iter().map(|t| t.i1 as i32)),
        );
        lam.extend(
            t.iter()
                .map(|t| t.l0 as f32)
                .chain(t.iter().map(|t| t.l1 as f32)),
        );
    }
    (idx, lam)
}

/// Inverse tables: for each axis and input index, the (output, weight) pairs
/// that read it, as global CSR offsets plus entries.
fn inverse_tables(g: &UpsampleGeom) -> (Vec<i32>, Vec<i32>, Vec<f32>) {
    let (mut off, mut ent_o, mut ent_w) = (Vec::new(), Vec::new(), Vec::new());
    for a in 0..3 {
        let mut per_in: Vec<Vec<(i32, f32)>> = vec![Vec::new(); g.input[a]];
        for (o, t) in g.taps(a).iter().enumerate() {
            per_in[t.i0].push((o as i32, t.l0 as f32));
            per_in[t.i1].push((o as i32, t.l1 as f32));
        }
        for list in per_in {
            off.push(ent_o.len() as i32);
            for (o, w) in list {
                ent_o.push(o);
                ent_w.push(w);
            }
        }
        off.push(ent_o.len() as i32);
    }
    (off, ent_o, ent_w)
}

/// Forward (`backward == false`: `x [.., in] → y [.., out]`) or its adjoint
/// (`gy [.., out] → gx [.., in]`).
pub(crate) fn run(
    op: &'static str,
    g: &UpsampleGeom,
    backward: bool,
    s: &CudaStorage,
    l: &Layout,
) -> Result<CudaStorage> {
    let dev = s.device.clone();
    let mut dims = [0i32; 6];
    for (i, v) in [g.input, g.output].iter().flatten().enumerate() {
        dims[i] = *v as i32;
    }
    let p = UpP {
        planes: g.planes() as i64,
        dims,
    };
    let (n_in, n_out) = (g.planes() * g.in_vol(), g.planes() * g.out_vol());
    if !backward {
        let x = input(op, s, l, n_in)?;
        let (idx, lam) = forward_tables(g);
        let (idx, lam) = (dev.clone_htod(&idx)?, dev.clone_htod(&lam)?);
        let mut y = dev.alloc_zeros::<f32>(n_out)?;
        launch!(dev, "upsample_fwd", grid(n_out); &x, &mut y, &idx, &lam, &p);
        Ok(CudaStorage::wrap_cuda_slice(y, dev))
    } else {
        let gy = input(op, s, l, n_out)?;
        let (off, ent_o, ent_w) = inverse_tables(g);
        let (off, ent_o, ent_w) = (
            dev.clone_htod(&off)?,
            dev.clone_htod(&ent_o)?,
            dev.clone_htod(&ent_w)?,
        );
        let mut gx = dev.alloc_zeros::<f32>(n_in)?;
        launch!(dev, "upsample_bwd", grid(n_in); &gy, &mut gx, &off, &ent_o, &ent_w, &p);
        Ok(CudaStorage::wrap_cuda_slice(gx, dev))
    }
}
