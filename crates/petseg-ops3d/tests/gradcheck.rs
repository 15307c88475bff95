//! Finite-difference gradient checks (f64) for every op and every parameter,
//! on small odd shapes with stride / padding / dilation / output_padding mixes,
//! and (f32) for the fast convolution kernels the networks run, which the f64
//! checks do not reach (f64 takes the im2col + `gemm` reference route).

mod common;
use common::{grad_check, grad_check_linear_f32, rand_t};
use petseg_ops3d::*;

#[test]
fn conv3d_grouped_strided_dilated_with_bias() {
    let cfg = Conv3dConfig {
        stride: [1, 2, 1],
        padding: [1, 0, 2],
        dilation: [1, 1, 2],
        groups: 2,
    };
    let ins = [
        rand_t(1, &[2, 4, 5, 6, 7]),
        rand_t(2, &[6, 2, 3, 2, 3]),
        rand_t(3, &[6]),
    ];
    grad_check("conv3d grouped", &ins, |t| {
        conv3d(&t[0], &t[1], Some(&t[2]), &cfg)
    });
}

#[test]
fn conv3d_k3_s2_p1_and_k3_s1_p1() {
    for (seed, s) in [(10, 2), (20, 1)] {
        let cfg = Conv3dConfig {
            stride: [s; 3],
            padding: [1; 3],
            ..Default::default()
        };
        let ins = [
            rand_t(seed, &[1, 2, 7, 6, 5]),
            rand_t(seed + 1, &[3, 2, 3, 3, 3]),
        ];
        grad_check(&format!("conv3d k3 s{s} p1"), &ins, |t| {
            conv3d(&t[0], &t[1], None, &cfg)
        });
    }
}

#[test]
fn conv3d_pointwise_and_strided_k1() {
    for (seed, s) in [(30, 1), (40, 2)] {
        let cfg = Conv3dConfig {
            stride: [s, 1, s],
            ..Default::default()
        };
        let ins = [
            rand_t(seed, &[2, 3, 4, 5, 3]),
            rand_t(seed + 1, &[2, 3, 1, 1, 1]),
            rand_t(seed + 2, &[2]),
        ];
        grad_check(&format!("conv3d k1 s{s}"), &ins, |t| {
            conv3d(&t[0], &t[1], Some(&t[2]), &cfg)
        });
    }
}

#[test]
fn conv_transpose3d_k3_s2_p1_op1_with_bias() {
    let cfg = ConvTranspose3dConfig {
        stride: [2; 3],
        padding: [1; 3],
        output_padding: [1; 3],
        ..Default::default()
    };
    let ins = [
        rand_t(50, &[1, 3, 3, 4, 5]),
        rand_t(51, &[3, 2, 3, 3, 3]),
        rand_t(52, &[2]),
    ];
    grad_check("conv_transpose3d k3 s2 p1 op1", &ins, |t| {
        conv_transpose3d(&t[0], &t[1], Some(&t[2]), &cfg)
    });
}

#[test]
fn conv_transpose3d_mixed_axes_and_dilation() {
    let cfg = ConvTranspose3dConfig {
        stride: [2, 1, 3],
        padding: [0, 1, 1],
        output_padding: [1, 0, 2],
        dilation: [1, 2, 1],
    };
    let ins = [rand_t(60, &[2, 2, 3, 4, 3]), rand_t(61, &[2, 3, 2, 3, 3])];
    grad_check("conv_transpose3d mixed", &ins, |t| {
        conv_transpose3d(&t[0], &t[1], None, &cfg)
    });
    // output_padding ≥ stride is allowed when smaller than the dilation
    let cfg = ConvTranspose3dConfig {
        stride: [1; 3],
        padding: [1; 3],
        output_padding: [1, 0, 0],
        dilation: [2, 1, 1],
    };
    let ins = [rand_t(62, &[1, 2, 3, 3, 4]), rand_t(63, &[2, 2, 3, 3, 3])];
    grad_check("conv_transpose3d op<dil", &ins, |t| {
        conv_transpose3d(&t[0], &t[1], None, &cfg)
    });
}

/// The f32 routes of the networks' convolutions, each for input, weight and
/// bias: the direct kernel with output channels as columns (< 32 of them)
/// and with channels as vectors, Winograd (forward, input gradient and, from
/// 128 channels, weight gradient), the sub-pixel strided input gradient, the
/// 1×1×1 kernel and the transposed convolution of the Attention U-Net. Which
/// of them a CPU runs depends on its instruction set (AVX-512 here; AVX2 or
/// the gemm route elsewhere); the check holds for whichever it is.
#[test]
fn conv_f32_kernels_of_the_networks() {
    let k3 = |s: usize| Conv3dConfig {
        stride: [s; 3],
        padding: [1; 3],
        ..Default::default()
    };
    let pointwise = Conv3dConfig::default();
    let cases = [
        ("direct, columns: 3→8 k3 s1", [1, 3, 7, 6, 9], 8, 3, k3(1)),
        (
            "direct, channel vectors, sub-pixel: 16→32 k3 s2",
            [1, 16, 7, 6, 9],
            32,
            3,
            k3(2),
        ),
        ("Winograd: 32→32 k3 s1", [2, 32, 5, 6, 7], 32, 3, k3(1)),
        (
            "Winograd with its weight gradient: 128→128 k3 s1",
            [1, 128, 3, 4, 5],
            128,
            3,
            k3(1),
        ),
        ("1×1×1: 32→16", [1, 32, 5, 6, 7], 16, 1, pointwise),
    ];
    for (i, (name, x, o, k, cfg)) in cases.into_iter().enumerate() {
        let seed = 200 + 3 * i as u64;
        let ins = [
            rand_t(seed, &x),
            rand_t(seed + 1, &[o, x[1], k, k, k]),
            rand_t(seed + 2, &[o]),
        ];
        grad_check_linear_f32(name, &ins, |t| conv3d(&t[0], &t[1], Some(&t[2]), &cfg));
    }
    let up = ConvTranspose3dConfig {
        stride: [2; 3],
        padding: [1; 3],
        output_padding: [1; 3],
        ..Default::default()
    };
    let ins = [
        rand_t(230, &[1, 32, 3, 4, 5]),
        rand_t(231, &[32, 16, 3, 3, 3]),
        rand_t(232, &[16]),
    ];
    grad_check_linear_f32("transposed: 32→16 k3 s2 p1 op1", &ins, |t| {
        conv_transpose3d(&t[0], &t[1], Some(&t[2]), &up)
    });
}

#[test]
fn max_pool3d_padded_and_plain() {
    let x = rand_t(70, &[2, 2, 5, 6, 7]);
    grad_check("max_pool3d k323 s221 p111", std::slice::from_ref(&x), |t| {
        max_pool3d(&t[0], [3, 2, 3], [2, 2, 1], [1, 1, 1])
    });
    grad_check("max_pool3d k2 s2", std::slice::from_ref(&x), |t| {
        max_pool3d(&t[0], [2; 3], [2; 3], [0; 3])
    });
}

#[test]
fn avg_pool3d_padded_and_plain() {
    let x = rand_t(80, &[1, 3, 5, 6, 7]);
    grad_check("avg_pool3d k323 s221 p111", std::slice::from_ref(&x), |t| {
        avg_pool3d(&t[0], [3, 2, 3], [2, 2, 1], [1, 1, 1])
    });
    grad_check("avg_pool3d k2 s2", std::slice::from_ref(&x), |t| {
        avg_pool3d(&t[0], [2; 3], [2; 3], [0; 3])
    });
}

#[test]
fn upsample_trilinear3d_all_targets() {
    let x = rand_t(90, &[1, 2, 3, 4, 5]);
    let cases = [
        (UpsampleTarget::Scale([2.0; 3]), false),
        (UpsampleTarget::Size([7, 5, 9]), true),
        (UpsampleTarget::Size([2, 5, 3]), false),
        (UpsampleTarget::Scale([1.5, 2.5, 0.8]), false),
        (UpsampleTarget::Scale([2.0, 1.5, 3.0]), true),
    ];
    for (target, ac) in cases {
        grad_check(
            &format!("trilinear {target:?} ac={ac}"),
            std::slice::from_ref(&x),
            |t| upsample_trilinear3d(&t[0], target, ac),
        );
    }
}

#[test]
fn upsample_nearest3d_all_targets() {
    let x = rand_t(100, &[2, 1, 3, 4, 5]);
    for target in [
        UpsampleTarget::Scale([2.0; 3]),
        UpsampleTarget::Size([5, 7, 3]),
        UpsampleTarget::Scale([1.5, 3.0, 0.6]),
    ] {
        grad_check(
            &format!("nearest {target:?}"),
            std::slice::from_ref(&x),
            |t| upsample_nearest3d(&t[0], target),
        );
    }
}

#[test]
fn group_norm_affine_and_plain() {
    let ins = [
        rand_t(110, &[2, 6, 3, 4, 5]),
        rand_t(111, &[6]),
        rand_t(112, &[6]),
    ];
    grad_check("group_norm affine", &ins, |t| {
        group_norm(&t[0], 3, Some(&t[1]), Some(&t[2]), 1e-5)
    });
    grad_check("group_norm gamma only", &ins[..2], |t| {
        group_norm(&t[0], 2, Some(&t[1]), None, 1e-5)
    });
    grad_check("instance_norm plain", &ins[..1], |t| {
        instance_norm(&t[0], None, None, 1e-5)
    });
    grad_check("instance_norm affine", &ins, |t| {
        instance_norm(&t[0], Some(&t[1]), Some(&t[2]), 1e-5)
    });
    grad_check(
        "group_norm beta only",
        &[ins[0].clone(), ins[2].clone()],
        |t| group_norm(&t[0], 6, None, Some(&t[1]), 1e-5),
    );
}

#[test]
fn group_norm_relu_affine_and_plain() {
    let ins = [
        rand_t(113, &[2, 6, 3, 4, 5]),
        rand_t(114, &[6]),
        rand_t(115, &[6]),
    ];
    grad_check("group_norm_relu affine", &ins, |t| {
        group_norm_relu(&t[0], 3, Some(&t[1]), Some(&t[2]), 1e-5)
    });
    grad_check("group_norm_relu plain", &ins[..1], |t| {
        group_norm_relu(&t[0], 2, None, None, 1e-5)
    });
}

#[test]
fn instance_norm_prelu_input_and_slope() {
    let ins = [rand_t(116, &[2, 3, 4, 5, 3]), rand_t(117, &[1])];
    grad_check("instance_norm_prelu", &ins, |t| {
        instance_norm_prelu(&t[0], &t[1], 1e-5)
    });
}
