//! The state-dict keys, shapes and parameter counts equal MONAI 1.6's
//! (`tests/fixtures/monai_keys.json`, made by `scripts/make_fixtures.py`).

mod common;

use std::collections::BTreeMap;

use petseg_models::{AttentionUnetConfig, ModelConfig, SegResNetConfig, UpsampleMode};

fn monai(name: &str) -> (usize, BTreeMap<String, Vec<usize>>) {
    let text = std::fs::read_to_string(common::fixture("monai_keys.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = &json[name];
    let count = entry["param_count"].as_u64().unwrap() as usize;
    let keys = entry["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    (count, keys)
}

/// Our key → shape map must be MONAI's minus exactly the `num_batches_tracked` scalars,
/// one per BatchNorm.
fn assert_same_keys(cfg: &ModelConfig, monai_name: &str, expected_count: usize) {
    let (count, mut theirs) = monai(monai_name);
    assert_eq!(count, expected_count, "fixture count for {monai_name}");
    let counters: Vec<String> = theirs
        .keys()
        .filter(|k| k.ends_with(".num_batches_tracked"))
        .cloned()
        .collect();
    for k in &counters {
        assert_eq!(theirs.remove(k), Some(vec![]), "{k} is a scalar");
    }
    let ours = cfg.param_shapes().unwrap();
    let missing: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (k, shape) in &theirs {
        assert_eq!(&ours[k], shape, "shape of {k}");
    }
    for k in &counters {
        let prefix = k.strip_suffix(".num_batches_tracked").unwrap();
        assert!(
            ours.contains_key(&format!("{prefix}.running_mean")),
            "{k} belongs to a BatchNorm of ours"
        );
    }
    assert_eq!(
        cfg.param_count().unwrap(),
        expected_count,
        "parameter count of {monai_name}"
    );
}

#[test]
fn segresnet_study_matches_monai() {
    assert_same_keys(
        &ModelConfig::SegResNet(SegResNetConfig::default()),
        "segresnet_study",
        4_701_346,
    );
}

#[test]
fn segresnet_deconv_matches_monai() {
    let cfg = SegResNetConfig {
        upsample_mode: UpsampleMode::Deconv,
        ..Default::default()
    };
    assert_same_keys(
        &ModelConfig::SegResNet(cfg),
        "segresnet_study_deconv",
        4_744_466,
    );
}

#[test]
fn attention_unet_study_matches_monai() {
    assert_same_keys(
        &ModelConfig::AttentionUnet(AttentionUnetConfig::default()),
        "attention_unet_study",
        5_909_562,
    );
}

#[test]
fn attention_unet_512_matches_monai() {
    let cfg = AttentionUnetConfig {
        channels: vec![16, 32, 64, 128, 256, 512],
        strides: vec![2; 5],
        ..Default::default()
    };
    assert_same_keys(
        &ModelConfig::AttentionUnet(cfg),
        "attention_unet_512",
        23_674_814,
    );
}

#[test]
fn buffers_are_not_counted() {
    let cfg = ModelConfig::AttentionUnet(AttentionUnetConfig::default());
    let shapes = cfg.param_shapes().unwrap();
    let all: usize = shapes.values().map(|s| s.iter().product::<usize>()).sum();
    let buffers: usize = shapes
        .iter()
        .filter(|(k, _)| petseg_models::is_buffer(k))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert!(buffers > 0);
    assert_eq!(all - buffers, cfg.param_count().unwrap());
}
