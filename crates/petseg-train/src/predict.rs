//! Whole-case prediction: sliding window over one or more networks, optional
//! flip test-time augmentation, fold ensembles, and the way back to the
//! original PET grid (`docs/method/inference.md`).
//!
//! The windows are cut on the CPU and sent to `device`; each window's
//! probabilities come back to the CPU, where they are blended and
//! accumulated in f32. Each window's logits (cast to f32 under bf16
//! autocast) are turned into softmax probabilities before blending, so that
//! TTA, ensembles and resampling all average probabilities. The blended probabilities (network grid) are resampled
//! trilinearly onto the original PET grid (outside the network grid:
//! background probability 1), then argmax gives a u8 mask with the PET's
//! affine.

use candle_core::{DType, Device, Tensor};
use petseg_augment::{Grid, PreparedCase, PreprocessConfig};
use petseg_io::resample::{resample_onto, Interpolation};
use petseg_io::{Affine, Volume};
use petseg_models::Segmenter;
use serde::{Deserialize, Serialize};

use crate::compute::Precision;
use crate::error::{Result, TrainError};
use crate::sliding::{sliding_window_inference, SlidingWindowConfig};

/// How the outputs of several networks (folds) are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ensemble {
    /// Average the probabilities, then argmax.
    #[default]
    Mean,
    /// Argmax per network, then the class chosen by most networks (ties
    /// go to the lower class index, i.e. background). The probability
    /// output is then the fraction of votes.
    Vote,
}

/// Prediction settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictConfig {
    /// The sliding window.
    pub window: SlidingWindowConfig,
    /// Flip test-time augmentation: average over the 8 combinations of
    /// flips of the three axes (applied per window, as nnU-Net mirrors).
    pub tta: bool,
    /// Combination of several networks.
    pub ensemble: Ensemble,
    /// The network's compute precision (`bf16`: autocast, see
    /// [`crate::compute`]); the logits are cast to f32 before the softmax,
    /// so probabilities, blending and accumulation are f32 either way.
    pub precision: Precision,
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            window: SlidingWindowConfig::default(),
            tta: false,
            ensemble: Ensemble::Mean,
            precision: Precision::F32,
        }
    }
}

/// Softmax probabilities `[K, ni, nj, nk]` of one network on a
/// `[C, ni, nj, nk]` image, by sliding window.
pub fn network_probabilities(
    net: &dyn Segmenter,
    device: &Device,
    image: &[f32],
    channels: usize,
    shape: [usize; 3],
    cfg: &PredictConfig,
) -> Result<Vec<f32>> {
    let model = net.config();
    let div = model.size_divisor();
    if cfg.window.roi.iter().any(|r| r % div != 0) {
        return Err(TrainError::Config(format!(
            "roi {:?}: each axis must be a multiple of {div} for {}",
            cfg.window.roi,
            model.name()
        )));
    }
    if channels != model.in_channels() {
        return Err(TrainError::Shape(format!(
            "image has {channels} channels, {} expects {}",
            model.name(),
            model.in_channels()
        )));
    }
    let k = model.out_channels();
    let roi = cfg.window.roi;
    let flips: Vec<Vec<usize>> = if cfg.tta {
        (0u8..8)
            .map(|m| {
                (0..3)
                    .filter(|a| m & (1 << a) != 0)
                    .map(|a| a + 2)
                    .collect()
            })
            .collect()
    } else {
        vec![vec![]]
    };
    sliding_window_inference(image, channels, shape, k, &cfg.window, |win, n| {
        let x = Tensor::from_slice(win, (n, channels, roi[0], roi[1], roi[2]), device)?
            .to_dtype(cfg.precision.dtype())?;
        let mut sum: Option<Tensor> = None;
        for dims in &flips {
            let xin = if dims.is_empty() {
                x.clone()
            } else {
                x.flip(dims)?
            };
            let logits = net.forward_t(&xin, false)?.to_dtype(DType::F32)?;
            let mut p = candle_nn::ops::softmax(&logits, 1)?;
            if !dims.is_empty() {
                p = p.flip(dims)?;
            }
            sum = Some(match sum {
                None => p,
                Some(s) => (s + p)?,
            });
        }
        let mean = (sum.expect("at least one flip combination") / flips.len() as f64)?;
        Ok(mean
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    })
}

/// Probabilities of an ensemble on the network grid, `[K, ni, nj, nk]`.
pub fn ensemble_probabilities(
    nets: &[&dyn Segmenter],
    device: &Device,
    case: &PreparedCase,
    cfg: &PredictConfig,
) -> Result<Vec<f32>> {
    let first = nets
        .first()
        .ok_or_else(|| TrainError::Config("no network to predict with".into()))?;
    let k = first.config().out_channels();
    let image = case.image_tensor_data();
    let n_vox: usize = case.shape().iter().product();
    let mut acc = vec![0f32; k * n_vox];
    for net in nets {
        if net.config().out_channels() != k {
            return Err(TrainError::Config(
                "ensemble members have different class counts".into(),
            ));
        }
        let p = network_probabilities(*net, device, &image, case.n_channels(), case.shape(), cfg)?;
        match cfg.ensemble {
            Ensemble::Mean => acc.iter_mut().zip(&p).for_each(|(a, v)| *a += v),
            Ensemble::Vote => {
                for v in 0..n_vox {
                    let best = argmax_at(&p, k, n_vox, v);
                    acc[best * n_vox + v] += 1.0;
                }
            }
        }
    }
    let n = nets.len() as f32;
    acc.iter_mut().for_each(|a| *a /= n);
    Ok(acc)
}

/// Index of the largest of the `k` channel values at voxel `v` (first wins ties).
pub fn argmax_at(p: &[f32], k: usize, n_vox: usize, v: usize) -> usize {
    let mut best = 0;
    for c in 1..k {
        if p[c * n_vox + v] > p[best * n_vox + v] {
            best = c;
        }
    }
    best
}

/// Argmax over channels of `[K, n]` values → `n` class indices.
pub fn argmax(p: &[f32], k: usize) -> Vec<u8> {
    let n = p.len() / k;
    (0..n).map(|v| argmax_at(p, k, n, v) as u8).collect()
}

/// A prediction on the original PET grid.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The class mask (0 background, 1 lesion) with the PET's affine.
    pub mask: Volume<u8>,
    /// Per-class probabilities on the PET grid (`[K]` volumes).
    pub probabilities: Vec<Volume<f32>>,
}

/// Maps `[K, grid]` probabilities (C order) onto the target grid
/// (trilinear, background 1 outside) and takes the argmax there.
pub fn to_original_grid(
    probs: &[f32],
    k: usize,
    grid: &Grid,
    target_shape: [usize; 3],
    target_affine: &Affine,
) -> Result<Prediction> {
    let n: usize = grid.shape.iter().product();
    if probs.len() != k * n {
        return Err(TrainError::Shape(format!(
            "{} probabilities for {k} classes on grid {:?}",
            probs.len(),
            grid.shape
        )));
    }
    let mut out = Vec::with_capacity(k);
    for c in 0..k {
        let arr = ndarray::Array3::from_shape_vec(grid.shape, probs[c * n..(c + 1) * n].to_vec())
            .map_err(|e| TrainError::Shape(e.to_string()))?;
        let vol = Volume::new(arr, grid.affine);
        let fill = if c == 0 { 1.0 } else { 0.0 };
        out.push(resample_onto(
            &vol,
            target_shape,
            target_affine,
            Interpolation::Linear,
            fill,
        )?);
    }
    let m: usize = target_shape.iter().product();
    let mut mask = vec![0u8; m];
    let slices: Vec<&[f32]> = out.iter().map(|v| v.as_raster_slice()).collect();
    for (v, o) in mask.iter_mut().enumerate() {
        let mut best = 0;
        for c in 1..k {
            if slices[c][v] > slices[best][v] {
                best = c;
            }
        }
        *o = best as u8;
    }
    Ok(Prediction {
        mask: Volume::from_raster(target_shape, mask, *target_affine)?,
        probabilities: out,
    })
}

/// Predicts one case from scanner volumes: preprocessing as in training,
/// sliding window over `nets`, back to the PET's grid.
pub fn predict_case(
    nets: &[&dyn Segmenter],
    device: &Device,
    ct_hu: &Volume<f32>,
    pet_suv: &Volume<f32>,
    pre: &PreprocessConfig,
    cfg: &PredictConfig,
) -> Result<Prediction> {
    let grid = pre.grid_for(pet_suv)?;
    let channels = pre.channels(ct_hu, pet_suv, &grid)?;
    let case = PreparedCase::from_volumes(
        "predict",
        &channels,
        None,
        &[pre.ct.pad_value(), 0.0],
        petseg_augment::preprocess::PET_CHANNEL,
    )?;
    let k = nets
        .first()
        .ok_or_else(|| TrainError::Config("no network to predict with".into()))?
        .config()
        .out_channels();
    let probs = ensemble_probabilities(nets, device, &case, cfg)?;
    to_original_grid(&probs, k, &grid, pet_suv.shape(), pet_suv.affine())
}
