//! Values and gradients against PyTorch (fixtures from scripts/make_fixtures.py,
//! torch.nn.functional in f32). Max abs error ≤ 1e-4 for outputs and every
//! gradient, through the f32 path used for training.

use candle_core::{Device, Tensor, Var};
use petseg_ops3d::*;
use std::collections::HashMap;

const TOL: f32 = 1e-4;

type OpFn = Box<dyn Fn(&HashMap<&str, Tensor>) -> candle_core::Result<Tensor>>;

fn cases() -> Vec<(&'static str, OpFn)> {
    let conv = |s: [usize; 3], p: [usize; 3], d: [usize; 3], groups| Conv3dConfig {
        stride: s,
        padding: p,
        dilation: d,
        groups,
    };
    let ups = |t: UpsampleTarget, ac: bool| -> OpFn {
        Box::new(move |m| upsample_trilinear3d(&m["x"], t, ac))
    };
    let near = |t: UpsampleTarget| -> OpFn { Box::new(move |m| upsample_nearest3d(&m["x"], t)) };
    let k3s1p1 = || -> OpFn {
        Box::new(move |m| {
            conv3d(
                &m["x"],
                &m["w"],
                m.get("b"),
                &conv([1; 3], [1; 3], [1; 3], 1),
            )
        })
    };
    vec![
        ("conv_k3s1p1", k3s1p1()),
        (
            "conv_k3s2p1",
            Box::new(move |m| conv3d(&m["x"], &m["w"], None, &conv([2; 3], [1; 3], [1; 3], 1))),
        ),
        (
            "conv_k1",
            Box::new(move |m| conv3d(&m["x"], &m["w"], m.get("b"), &Conv3dConfig::default())),
        ),
        (
            "conv_grouped_dilated",
            Box::new(move |m| conv3d(&m["x"], &m["w"], None, &conv([1, 2, 1], [2; 3], [2; 3], 2))),
        ),
        (
            "convt_k3s2p1op1",
            Box::new(|m| {
                let cfg = ConvTranspose3dConfig {
                    stride: [2; 3],
                    padding: [1; 3],
                    output_padding: [1; 3],
                    ..Default::default()
                };
                conv_transpose3d(&m["x"], &m["w"], m.get("b"), &cfg)
            }),
        ),
        (
            "convt_k2s2",
            Box::new(|m| {
                conv_transpose3d(
                    &m["x"],
                    &m["w"],
                    None,
                    &ConvTranspose3dConfig {
                        stride: [2; 3],
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "maxpool_k2s2",
            Box::new(|m| max_pool3d(&m["x"], [2; 3], [2; 3], [0; 3])),
        ),
        (
            "maxpool_k3s2p1",
            Box::new(|m| max_pool3d(&m["x"], [3; 3], [2; 3], [1; 3])),
        ),
        (
            "avgpool_k2s2",
            Box::new(|m| avg_pool3d(&m["x"], [2; 3], [2; 3], [0; 3])),
        ),
        (
            "avgpool_k3s2p1",
            Box::new(|m| avg_pool3d(&m["x"], [3; 3], [2; 3], [1; 3])),
        ),
        ("tri_scale2", ups(UpsampleTarget::Scale([2.0; 3]), false)),
        ("tri_scale2_ac", ups(UpsampleTarget::Scale([2.0; 3]), true)),
        ("tri_size", ups(UpsampleTarget::Size([7, 9, 4]), false)),
        ("tri_size_ac", ups(UpsampleTarget::Size([7, 9, 4]), true)),
        (
            "tri_scale15",
            ups(UpsampleTarget::Scale([1.5, 1.7, 0.6]), false),
        ),
        ("nearest_scale2", near(UpsampleTarget::Scale([2.0; 3]))),
        ("nearest_size", near(UpsampleTarget::Size([7, 9, 4]))),
        (
            "nearest_scale15",
            near(UpsampleTarget::Scale([1.5, 1.7, 0.6])),
        ),
        (
            "groupnorm",
            Box::new(|m| group_norm(&m["x"], 4, m.get("gamma"), m.get("beta"), 1e-5)),
        ),
        (
            "instancenorm",
            Box::new(|m| instance_norm(&m["x"], None, None, 1e-5)),
        ),
        // forward and input gradient on the Winograd route (AVX-512)
        ("conv_k3s1p1_c32", k3s1p1()),
        // SegResNet at init_filters = 16: the 16 → 16 conv with bias, the
        // 16 → 32 stride-2 down-sampling conv without bias (≥ 32 output
        // channels: channel-vector route), MONAI's GroupNorm(8) on 16
        // channels, and instance norm with affine weight and bias
        ("conv_k3s1p1_c16", k3s1p1()),
        (
            "conv_k3s2p1_c16to32",
            Box::new(move |m| conv3d(&m["x"], &m["w"], None, &conv([2; 3], [1; 3], [1; 3], 1))),
        ),
        (
            "groupnorm_c16g8",
            Box::new(|m| group_norm(&m["x"], 8, m.get("gamma"), m.get("beta"), 1e-5)),
        ),
        (
            "instancenorm_affine",
            Box::new(|m| instance_norm(&m["x"], m.get("gamma"), m.get("beta"), 1e-5)),
        ),
    ]
}

fn max_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn matches_pytorch() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torch_ops.safetensors"
    );
    let fx = candle_core::safetensors::load(path, &Device::Cpu).expect("fixture file");
    let mut checked = 0;
    for (name, f) in cases() {
        let mut vars = HashMap::new();
        for k in ["x", "w", "b", "gamma", "beta"] {
            if let Some(t) = fx.get(&format!("{name}.{k}")) {
                vars.insert(k, Var::from_tensor(t).unwrap());
            }
        }
        let inputs: HashMap<&str, Tensor> = vars
            .iter()
            .map(|(k, v)| (*k, v.as_tensor().clone()))
            .collect();
        let y = f(&inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let err_y = max_err(&y, &fx[&format!("{name}.y")]);
        assert!(err_y <= TOL, "{name}: output max abs error {err_y}");
        let grads = y
            .mul(&fx[&format!("{name}.gy")])
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (k, v) in &vars {
            let g = grads
                .get(v)
                .unwrap_or_else(|| panic!("{name}: no gradient for {k}"));
            let err = max_err(g, &fx[&format!("{name}.g{k}")]);
            assert!(err <= TOL, "{name}: gradient of {k}: max abs error {err}");
            eprintln!("{name}: y {err_y:.1e}, g{k} {err:.1e}");
        }
        checked += 1;
    }
    assert_eq!(checked, 25);
}
