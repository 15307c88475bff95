//! `petseg phantom`: write the synthetic PSMA PET/CT cohort (`docs/method/cohort.md`).

use std::path::PathBuf;

use anyhow::Context;
use petseg_io::phantom::{write_cohort_with, PhantomConfig, Size};

/// Arguments of `petseg phantom`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes the nnU-Net layout: imagesTr/{ID}_0000.nii.gz (CT in HU on the PET grid),
imagesTr/{ID}_0001.nii.gz (PET in SUVbw), labelsTr/{ID}.nii.gz (lesion mask),
plus manifest.json (every case's files, patient ids, lesion counts) and
lesions.json (per-lesion volume, SUVmax, region). Same seed, same bytes.

Examples:
  petseg phantom --out data/phantom-small --cases 24 --seed 42
  petseg phantom --out data/phantom-full --cases 4 --seed 7 --size full")]
pub struct Args {
    /// Output folder (created if needed; must be empty unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of cases.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub cases: u32,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Field of view: `small` (abdomen-pelvis crop, 96x72x112 at 4 mm, fast)
    /// or `full` (whole body, 192x192x~510 at 3.65x3.65x3.5 mm).
    #[arg(long, value_enum, default_value_t = SizeArg::Small)]
    pub size: SizeArg,
    /// Write into a folder that already has content (files of the same
    /// names are replaced).
    #[arg(long)]
    pub force: bool,
    /// Print a JSON summary on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also write each case as DICOM PT and CT series (dicom/{ID}/PT, dicom/{ID}/CT),
    /// for `petseg convert --batch OUT/dicom`.
    #[arg(long)]
    pub dicom: bool,
    /// Lowest lesion SUVmax. The default (3) keeps the study's distribution,
    /// in which about a fifth of the lesions are as faint as bowel loops;
    /// a higher floor (e.g. 8) makes every lesion conspicuous.
    #[arg(long, default_value_t = petseg_io::phantom::targets::SUV_CLAMP.0)]
    pub lesion_suv_min: f64,
    /// Smallest lesion volume (ml); default 0.5.
    #[arg(long, default_value_t = petseg_io::phantom::targets::VOLUME_CLAMP_ML.0)]
    pub lesion_volume_min_ml: f64,
}

/// Phantom size on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SizeArg {
    /// Abdomen-pelvis crop, 96x72x112 PET voxels of 4 mm.
    Small,
    /// Whole body, 192x192x~510 PET voxels.
    Full,
}

impl From<SizeArg> for Size {
    fn from(s: SizeArg) -> Size {
        match s {
            SizeArg::Small => Size::Small,
            SizeArg::Full => Size::Full,
        }
    }
}

/// Runs `petseg phantom`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.out.exists() {
        anyhow::ensure!(
            args.out.is_dir(),
            "--out {} exists and is not a folder",
            args.out.display()
        );
        let non_empty = std::fs::read_dir(&args.out)
            .with_context(|| format!("cannot read --out folder {}", args.out.display()))?
            .next()
            .is_some();
        anyhow::ensure!(
            !non_empty || args.force,
            "--out {} is not empty; choose an empty folder or pass --force",
            args.out.display()
        );
    }
    let mut config = PhantomConfig::new(args.size.into());
    config.lesion_suv_max_range.0 = args.lesion_suv_min;
    config.lesion_volume_range_ml.0 = args.lesion_volume_min_ml;
    let n = args.cases as usize;
    let t0 = std::time::Instant::now();
    let mut total_lesions = 0usize;
    let manifest = write_cohort_with(&args.out, &config, n, args.seed, |s| {
        total_lesions += s.n_lesions;
        eprintln!(
            "[{}/{n}] {} ({}): {} lesion{}, {:.2} s",
            s.index + 1,
            s.id,
            s.patient_id,
            s.n_lesions,
            if s.n_lesions == 1 { "" } else { "s" },
            s.seconds
        );
    })
    .with_context(|| format!("writing the phantom cohort to {}", args.out.display()))?;
    if args.dicom {
        let dir = args.out.join("dicom");
        petseg_io::dicom::write_cohort_dicom(&dir, &config, n, args.seed, Default::default())
            .with_context(|| format!("writing DICOM series to {}", dir.display()))?;
    }
    let manifest_path = args.out.join("manifest.json");
    if args.json {
        let summary = serde_json::json!({
            "out": args.out,
            "manifest": manifest_path,
            "size": Size::from(args.size).as_str(),
            "seed": args.seed,
            "cases": manifest.cases.len(),
            "patients": manifest.patients().len(),
            "lesions": total_lesions,
            "seconds": t0.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "wrote {} cases ({} patients, {} lesions) in {:.1} s; manifest: {}",
            manifest.cases.len(),
            manifest.patients().len(),
            total_lesions,
            t0.elapsed().as_secs_f64(),
            manifest_path.display()
        );
    }
    Ok(())
}
