//! Kernel-level checks on shapes large enough to exercise tiling, slab phases
//! and rayon splits, plus layout, dtype and error handling.

mod common;
use candle_core::{DType, Device, Tensor, Var};
use common::{max_abs_diff, rand_t, to_vec};
use petseg_ops3d::*;

/// Direct 7-loop convolution in f64 (the independent reference).
fn naive_conv(x: &Tensor, w: &Tensor, cfg: &Conv3dConfig) -> Vec<f64> {
    let [n, c, id, ih, iw]: [usize; 5] = x.dims().try_into().unwrap();
    let [o, cg, kd, kh, kw]: [usize; 5] = w.dims().try_into().unwrap();
    let (xv, wv) = (to_vec(x), to_vec(w));
    let out = |i: usize, k: usize, a: usize| {
        (i + 2 * cfg.padding[a] - cfg.dilation[a] * (k - 1) - 1) / cfg.stride[a] + 1
    };
    let (od, oh, ow) = (out(id, kd, 0), out(ih, kh, 1), out(iw, kw, 2));
    let og = o / cfg.groups;
    let mut y = vec![0.0; n * o * od * oh * ow];
    for b in 0..n {
        for oc in 0..o {
            let grp = oc / og;
            for z in 0..od {
                for yy in 0..oh {
                    for xx in 0..ow {
                        let mut s = 0.0;
                        for ci in 0..cg {
                            for a in 0..kd {
                                for bb in 0..kh {
                                    for cc in 0..kw {
                                        let iz = (z * cfg.stride[0] + a * cfg.dilation[0]) as isize
                                            - cfg.padding[0] as isize;
                                        let iy = (yy * cfg.stride[1] + bb * cfg.dilation[1])
                                            as isize
                                            - cfg.padding[1] as isize;
                                        let ix = (xx * cfg.stride[2] + cc * cfg.dilation[2])
                                            as isize
                                            - cfg.padding[2] as isize;
                                        if iz < 0
                                            || iy < 0
                                            || ix < 0
                                            || iz >= id as isize
                                            || iy >= ih as isize
                                            || ix >= iw as isize
                                        {
                                            continue;
                                        }
                                        let xi = (((b * c + grp * cg + ci) * id + iz as usize)
                                            * ih
                                            + iy as usize)
                                            * iw
                                            + ix as usize;
                                        let wi = (((oc * cg + ci) * kd + a) * kh + bb) * kw + cc;
                                        s += xv[xi] * wv[wi];
                                    }
                                }
                            }
                        }
                        y[(((b * o + oc) * od + z) * oh + yy) * ow + xx] = s;
                    }
                }
            }
        }
    }
    y
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    to_vec(a).iter().zip(to_vec(b)).map(|(x, y)| x * y).sum()
}

/// Forward against the naive reference; input and weight gradients through the
/// adjoint identities ⟨conv(x,w), g⟩ = ⟨x, ∂x⟩ = ⟨w, ∂w⟩ (exact in f64), on
/// volumes that span many tiles and slabs.
#[test]
fn conv3d_large_matches_naive_and_adjoints() {
    let cases = [
        (
            [2, 4, 17, 19, 23],
            [6, 2, 3, 3, 3],
            Conv3dConfig {
                stride: [1; 3],
                padding: [1; 3],
                dilation: [1; 3],
                groups: 2,
            },
        ),
        (
            [1, 3, 20, 16, 21],
            [5, 3, 3, 3, 3],
            Conv3dConfig {
                stride: [2; 3],
                padding: [1; 3],
                ..Default::default()
            },
        ),
        (
            [1, 2, 15, 14, 13],
            [3, 2, 3, 2, 3],
            Conv3dConfig {
                stride: [2, 1, 3],
                padding: [2, 0, 1],
                dilation: [2, 1, 2],
                groups: 1,
            },
        ),
        ([2, 6, 9, 10, 11], [4, 6, 1, 1, 1], Conv3dConfig::default()),
    ];
    for (k, (xs, ws, cfg)) in cases.into_iter().enumerate() {
        let x = Var::from_tensor(&rand_t(k as u64, &xs)).unwrap();
        let w = Var::from_tensor(&rand_t(100 + k as u64, &ws)).unwrap();
        let y = conv3d(x.as_tensor(), w.as_tensor(), None, &cfg).unwrap();
        let reference = naive_conv(x.as_tensor(), w.as_tensor(), &cfg);
        let err = to_vec(&y)
            .iter()
            .zip(&reference)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err < 1e-10,
            "case {k}: forward differs from the naive conv by {err}"
        );
        let g = rand_t(200 + k as u64, y.dims());
        let grads = y.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
        let (gx, gw) = (grads.get(&x).unwrap(), grads.get(&w).unwrap());
        let lhs = dot(&y, &g);
        assert!(
            (lhs - dot(x.as_tensor(), gx)).abs() < 1e-8 * lhs.abs().max(1.0),
            "case {k}: input-gradient adjoint"
        );
        assert!(
            (lhs - dot(w.as_tensor(), gw)).abs() < 1e-8 * lhs.abs().max(1.0),
            "case {k}: weight-gradient adjoint"
        );
    }
}

/// ⟨convT(x, w), y⟩ = ⟨x, conv(y, w)⟩ on a multi-slab volume.
#[test]
fn conv_transpose3d_is_adjoint_of_conv3d() {
    let x = rand_t(1, &[2, 4, 9, 8, 10]);
    let w = rand_t(2, &[4, 3, 3, 3, 3]);
    let tcfg = ConvTranspose3dConfig {
        stride: [2; 3],
        padding: [1; 3],
        output_padding: [1; 3],
        ..Default::default()
    };
    let yt = conv_transpose3d(&x, &w, None, &tcfg).unwrap();
    assert_eq!(yt.dims(), [2, 3, 18, 16, 20]);
    let y = rand_t(3, yt.dims());
    let cfg = Conv3dConfig {
        stride: [2; 3],
        padding: [1; 3],
        ..Default::default()
    };
    let cy = conv3d(&y, &w, None, &cfg).unwrap();
    let (a, b) = (dot(&yt, &y), dot(&x, &cy));
    assert!((a - b).abs() < 1e-9 * a.abs().max(1.0), "{a} vs {b}");
}

/// The f32 path (used for training) agrees with the f64 path, forward and backward.
#[test]
fn f32_matches_f64() {
    let cfg = Conv3dConfig {
        stride: [2; 3],
        padding: [1; 3],
        ..Default::default()
    };
    let (x64, w64) = (rand_t(5, &[1, 4, 11, 12, 13]), rand_t(6, &[8, 4, 3, 3, 3]));
    let run = |dt: DType| {
        let x = Var::from_tensor(&x64.to_dtype(dt).unwrap()).unwrap();
        let w = Var::from_tensor(&w64.to_dtype(dt).unwrap()).unwrap();
        let y = conv3d(x.as_tensor(), w.as_tensor(), None, &cfg).unwrap();
        let y = group_norm(
            &upsample_trilinear3d(&y, UpsampleTarget::Scale([2.0; 3]), false).unwrap(),
            4,
            None,
            None,
            1e-5,
        )
        .unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        (y, g.get(&x).unwrap().clone(), g.get(&w).unwrap().clone())
    };
    let (a, b) = (run(DType::F64), run(DType::F32));
    assert!(max_abs_diff(&a.0, &b.0) < 1e-4);
    assert!(
        max_abs_diff(&a.1, &b.1) < 1e-3 * to_vec(&a.1).iter().fold(1.0f64, |m, v| m.max(v.abs()))
    );
    assert!(
        max_abs_diff(&a.2, &b.2) < 1e-3 * to_vec(&a.2).iter().fold(1.0f64, |m, v| m.max(v.abs()))
    );
}

/// f16/bf16 tensors enter the ops as they are (the graph keeps them in half
/// precision) and are computed in f32 inside: every result equals the f32
/// computation on the same (rounded) inputs, rounded once, and every gradient
/// comes back in its argument's dtype (f32 for the norms' f32 parameters).
#[test]
fn half_precision_computes_in_f32_and_stays_half() {
    let x = rand_t(7, &[1, 4, 4, 5, 6]);
    let w = rand_t(8, &[4, 4, 3, 3, 3]);
    let b = rand_t(9, &[4]);
    let gamma = rand_t(10, &[4]);
    let beta = rand_t(11, &[4]);
    let slope = Tensor::new(&[0.25f32], &Device::Cpu).unwrap();
    let cfg = Conv3dConfig {
        padding: [1; 3],
        ..Default::default()
    };
    // conv (+ bias) → group norm + ReLU → instance norm + PReLU → trilinear ×2 → max pool
    let net = |x: &Tensor, w: &Tensor, b: &Tensor, g: &Tensor, be: &Tensor, sl: &Tensor| {
        let y = conv3d(x, w, Some(b), &cfg)?;
        let y = group_norm_relu(&y, 2, Some(g), Some(be), 1e-5)?;
        let y = instance_norm_prelu(&y, sl, 1e-5)?;
        let y = upsample_trilinear3d(&y, UpsampleTarget::Scale([2.0; 3]), false)?;
        max_pool3d(&y, [2; 3], [2; 3], [0; 3])
    };
    for dt in [DType::F16, DType::BF16] {
        let half = |t: &Tensor| t.to_dtype(dt).unwrap();
        let (xh, wh, bh) = (half(&x), half(&w), half(&b));
        // each op alone: one rounding of the f32 result on the rounded inputs
        let f32_of = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let y = conv3d(&xh, &wh, Some(&bh), &cfg).unwrap();
        let y32 = conv3d(&f32_of(&xh), &f32_of(&wh), Some(&f32_of(&bh)), &cfg).unwrap();
        assert_eq!(y.dtype(), dt);
        assert_eq!(
            max_abs_diff(&f32_of(&y), &f32_of(&half(&y32))),
            0.0,
            "{dt:?} conv3d"
        );
        let z = group_norm_relu(&y, 2, Some(&gamma), Some(&beta), 1e-5).unwrap();
        let z32 = group_norm_relu(&f32_of(&y), 2, Some(&gamma), Some(&beta), 1e-5).unwrap();
        assert_eq!(z.dtype(), dt);
        assert_eq!(
            max_abs_diff(&f32_of(&z), &f32_of(&half(&z32))),
            0.0,
            "{dt:?} group_norm_relu"
        );
        let u = upsample_trilinear3d(&z, UpsampleTarget::Scale([2.0; 3]), false).unwrap();
        let u32 =
            upsample_trilinear3d(&f32_of(&z), UpsampleTarget::Scale([2.0; 3]), false).unwrap();
        assert_eq!(
            max_abs_diff(&f32_of(&u), &f32_of(&half(&u32))),
            0.0,
            "{dt:?} trilinear"
        );

        // gradients through the whole chain, in each argument's dtype
        let vars = [
            Var::from_tensor(&xh).unwrap(),
            Var::from_tensor(&wh).unwrap(),
            Var::from_tensor(&bh).unwrap(),
            Var::from_tensor(&gamma).unwrap(),
            Var::from_tensor(&beta).unwrap(),
            Var::from_tensor(&slope).unwrap(),
        ];
        let t: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
        let out = net(t[0], t[1], t[2], t[3], t[4], t[5]).unwrap();
        assert_eq!(out.dtype(), dt);
        let grads = out
            .to_dtype(DType::F32)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // the same chain in f32 on the rounded half inputs
        let vars32: Vec<Var> = t
            .iter()
            .map(|v| Var::from_tensor(&f32_of(v)).unwrap())
            .collect();
        let t32: Vec<&Tensor> = vars32.iter().map(|v| v.as_tensor()).collect();
        let out32 = net(t32[0], t32[1], t32[2], t32[3], t32[4], t32[5]).unwrap();
        let grads32 = out32.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for (i, (v, v32)) in vars.iter().zip(&vars32).enumerate() {
            let g = grads
                .get(v.as_tensor())
                .expect("a gradient for every argument");
            assert_eq!(g.dtype(), v.dtype(), "{dt:?} gradient {i}");
            let g32 = grads32.get(v32.as_tensor()).unwrap();
            let scale = to_vec(g32).iter().fold(1e-3f64, |m, v| m.max(v.abs()));
            // half-precision activations between the ops: a few roundings of 2⁻⁸ (bf16)
            assert!(
                max_abs_diff(&f32_of(g), g32) <= 0.1 * scale,
                "{dt:?} gradient {i}: {} vs scale {scale}",
                max_abs_diff(&f32_of(g), g32)
            );
        }
    }
}

/// One op on `args` (those flagged `true` in `dt`, the others f32, as the
/// norms keep their parameters) against the same op in f32 on the same
/// (rounded) values. Forward: the result keeps `dt` and equals the f32 result
/// rounded once, bit for bit. Backward of `Σ y²` (taken in f32, so the
/// gradient reaching the op is `2·y`, exact in `dt`): every argument gets a
/// gradient in its own dtype, equal bit for bit to the f32 backward of the
/// same upstream gradient, rounded once to that dtype.
fn half_op_is_f32_rounded_once(
    name: &str,
    dt: DType,
    args: &[(Tensor, bool)],
    f: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
) {
    let f32_of = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let vars: Vec<Var> = args
        .iter()
        .map(|(t, half)| {
            Var::from_tensor(&t.to_dtype(if *half { dt } else { DType::F32 }).unwrap()).unwrap()
        })
        .collect();
    let vars32: Vec<Var> = vars
        .iter()
        .map(|v| Var::from_tensor(&f32_of(v.as_tensor()).copy().unwrap()).unwrap())
        .collect();
    let ts = |vs: &[Var]| vs.iter().map(|v| v.as_tensor().clone()).collect::<Vec<_>>();
    let y = f(&ts(&vars)).unwrap();
    let y32 = f(&ts(&vars32)).unwrap();
    assert_eq!(y.dtype(), dt, "{dt:?} {name}: result dtype");
    assert_eq!(
        y32.dtype(),
        DType::F32,
        "{dt:?} {name}: f32 reference dtype"
    );
    let err = max_abs_diff(&f32_of(&y), &f32_of(&y32.to_dtype(dt).unwrap()));
    assert_eq!(
        err, 0.0,
        "{dt:?} {name}: forward is not the f32 result rounded once"
    );
    // a result far from zero and not constant: the comparison says something
    assert!(
        to_vec(&y).iter().any(|v| v.abs() > 0.1),
        "{dt:?} {name}: degenerate result"
    );

    let grads = f32_of(&y)
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    // detached: the reference backward must not reach the half graph
    let upstream = (f32_of(&y) * 2.0).unwrap().detach();
    let grads32 = y32
        .mul(&upstream)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (i, (v, v32)) in vars.iter().zip(&vars32).enumerate() {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{dt:?} {name}: no gradient for argument {i}"));
        assert_eq!(g.dtype(), v.dtype(), "{dt:?} {name}: gradient {i} dtype");
        assert_eq!(g.dims(), v.dims(), "{dt:?} {name}: gradient {i} shape");
        let g32 = grads32.get(v32.as_tensor()).unwrap();
        let err = max_abs_diff(&f32_of(g), &f32_of(&g32.to_dtype(v.dtype()).unwrap()));
        assert_eq!(
            err, 0.0,
            "{dt:?} {name}: gradient {i} is not the f32 gradient rounded once"
        );
        assert!(
            to_vec(g).iter().any(|v| *v != 0.0),
            "{dt:?} {name}: gradient {i} is all zeros"
        );
    }
}

/// The ops `half_precision_computes_in_f32_and_stays_half` does not reach,
/// in f16 and bf16: transposed convolution with bias (k3, s2, p1, output
/// padding 1), average pooling (k3, s2, p1, padded zeros counted), nearest
/// up-sampling (by scale and to a size), and the plain (unfused) group and
/// instance norms, with f32 affine parameters and without.
#[test]
fn half_precision_other_ops() {
    let x = rand_t(31, &[1, 4, 4, 5, 3]);
    let wt = rand_t(32, &[4, 3, 3, 3, 3]);
    let bt = rand_t(33, &[3]);
    let gamma = rand_t(34, &[4]);
    let beta = rand_t(35, &[4]);
    let tcfg = ConvTranspose3dConfig {
        stride: [2; 3],
        padding: [1; 3],
        output_padding: [1; 3],
        ..Default::default()
    };
    for dt in [DType::F16, DType::BF16] {
        half_op_is_f32_rounded_once(
            "conv_transpose3d",
            dt,
            &[(x.clone(), true), (wt.clone(), true), (bt.clone(), true)],
            |a| {
                let y = conv_transpose3d(&a[0], &a[1], Some(&a[2]), &tcfg)?;
                assert_eq!(y.dims(), [1, 3, 8, 10, 6]);
                Ok(y)
            },
        );
        half_op_is_f32_rounded_once("avg_pool3d", dt, &[(x.clone(), true)], |a| {
            let y = avg_pool3d(&a[0], [3; 3], [2; 3], [1; 3])?;
            assert_eq!(y.dims(), [1, 4, 2, 3, 2]);
            Ok(y)
        });
        half_op_is_f32_rounded_once("upsample_nearest3d scale", dt, &[(x.clone(), true)], |a| {
            upsample_nearest3d(&a[0], UpsampleTarget::Scale([2.0, 1.5, 3.0]))
        });
        half_op_is_f32_rounded_once("upsample_nearest3d size", dt, &[(x.clone(), true)], |a| {
            upsample_nearest3d(&a[0], UpsampleTarget::Size([7, 9, 5]))
        });
        half_op_is_f32_rounded_once(
            "group_norm affine",
            dt,
            &[
                (x.clone(), true),
                (gamma.clone(), false),
                (beta.clone(), false),
            ],
            |a| group_norm(&a[0], 2, Some(&a[1]), Some(&a[2]), 1e-5),
        );
        half_op_is_f32_rounded_once("group_norm plain", dt, &[(x.clone(), true)], |a| {
            group_norm(&a[0], 2, None, None, 1e-5)
        });
        half_op_is_f32_rounded_once("instance_norm plain", dt, &[(x.clone(), true)], |a| {
            instance_norm(&a[0], None, None, 1e-5)
        });
        half_op_is_f32_rounded_once(
            "instance_norm affine",
            dt,
            &[
                (x.clone(), true),
                (gamma.clone(), false),
                (beta.clone(), false),
            ],
            |a| instance_norm(&a[0], Some(&a[1]), Some(&a[2]), 1e-5),
        );
    }
}

/// Naive 3-D max pooling of one `[D, H, W]` plane: each window (clipped to
/// the plane; padding never wins) is scanned in D, H, W order and a value
/// replaces the running maximum only when strictly larger, so the first
/// maximum is the argmax. Returns the maxima and the gradient of `Σ y ⊙ gy`.
fn naive_max_pool_first(
    x: &[f64],
    dims: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    p: [usize; 3],
    gy: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let out: Vec<usize> = (0..3)
        .map(|a| (dims[a] + 2 * p[a] - k[a]) / s[a] + 1)
        .collect();
    let range = |a: usize, o: usize| {
        let start = (o * s[a]) as isize - p[a] as isize;
        let end = (start + k[a] as isize).min(dims[a] as isize);
        start.max(0) as usize..end as usize
    };
    let (mut y, mut gx) = (Vec::new(), vec![0.0; x.len()]);
    for z in 0..out[0] {
        for yy in 0..out[1] {
            for xx in 0..out[2] {
                let mut best: Option<(f64, usize)> = None;
                for iz in range(0, z) {
                    for iy in range(1, yy) {
                        for ix in range(2, xx) {
                            let i = (iz * dims[1] + iy) * dims[2] + ix;
                            if best.is_none_or(|(m, _)| x[i] > m) {
                                best = Some((x[i], i));
                            }
                        }
                    }
                }
                let (m, i) = best.unwrap();
                gx[i] += gy[y.len()];
                y.push(m);
            }
        }
    }
    (y, gx)
}

/// Max pooling of the one-plane tensor `x` (values `xv`, plane `dims`) in
/// `dt`, backward of `Σ y ⊙ gy` with `gy = 1, 2, 3, …` (integers, so every
/// gradient sum is exact in every dtype): the maxima and the input gradient
/// as f64.
fn max_pool_with_grad(
    xv: &[f64],
    dims: [usize; 3],
    dt: DType,
    k: [usize; 3],
    s: [usize; 3],
    p: [usize; 3],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let x = Tensor::from_vec(xv.to_vec(), (1, 1, dims[0], dims[1], dims[2]), &Device::Cpu)
        .unwrap()
        .to_dtype(dt)
        .unwrap();
    let x = Var::from_tensor(&x).unwrap();
    let y = max_pool3d(x.as_tensor(), k, s, p).unwrap();
    assert_eq!(y.dtype(), dt);
    let n = y.elem_count();
    let gy: Vec<f64> = (1..=n).map(|v| v as f64).collect();
    let gyt = Tensor::from_vec(gy.clone(), y.dims(), &Device::Cpu)
        .unwrap()
        .to_dtype(dt)
        .unwrap();
    let grads = y.mul(&gyt).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = grads.get(x.as_tensor()).unwrap();
    assert_eq!(gx.dtype(), dt);
    (to_vec(&y), to_vec(gx), gy)
}

/// Ties in max pooling: the documented rule (`max_pool3d`: "the backward
/// routes each gradient to the first maximum of its window", scanned in D, H,
/// W order, as PyTorch's CPU kernel) on windows with two or three equal maxima
/// placed so that the D-major first one differs from the last one and from
/// the first one of a scan in any other axis order (each other order, and the
/// last-maximum rule, picks another voxel in at least one of the four
/// windows). The whole gradient of each window lands on that voxel and
/// nowhere else; the forward is the tie value. Both kernel routes: W pairs
/// (k2 s2 p0 on W) and general windows.
#[test]
fn max_pool3d_ties_route_gradient_to_first_maximum() {
    for dt in [DType::F64, DType::F32, DType::BF16] {
        // Route with disjoint W pairs: plane 2×2×4, kernel 2, stride 2 → two windows.
        // Background values below every tie value; flat index (z·2 + y)·4 + x.
        let dims = [2, 2, 4];
        let mut xv: Vec<f64> = (0..16).map(|i| -2.0 - i as f64 / 16.0).collect();
        // window 0 (x ∈ {0, 1}): ties at (0,0,1) = 1 and (1,1,0) = 12;
        // also the first voxel of the window, (0,0,0), is a smaller value
        xv[1] = 1.5;
        xv[12] = 1.5;
        // window 1 (x ∈ {2, 3}): ties at (0,1,3) = 7, (1,0,2) = 10, (1,1,3) = 15;
        // a W-major scan would pick (1,0,2), an H-major one (1,0,2) too
        xv[7] = 0.75;
        xv[10] = 0.75;
        xv[15] = 0.75;
        let (y, gx, gy) = max_pool_with_grad(&xv, dims, dt, [2; 3], [2; 3], [0; 3]);
        assert_eq!(y, [1.5, 0.75], "{dt:?} pairs: forward");
        let mut want = vec![0.0; 16];
        want[1] = gy[0];
        want[7] = gy[1];
        assert_eq!(gx, want, "{dt:?} pairs: gradient not on the first maximum");

        // General route: plane 2×2×6, kernel (2, 2, 3), stride (2, 2, 3); flat
        // index (z·2 + y)·6 + x.
        let dims = [2, 2, 6];
        let mut xv: Vec<f64> = (0..24).map(|i| -1.0 - i as f64 / 32.0).collect();
        // window 0 (x ∈ 0..3): ties at (0,1,2) = 8 and (1,0,1) = 13 → 8
        // (W-major or H-major scans would pick 13)
        xv[8] = 2.0;
        xv[13] = 2.0;
        // window 1 (x ∈ 3..6): ties at (0,0,5) = 5, (0,1,3) = 9, (1,1,4) = 22 → 5
        xv[5] = -0.5;
        xv[9] = -0.5;
        xv[22] = -0.5;
        let (y, gx, gy) = max_pool_with_grad(&xv, dims, dt, [2, 2, 3], [2, 2, 3], [0; 3]);
        assert_eq!(y, [2.0, -0.5], "{dt:?} general: forward");
        let mut want = vec![0.0; 24];
        want[8] = gy[0];
        want[5] = gy[1];
        assert_eq!(
            gx, want,
            "{dt:?} general: gradient not on the first maximum"
        );
    }
}

/// Constant inputs: every voxel of every window ties, so each window's
/// gradient goes to its first voxel (after clipping the padding, which acts
/// as −∞ and never wins, so a negative constant stays the maximum), checked
/// against a naive first-maximum reference and, for the overlapping case,
/// voxel by voxel.
#[test]
fn max_pool3d_constant_input_ties() {
    for dt in [DType::F64, DType::F32, DType::BF16] {
        for (dims, k, s, p) in [
            ([4, 4, 4], [2; 3], [2; 3], [0; 3]),
            ([4, 5, 6], [3; 3], [1; 3], [1; 3]),
            ([5, 4, 7], [3, 2, 3], [2, 1, 2], [1, 1, 0]),
        ] {
            let xv = vec![-3.0; dims.iter().product()];
            let (y, gx, gy) = max_pool_with_grad(&xv, dims, dt, k, s, p);
            let (ry, rgx) = naive_max_pool_first(&xv, dims, k, s, p, &gy);
            assert!(
                y.iter().all(|&v| v == -3.0),
                "{dt:?} {dims:?} k{k:?}: forward"
            );
            assert_eq!(y.len(), ry.len(), "{dt:?} {dims:?} k{k:?}: output size");
            assert_eq!(gx, rgx, "{dt:?} {dims:?} k{k:?}: gradient");
            // the total gradient is conserved (nothing dropped, nothing doubled)
            assert_eq!(gx.iter().sum::<f64>(), gy.iter().sum::<f64>());
        }
        // k3 s1 p1 on 4×5×6: output voxel (z, y, x) clips its window to start at
        // (max(z−1, 0), max(y−1, 0), max(x−1, 0)); input (0, 0, 0) is the first
        // voxel of the 8 windows with z, y, x ∈ {0, 1}, and input (1, 1, 1) of
        // window (2, 2, 2) only.
        let dims = [4, 5, 6];
        let xv = vec![-3.0; 120];
        let (_, gx, gy) = max_pool_with_grad(&xv, dims, dt, [3; 3], [1; 3], [1; 3]);
        let o = |z: usize, y: usize, x: usize| (z * 5 + y) * 6 + x;
        let mut corner = 0.0;
        for z in 0..2 {
            for y in 0..2 {
                for x in 0..2 {
                    corner += gy[o(z, y, x)];
                }
            }
        }
        assert_eq!(gx[0], corner, "{dt:?}: input (0,0,0)");
        assert_eq!(gx[o(1, 1, 1)], gy[o(2, 2, 2)], "{dt:?}: input (1,1,1)");
        // the last row, plane and column of the input start no window
        assert_eq!(gx[o(3, 4, 5)], 0.0, "{dt:?}: input (3,4,5)");
        assert_eq!(gx[o(3, 0, 0)], 0.0, "{dt:?}: input (3,0,0)");
    }
}

/// Non-contiguous inputs give the same result as their contiguous copies.
#[test]
fn non_contiguous_inputs() {
    let base = rand_t(9, &[1, 5, 6, 3, 4]); // permute to [1, 3, 4, 5, 6]-ish views
    let x = base.permute((0, 2, 4, 1, 3)).unwrap(); // [1, 6, 4, 5, 3]
    assert!(!x.is_contiguous());
    let xc = x.contiguous().unwrap();
    let w = rand_t(10, &[2, 6, 3, 3, 3]).transpose(3, 4).unwrap();
    let cfg = Conv3dConfig {
        padding: [1; 3],
        ..Default::default()
    };
    assert_eq!(
        max_abs_diff(
            &conv3d(&x, &w, None, &cfg).unwrap(),
            &conv3d(&xc, &w.contiguous().unwrap(), None, &cfg).unwrap()
        ),
        0.0
    );
    assert_eq!(
        max_abs_diff(
            &group_norm(&x, 3, None, None, 1e-5).unwrap(),
            &group_norm(&xc, 3, None, None, 1e-5).unwrap()
        ),
        0.0
    );
    let t = UpsampleTarget::Scale([2.0; 3]);
    assert_eq!(
        max_abs_diff(
            &upsample_trilinear3d(&x, t, false).unwrap(),
            &upsample_trilinear3d(&xc, t, false).unwrap()
        ),
        0.0
    );
    assert_eq!(
        max_abs_diff(
            &avg_pool3d(&x, [2; 3], [1; 3], [1; 3]).unwrap(),
            &avg_pool3d(&xc, [2; 3], [1; 3], [1; 3]).unwrap()
        ),
        0.0
    );
}

/// Shape and configuration errors name the wrong dimension or field.
#[test]
fn errors_name_the_problem() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 4, 5, 5, 5), DType::F32, &dev).unwrap();
    let msg = |r: candle_core::Result<Tensor>| r.unwrap_err().to_string();
    let e = msg(conv3d(
        &x.flatten(0, 1).unwrap(),
        &Tensor::zeros((2, 4, 3, 3, 3), DType::F32, &dev).unwrap(),
        None,
        &Conv3dConfig::default(),
    ));
    assert!(e.contains("input x must be 5-D"), "{e}");
    let e = msg(conv3d(
        &x,
        &Tensor::zeros((2, 3, 3, 3, 3), DType::F32, &dev).unwrap(),
        None,
        &Conv3dConfig::default(),
    ));
    assert!(e.contains("weight dim 1"), "{e}");
    let e = msg(conv3d(
        &x,
        &Tensor::zeros((2, 4, 7, 3, 3), DType::F32, &dev).unwrap(),
        None,
        &Conv3dConfig::default(),
    ));
    assert!(e.contains("input D = 5"), "{e}");
    let e = msg(conv3d(
        &x,
        &Tensor::zeros((3, 2, 3, 3, 3), DType::F32, &dev).unwrap(),
        None,
        &Conv3dConfig {
            groups: 2,
            ..Default::default()
        },
    ));
    assert!(e.contains("groups = 2"), "{e}");
    let e = msg(conv3d(
        &x,
        &Tensor::zeros((2, 4, 1, 1, 1), DType::F32, &dev).unwrap(),
        Some(&Tensor::zeros(3, DType::F32, &dev).unwrap()),
        &Conv3dConfig::default(),
    ));
    assert!(e.contains("bias must have shape [2]"), "{e}");
    let e = msg(conv_transpose3d(
        &x,
        &Tensor::zeros((3, 2, 3, 3, 3), DType::F32, &dev).unwrap(),
        None,
        &ConvTranspose3dConfig::default(),
    ));
    assert!(e.contains("weight dim 0"), "{e}");
    let e = msg(conv_transpose3d(
        &x,
        &Tensor::zeros((4, 2, 3, 3, 3), DType::F32, &dev).unwrap(),
        None,
        &ConvTranspose3dConfig {
            output_padding: [0, 1, 0],
            ..Default::default()
        },
    ));
    assert!(e.contains("output_padding H"), "{e}");
    let e = msg(conv3d(
        &x,
        &Tensor::zeros((2, 4, 3, 0, 3), DType::F32, &dev).unwrap(),
        None,
        &Conv3dConfig::default(),
    ));
    assert!(e.contains("weight kernel H"), "{e}");
    let empty = Tensor::zeros((1, 4, 0, 5, 5), DType::F32, &dev).unwrap();
    let e = msg(conv_transpose3d(
        &empty,
        &Tensor::zeros((4, 2, 3, 3, 3), DType::F32, &dev).unwrap(),
        None,
        &ConvTranspose3dConfig::default(),
    ));
    assert!(e.contains("input D (dim 2) is 0"), "{e}");
    let e = msg(max_pool3d(&x, [2, 2, 2], [1, 1, 1], [0, 0, 2]));
    assert!(e.contains("padding W"), "{e}");
    let e = msg(group_norm(&x, 3, None, None, 1e-5));
    assert!(e.contains("num_groups = 3"), "{e}");
    let e = msg(group_norm(
        &x,
        2,
        Some(&Tensor::ones(3, DType::F32, &dev).unwrap()),
        None,
        1e-5,
    ));
    assert!(e.contains("gamma must have shape [4]"), "{e}");
    let e = msg(upsample_trilinear3d(
        &x,
        UpsampleTarget::Scale([2.0, 0.0, 2.0]),
        false,
    ));
    assert!(e.contains("scale H"), "{e}");
}

/// Repeated runs give bit-identical weight gradients (fixed summation order).
#[test]
fn weight_gradient_is_deterministic() {
    let x = Var::from_tensor(
        &rand_t(11, &[2, 3, 12, 13, 14])
            .to_dtype(DType::F32)
            .unwrap(),
    )
    .unwrap();
    let w = Var::from_tensor(&rand_t(12, &[4, 3, 3, 3, 3]).to_dtype(DType::F32).unwrap()).unwrap();
    let cfg = Conv3dConfig {
        padding: [1; 3],
        ..Default::default()
    };
    let gw = || {
        let y = conv3d(x.as_tensor(), w.as_tensor(), None, &cfg).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        g.get(&w)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let first = gw();
    for _ in 0..5 {
        assert_eq!(gw(), first);
    }
}

/// Output and gradients (x, γ, β) of a norm for the loss `Σ y²·r`, in f32.
/// `f` takes x, γ and β as variables (it may use them as it likes).
fn norm_grads(
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> Vec<Vec<f32>> {
    let f32_var = |seed, shape: &[usize]| {
        Var::from_tensor(&rand_t(seed, shape).to_dtype(DType::F32).unwrap()).unwrap()
    };
    let x = f32_var(21, &[2, 6, 9, 10, 11]);
    let (gamma, beta) = (f32_var(22, &[6]), f32_var(23, &[6]));
    let r = rand_t(24, &[2, 6, 9, 10, 11]).to_dtype(DType::F32).unwrap();
    let y = f(x.as_tensor(), gamma.as_tensor(), beta.as_tensor()).unwrap();
    let g = (y.sqr().unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // An argument `f` does not use has no gradient (empty here).
    let grad = |v: &Var| g.get(v).map(flat).unwrap_or_default();
    vec![flat(&y), grad(&x), grad(&gamma), grad(&beta)]
}

/// The fused `group_norm_relu` equals `group_norm` followed by candle's ReLU:
/// output and all three gradients.
#[test]
fn group_norm_relu_matches_composed() {
    let fused = norm_grads(|x, g, b| group_norm_relu(x, 3, Some(g), Some(b), 1e-5));
    let composed = norm_grads(|x, g, b| group_norm(x, 3, Some(g), Some(b), 1e-5)?.relu());
    for (k, (a, b)) in fused.iter().zip(&composed).enumerate() {
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = a.iter().zip(b).fold(0f32, |m, (u, v)| m.max((u - v).abs()));
        assert!(err <= 1e-6 * scale, "tensor {k}: max abs diff {err}");
    }
}

/// `instance_norm_prelu` against `instance_norm` followed by a composed PReLU
/// (`where(z > 0, z, w·z)`): output, input and slope gradients, f32, with a
/// negative and a positive slope.
#[test]
fn instance_norm_prelu_matches_composed() {
    for w0 in [0.25f32, -0.6] {
        let slope = Tensor::new(&[w0], &Device::Cpu).unwrap();
        // The slope enters as `0·β₀ + w0`, so the β slot of `norm_grads`
        // carries its gradient.
        let fused = norm_grads(|x, _, b| {
            let w = (b.narrow(0, 0, 1)? * 0.0)?.broadcast_add(&slope)?;
            instance_norm_prelu(x, &w, 1e-5)
        });
        let composed = norm_grads(|x, _, b| {
            let w = (b.narrow(0, 0, 1)? * 0.0)?.broadcast_add(&slope)?;
            let z = instance_norm(x, None, None, 1e-5)?;
            z.gt(0.0)?
                .where_cond(&z, &z.broadcast_mul(&w.reshape((1, 1, 1, 1, 1))?)?)
        });
        for (k, (a, b)) in fused.iter().zip(&composed).enumerate() {
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            let err = a.iter().zip(b).fold(0f32, |m, (u, v)| m.max((u - v).abs()));
            assert!(
                err <= 2e-6 * scale,
                "slope {w0}, tensor {k}: max abs diff {err}"
            );
        }
    }
}

/// The norms give bit-identical results with 1 and 3 threads (fixed-size
/// chunks and fixed summation order).
#[test]
fn norms_do_not_depend_on_thread_count() {
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let mut v = norm_grads(|x, g, b| group_norm_relu(x, 3, Some(g), Some(b), 1e-5));
                v.extend(norm_grads(|x, g, b| {
                    group_norm(x, 2, Some(g), Some(b), 1e-5)
                }));
                v.extend(norm_grads(|x, g, _| {
                    instance_norm_prelu(x, &g.narrow(0, 0, 1)?, 1e-5)
                }));
                v
            })
    };
    assert_eq!(run(1), run(3));
}
