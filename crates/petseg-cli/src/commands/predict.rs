//! `petseg predict`: segment PET/CT cases with trained weights.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use candle_nn::VarMap;
use petseg_augment::PreprocessConfig;
use petseg_io::manifest::Manifest;
use petseg_io::nifti::{read_nifti_f32, write_nifti};
use petseg_models::{weights, ModelConfig, Segmenter};
use petseg_train::config::RunConfig;
use petseg_train::predict::{predict_case, Ensemble, PredictConfig, Prediction};
use petseg_train::{BlendMode, DeviceSpec, Precision, SlidingWindowConfig};

/// Arguments of `petseg predict`.
///
/// Single case:
///   petseg predict --model segresnet --weights runs/a/model_best.safetensors \
///       --ct CT.nii.gz --pet PET.nii.gz --out MASK.nii.gz --probabilities PROB.nii.gz
/// Every case of a manifest (or only --ids), one mask per case in --out-dir:
///   petseg predict --run-config runs/a/config.toml --weights W1 --weights W2 \
///       --manifest data/manifest.json --out-dir preds --tta
///
/// Weights are ours (safetensors) or MONAI's (.pt/.pth/.safetensors); several
/// --weights form an ensemble (probability mean, or --ensemble vote). The mask
/// is written on the PET's original grid with its affine.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Network name with the study's defaults (segresnet, attention_unet).
    #[arg(long, conflicts_with = "run_config")]
    pub model: Option<String>,
    /// A run's config.toml: network and preprocessing exactly as trained.
    #[arg(long)]
    pub run_config: Option<PathBuf>,
    /// Weights file(s); several make an ensemble.
    #[arg(long, required = true)]
    pub weights: Vec<PathBuf>,
    /// CT in HU (single-case mode).
    #[arg(long, requires_all = ["pet", "out"])]
    pub ct: Option<PathBuf>,
    /// PET in SUV (single-case mode).
    #[arg(long)]
    pub pet: Option<PathBuf>,
    /// Output mask (single-case mode), .nii.gz.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the lesion probability map (single-case mode).
    #[arg(long)]
    pub probabilities: Option<PathBuf>,
    /// Manifest mode: predict its cases.
    #[arg(long, conflicts_with = "ct", requires = "out_dir")]
    pub manifest: Option<PathBuf>,
    /// Manifest mode: only these case ids (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub ids: Vec<String>,
    /// Manifest mode: output folder ({id}.nii.gz).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Window size (cubic), voxels.
    #[arg(long, default_value_t = 128)]
    pub roi: usize,
    /// Window overlap in [0, 1).
    #[arg(long, default_value_t = 0.25)]
    pub overlap: f64,
    /// Blending: gaussian or constant.
    #[arg(long, default_value = "gaussian")]
    pub mode: String,
    /// Windows per network call.
    #[arg(long, default_value_t = 1)]
    pub sw_batch_size: usize,
    /// Flip test-time augmentation (8 flips).
    #[arg(long)]
    pub tta: bool,
    /// Ensemble rule: mean or vote.
    #[arg(long, default_value = "mean")]
    pub ensemble: String,
    /// Device: cpu, cuda or cuda:N (CUDA needs a petseg built with
    /// --features cuda). Blending and accumulation stay f32 on the CPU.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Network precision: f32 or bf16 autocast (probabilities are f32 either way).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

/// Loaded networks plus the preprocessing they expect.
pub struct Models {
    /// The networks (one per weights file).
    pub nets: Vec<Box<dyn Segmenter>>,
    /// Preprocessing.
    pub preprocess: PreprocessConfig,
}

/// Builds one network per weights file, on `device` (weights are read on
/// the CPU, then copied there).
pub fn load_models(
    model: &ModelConfig,
    preprocess: PreprocessConfig,
    weight_files: &[PathBuf],
    device: &Device,
) -> Result<Models> {
    let mut nets = Vec::new();
    for w in weight_files {
        let vm = VarMap::new();
        model
            .build_seeded(&vm, 0, &Device::Cpu)
            .context("building the network")?;
        weights::load_weights(&vm, w)
            .with_context(|| format!("loading weights {}", w.display()))?;
        let net = model
            .build_frozen(&vm, device)
            .context("building the network")?;
        nets.push(net);
    }
    Ok(Models { nets, preprocess })
}

/// Writes a prediction atomically (temp file + rename).
pub fn write_prediction(pred: &Prediction, out: &Path, probabilities: Option<&Path>) -> Result<()> {
    let write = |path: &Path, f: &dyn Fn(&Path) -> petseg_io::Result<()>| -> Result<()> {
        let name = path
            .file_name()
            .context("output path has no file name")?
            .to_string_lossy()
            .to_string();
        let tmp = path.with_file_name(format!(".tmp-{}-{name}", std::process::id()));
        f(&tmp).with_context(|| format!("writing {}", path.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    };
    if let Some(p) = probabilities {
        write(p, &|t| write_nifti(t, &pred.probabilities[1]))?;
    }
    write(out, &|t| write_nifti(t, &pred.mask))
}

/// Runs `petseg predict`.
pub fn run(args: Args) -> Result<()> {
    // Before anything is read or written: a device this build cannot use.
    let device = args.device.open()?;
    if let Some(w) = args.precision.slow_on(&device) {
        eprintln!("{w}");
    }
    let (model, preprocess) = match (&args.run_config, &args.model) {
        (Some(p), _) => {
            let cfg = RunConfig::load(p)
                .with_context(|| format!("reading run config {}", p.display()))?;
            (cfg.model, cfg.preprocess)
        }
        (None, Some(name)) => {
            let m: ModelConfig =
                toml::from_str(&format!("name = {name:?}")).with_context(|| {
                    format!("--model {name:?}: expected segresnet or attention_unet")
                })?;
            (m, PreprocessConfig::default())
        }
        (None, None) => bail!("give --model NAME or --run-config RUN/config.toml"),
    };
    let models = load_models(&model, preprocess, &args.weights, &device)?;
    let cfg = PredictConfig {
        window: SlidingWindowConfig {
            roi: [args.roi; 3],
            overlap: args.overlap,
            mode: args.mode.parse::<BlendMode>()?,
            sw_batch_size: args.sw_batch_size,
            ..Default::default()
        },
        tta: args.tta,
        ensemble: match args.ensemble.as_str() {
            "mean" => Ensemble::Mean,
            "vote" => Ensemble::Vote,
            other => bail!("--ensemble {other:?}: expected mean or vote"),
        },
        precision: args.precision,
    };
    let nets: Vec<&dyn Segmenter> = models.nets.iter().map(|n| n.as_ref()).collect();
    let one = |ct: &Path, pet: &Path, out: &Path, prob: Option<&Path>| -> Result<()> {
        let ct_v = read_nifti_f32(ct).with_context(|| format!("reading CT {}", ct.display()))?;
        let pet_v =
            read_nifti_f32(pet).with_context(|| format!("reading PET {}", pet.display()))?;
        let t0 = std::time::Instant::now();
        let pred = predict_case(&nets, &device, &ct_v, &pet_v, &models.preprocess, &cfg)
            .with_context(|| format!("predicting {}", pet.display()))?;
        write_prediction(&pred, out, prob)?;
        let n_fg = pred
            .mask
            .as_raster_slice()
            .iter()
            .filter(|&&v| v > 0)
            .count();
        eprintln!(
            "{} -> {} ({n_fg} lesion voxels, {:.1} s)",
            pet.display(),
            out.display(),
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    };
    if let Some(mpath) = &args.manifest {
        let m = Manifest::load(mpath)
            .with_context(|| format!("reading manifest {}", mpath.display()))?;
        let dir = args
            .out_dir
            .as_ref()
            .context("--manifest needs --out-dir")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ids: Vec<String> = if args.ids.is_empty() {
            m.cases.iter().map(|c| c.id.clone()).collect()
        } else {
            args.ids.clone()
        };
        for id in &ids {
            let c = m
                .case(id)
                .with_context(|| format!("case {id} is not in {}", mpath.display()))?;
            one(
                &m.resolve(&c.ct),
                &m.resolve(&c.pet),
                &dir.join(format!("{id}.nii.gz")),
                None,
            )?;
        }
        return Ok(());
    }
    match (&args.ct, &args.pet, &args.out) {
        (Some(ct), Some(pet), Some(out)) => one(ct, pet, out, args.probabilities.as_deref()),
        _ => bail!("give --ct, --pet and --out, or --manifest and --out-dir"),
    }
}
