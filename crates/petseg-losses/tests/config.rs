//! The loss registry: names, defaults, TOML/JSON round trips, validation.

use petseg_losses::{DiceFocalLoss, FocalAlpha, FocalKind, L1Dfl, LossConfig, LossError};

fn all_configs() -> Vec<LossConfig> {
    let mut v: Vec<LossConfig> = LossConfig::NAMES
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    v.push(LossConfig::L1dfl(L1Dfl {
        epsilon: 0.05,
        gamma: 3.0,
    }));
    let mut dfl = DiceFocalLoss::default();
    dfl.focal.kind = FocalKind::Softmax;
    dfl.focal.alpha = Some(FocalAlpha::PerClass(vec![0.25, 0.75]));
    dfl.dice.batch = true;
    dfl.lambda_focal = 0.5;
    v.push(LossConfig::DiceFocal(dfl));
    v
}

#[test]
fn names_parse_to_their_defaults() {
    for name in LossConfig::NAMES {
        let c: LossConfig = name.parse().unwrap();
        assert_eq!(c.name(), name);
        assert_eq!(c.to_string(), name);
        assert_eq!(c.build().unwrap().name(), name);
    }
    assert_eq!(
        "nope".parse::<LossConfig>(),
        Err(LossError::UnknownLoss("nope".into()))
    );
    match "dice_focal".parse::<LossConfig>().unwrap() {
        LossConfig::DiceFocal(d) => assert_eq!(
            d.focal.kind,
            FocalKind::Sigmoid,
            "MONAI's DiceFocalLoss uses a sigmoid focal term"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        LossConfig::default(),
        LossConfig::L1dfl(L1Dfl {
            epsilon: 0.1,
            gamma: 2.0
        })
    );
}

#[test]
fn configs_round_trip_through_json_and_toml() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Wrapper {
        loss: LossConfig,
    }
    for c in all_configs() {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            serde_json::from_str::<LossConfig>(&json).unwrap(),
            c,
            "{json}"
        );
        let w = Wrapper { loss: c.clone() };
        let text = toml::to_string(&w).unwrap();
        assert_eq!(toml::from_str::<Wrapper>(&text).unwrap(), w, "{text}");
    }
}

#[test]
fn partial_configs_take_defaults_and_typos_are_errors() {
    let c: LossConfig = serde_json::from_str(r#"{"name": "l1dfl", "epsilon": 0.05}"#).unwrap();
    assert_eq!(
        c,
        LossConfig::L1dfl(L1Dfl {
            epsilon: 0.05,
            gamma: 2.0
        })
    );
    let t: LossConfig =
        toml::from_str("name = \"dice_focal\"\nlambda_focal = 0.5\n[focal]\nkind = \"softmax\"\n")
            .unwrap();
    match t {
        LossConfig::DiceFocal(d) => {
            assert_eq!(
                (d.lambda_dice, d.lambda_focal, d.focal.kind, d.focal.gamma),
                (1.0, 0.5, FocalKind::Softmax, 2.0)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        serde_json::from_str::<LossConfig>(r#"{"name": "l1dfl", "epsilon": 0.05, "gama": 2}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<LossConfig>(r#"{"name": "dice2"}"#).is_err());
}

#[test]
fn build_validates_parameters() {
    let bad = [
        r#"{"name": "l1dfl", "epsilon": 0.3}"#,
        r#"{"name": "l1dfl", "gamma": -1}"#,
        r#"{"name": "focal", "alpha": 1.5}"#,
        r#"{"name": "dice", "smooth_nr": -1}"#,
        r#"{"name": "dice_ce", "lambda_ce": -0.5}"#,
    ];
    for text in bad {
        let c: LossConfig = serde_json::from_str(text).unwrap();
        assert!(
            matches!(c.build(), Err(LossError::InvalidParameter { .. })),
            "{text}"
        );
    }
}
