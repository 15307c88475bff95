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
