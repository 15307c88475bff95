//! Prediction: probabilities, TTA, ensembles, and the way back to the PET grid.

mod common;

use candle_core::Device;
use candle_nn::VarMap;
use petseg_augment::Grid;
use petseg_io::Affine;
use petseg_models::Segmenter;
use petseg_train::predict::{
    argmax, ensemble_probabilities, to_original_grid, Ensemble, PredictConfig,
};
use petseg_train::{BlendMode, Precision, SlidingWindowConfig};

fn tiny_net(seed: u64) -> (VarMap, Box<dyn Segmenter>) {
    let cfg = common::tiny_config(std::path::Path::new("unused"), 1);
    let vm = VarMap::new();
    let net = cfg.model.build_seeded(&vm, seed, &Device::Cpu).unwrap();
    (vm, net)
}

fn pc(tta: bool, ensemble: Ensemble) -> PredictConfig {
    PredictConfig {
        window: SlidingWindowConfig {
            roi: [16; 3],
            overlap: 0.5,
            mode: BlendMode::Gaussian,
            sw_batch_size: 2,
            ..Default::default()
        },
        tta,
        ensemble,
        precision: Precision::F32,
    }
}

#[test]
fn probabilities_sum_to_one_with_and_without_tta() {
    let case = common::sphere_case(0, false);
    let (_vm, net) = tiny_net(1);
    let n: usize = case.shape().iter().product();
    for tta in [false, true] {
        let p = ensemble_probabilities(
            &[net.as_ref()],
            &Device::Cpu,
            &case,
            &pc(tta, Ensemble::Mean),
        )
        .unwrap();
        assert_eq!(p.len(), 2 * n);
        for v in 0..n {
            assert!((p[v] + p[n + v] - 1.0).abs() < 1e-5);
        }
    }
    let a = ensemble_probabilities(
        &[net.as_ref()],
        &Device::Cpu,
        &case,
        &pc(false, Ensemble::Mean),
    )
    .unwrap();
    let b = ensemble_probabilities(
        &[net.as_ref()],
        &Device::Cpu,
        &case,
        &pc(true, Ensemble::Mean),
    )
    .unwrap();
    assert!(
        a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-6),
        "TTA must change an untrained net's output"
    );
}

/// bf16 autocast in prediction: f32 probabilities that sum to one and stay
/// within 1e-2 of the f32 network's (the logits differ by ~1e-2 of their
/// scale, see petseg-models' tests/autocast.rs, and a softmax's
/// probabilities move by at most a quarter of the logit difference).
#[test]
fn bf16_prediction_gives_f32_probabilities_close_to_f32() {
    let case = common::sphere_case(1, false);
    let (_vm, net) = tiny_net(2);
    let n: usize = case.shape().iter().product();
    let run = |precision| {
        let cfg = PredictConfig {
            precision,
            ..pc(true, Ensemble::Mean)
        };
        ensemble_probabilities(&[net.as_ref()], &Device::Cpu, &case, &cfg).unwrap()
    };
    let (p32, p16) = (run(Precision::F32), run(Precision::Bf16));
    for v in 0..n {
        assert!((p16[v] + p16[n + v] - 1.0).abs() < 1e-5);
    }
    let max = p32
        .iter()
        .zip(&p16)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(max > 0.0 && max <= 1e-2, "max probability difference {max}");
}

#[test]
fn ensembles_mean_and_vote() {
    let case = common::sphere_case(1, false);
    let (_v1, n1) = tiny_net(1);
    let (_v2, n2) = tiny_net(2);
    let dev = Device::Cpu;
    let p1 =
        ensemble_probabilities(&[n1.as_ref()], &dev, &case, &pc(false, Ensemble::Mean)).unwrap();
    let p2 =
        ensemble_probabilities(&[n2.as_ref()], &dev, &case, &pc(false, Ensemble::Mean)).unwrap();
    let mean = ensemble_probabilities(
        &[n1.as_ref(), n2.as_ref()],
        &dev,
        &case,
        &pc(false, Ensemble::Mean),
    )
    .unwrap();
    for i in 0..mean.len() {
        assert!((mean[i] - (p1[i] + p2[i]) / 2.0).abs() < 1e-6);
    }
    // Vote of two networks: lesion only where both say lesion (ties → background).
    let vote = ensemble_probabilities(
        &[n1.as_ref(), n2.as_ref()],
        &dev,
        &case,
        &pc(false, Ensemble::Vote),
    )
    .unwrap();
    let (m1, m2, mv) = (argmax(&p1, 2), argmax(&p2, 2), argmax(&vote, 2));
    for i in 0..mv.len() {
        assert_eq!(mv[i], m1[i] & m2[i]);
    }
}

#[test]
fn probabilities_return_to_the_original_pet_grid() {
    // Network grid: 2 mm RAS, 20³, lesion probability 1 in a block.
    let grid = Grid {
        shape: [20, 20, 20],
        affine: Affine::from_spacing_origin([2.0; 3], [0.0; 3]).unwrap(),
    };
    let n = 8000;
    let mut probs = vec![0f32; 2 * n];
    for i in 0..20 {
        for j in 0..20 {
            for k in 0..20 {
                let fg = (8..12).contains(&i) && (4..10).contains(&j) && (10..16).contains(&k);
                let v = (i * 20 + j) * 20 + k;
                probs[v] = if fg { 0.0 } else { 1.0 };
                probs[n + v] = if fg { 1.0 } else { 0.0 };
            }
        }
    }
    // Original PET grid: 4 mm LPS, larger than the network grid.
    let pet_aff = Affine::from_rows([
        [-4.0, 0.0, 0.0, 46.0],
        [0.0, -4.0, 0.0, 46.0],
        [0.0, 0.0, 4.0, -4.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    .unwrap();
    let pred = to_original_grid(&probs, 2, &grid, [14, 14, 14], &pet_aff).unwrap();
    assert_eq!(pred.mask.affine(), &pet_aff);
    assert_eq!(pred.mask.shape(), [14, 14, 14]);
    let mut fg = 0;
    for (idx, &m) in pred.mask.as_raster_slice().iter().enumerate() {
        let ijk = pred.mask.raster_coords(idx).map(|v| v as f64);
        let w = pet_aff.voxel_to_world(ijk);
        let g = grid.affine.world_to_voxel(w);
        let inside = (16.0..22.0).contains(&w[0])
            && (8.0..18.0).contains(&w[1])
            && (20.0..30.0).contains(&w[2]);
        let clear_in = (17.0..=21.0).contains(&w[0])
            && (9.0..=17.0).contains(&w[1])
            && (21.0..=29.0).contains(&w[2]);
        if clear_in {
            assert_eq!(m, 1, "world {w:?} (net voxel {g:?}) should be lesion");
        }
        if !inside && m == 1 {
            // Only voxels within half a network voxel of the block may be lesion.
            assert!(
                (15.0..=23.0).contains(&w[0])
                    && (7.0..=19.0).contains(&w[1])
                    && (19.0..=31.0).contains(&w[2]),
                "{w:?}"
            );
        }
        fg += m as usize;
    }
    assert!(fg > 0);
    // Outside the network grid: background.
    assert_eq!(pred.mask.data()[[0, 0, 0]], 0);
}
