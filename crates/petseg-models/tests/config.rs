//! The serde registry: defaults, TOML/JSON round trips, names, validation errors.

use petseg_models::{AttentionUnetConfig, ModelConfig, ModelError, SegResNetConfig, UpsampleMode};

#[test]
fn names_parse_to_study_configs() {
    assert_eq!(
        "segresnet".parse::<ModelConfig>().unwrap(),
        ModelConfig::SegResNet(SegResNetConfig::default())
    );
    for name in ["attention_unet", "AttentionUnet", " attentionunet "] {
        assert_eq!(
            name.parse::<ModelConfig>().unwrap(),
            ModelConfig::AttentionUnet(AttentionUnetConfig::default())
        );
    }
    let err = "unet".parse::<ModelConfig>().unwrap_err();
    assert!(matches!(err, ModelError::UnknownModel { .. }));
    assert!(err.to_string().contains("\"unet\""), "{err}");
}

#[test]
fn study_defaults() {
    let s = SegResNetConfig::default();
    assert_eq!(
        (s.init_filters, s.in_channels, s.out_channels, s.norm_groups),
        (16, 2, 2, 8)
    );
    assert_eq!(
        (s.blocks_down.as_slice(), s.blocks_up.as_slice()),
        ([1, 2, 2, 4].as_slice(), [1, 1, 1].as_slice())
    );
    assert_eq!(
        (s.upsample_mode, s.dropout_prob, s.use_conv_final),
        (UpsampleMode::Nontrainable, None, true)
    );
    let a = AttentionUnetConfig::default();
    assert_eq!(a.channels, [16, 32, 64, 128, 256]);
    assert_eq!(
        (
            a.strides.as_slice(),
            a.kernel_size,
            a.up_kernel_size,
            a.dropout
        ),
        ([2, 2, 2, 2].as_slice(), 3, 3, 0.0)
    );
}

#[test]
fn toml_and_json_round_trip() {
    let configs = [
        ModelConfig::SegResNet(SegResNetConfig {
            upsample_mode: UpsampleMode::Deconv,
            dropout_prob: Some(0.2),
            ..Default::default()
        }),
        ModelConfig::SegResNet(SegResNetConfig::default()),
        ModelConfig::AttentionUnet(AttentionUnetConfig {
            channels: vec![16, 32, 64, 128, 256, 512],
            strides: vec![2; 5],
            dropout: 0.1,
            ..Default::default()
        }),
    ];
    for cfg in configs {
        let t = toml::to_string(&cfg).unwrap();
        assert_eq!(
            toml::from_str::<ModelConfig>(&t).unwrap(),
            cfg,
            "TOML:\n{t}"
        );
        let j = serde_json::to_string(&cfg).unwrap();
        assert_eq!(
            serde_json::from_str::<ModelConfig>(&j).unwrap(),
            cfg,
            "JSON: {j}"
        );
        assert!(t.starts_with(&format!("name = \"{}\"", cfg.name())), "{t}");
    }
}

#[test]
fn partial_toml_takes_defaults() {
    let cfg: ModelConfig =
        toml::from_str("name = \"segresnet\"\ninit_filters = 8\nupsample_mode = \"deconv\"")
            .unwrap();
    let expected = SegResNetConfig {
        init_filters: 8,
        upsample_mode: UpsampleMode::Deconv,
        ..Default::default()
    };
    assert_eq!(cfg, ModelConfig::SegResNet(expected));
    let cfg: ModelConfig =
        serde_json::from_str(r#"{"name": "attention_unet", "channels": [8, 16]}"#).unwrap();
    assert_eq!(
        cfg,
        ModelConfig::AttentionUnet(AttentionUnetConfig {
            channels: vec![8, 16],
            ..Default::default()
        })
    );
}

#[test]
fn unknown_fields_and_names_are_rejected() {
    let err = toml::from_str::<ModelConfig>("name = \"segresnet\"\ninit_filter = 8").unwrap_err();
    assert!(err.to_string().contains("init_filter"), "{err}");
    let err = toml::from_str::<ModelConfig>("name = \"unetr\"").unwrap_err();
    assert!(err.to_string().contains("unetr"), "{err}");
    let err =
        toml::from_str::<ModelConfig>("name = \"segresnet\"\nupsample_mode = \"pixelshuffle\"")
            .unwrap_err();
    assert!(err.to_string().contains("pixelshuffle"), "{err}");
}

fn invalid(cfg: ModelConfig, field: &str) {
    let err = cfg.validate().unwrap_err();
    match &err {
        ModelError::Config { field: f, .. } => assert_eq!(*f, field, "{err}"),
        other => panic!("expected a Config error for {field}, got {other}"),
    }
    // building validates too
    assert!(cfg.param_count().is_err());
}

#[test]
fn validation_names_the_field() {
    let seg = SegResNetConfig::default;
    invalid(
        ModelConfig::SegResNet(SegResNetConfig {
            init_filters: 12,
            ..seg()
        }),
        "init_filters",
    );
    invalid(
        ModelConfig::SegResNet(SegResNetConfig {
            blocks_up: vec![1, 1],
            ..seg()
        }),
        "blocks_up",
    );
    invalid(
        ModelConfig::SegResNet(SegResNetConfig {
            blocks_down: vec![],
            blocks_up: vec![],
            ..seg()
        }),
        "blocks_down",
    );
    invalid(
        ModelConfig::SegResNet(SegResNetConfig {
            in_channels: 0,
            ..seg()
        }),
        "in_channels",
    );
    invalid(
        ModelConfig::SegResNet(SegResNetConfig {
            dropout_prob: Some(1.0),
            ..seg()
        }),
        "dropout_prob",
    );
    let att = AttentionUnetConfig::default;
    invalid(
        ModelConfig::AttentionUnet(AttentionUnetConfig {
            channels: vec![16],
            ..att()
        }),
        "channels",
    );
    invalid(
        ModelConfig::AttentionUnet(AttentionUnetConfig {
            strides: vec![2, 2, 2],
            ..att()
        }),
        "strides",
    );
    invalid(
        ModelConfig::AttentionUnet(AttentionUnetConfig {
            kernel_size: 4,
            ..att()
        }),
        "kernel_size",
    );
    invalid(
        ModelConfig::AttentionUnet(AttentionUnetConfig {
            up_kernel_size: 2,
            ..att()
        }),
        "up_kernel_size",
    );
    invalid(
        ModelConfig::AttentionUnet(AttentionUnetConfig {
            dropout: -0.1,
            ..att()
        }),
        "dropout",
    );
    invalid(
        ModelConfig::AttentionUnet(AttentionUnetConfig {
            out_channels: 0,
            ..att()
        }),
        "out_channels",
    );
}

#[test]
fn channels_and_size_divisor() {
    let seg = ModelConfig::SegResNet(SegResNetConfig::default());
    assert_eq!(
        (seg.in_channels(), seg.out_channels(), seg.size_divisor()),
        (2, 2, 8)
    );
    let features = ModelConfig::SegResNet(SegResNetConfig {
        use_conv_final: false,
        ..Default::default()
    });
    assert_eq!(features.out_channels(), 16);
    let att = ModelConfig::AttentionUnet(AttentionUnetConfig {
        strides: vec![2, 1, 2, 2, 7],
        ..Default::default()
    });
    assert_eq!(
        att.size_divisor(),
        8,
        "only the first channels.len() − 1 strides are used"
    );
    assert_eq!(att.to_string(), "attention_unet");
}
