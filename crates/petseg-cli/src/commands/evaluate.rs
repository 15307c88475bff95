//! `petseg evaluate`: the study's and autoPET's metrics for one case or a
//! folder of cases (`docs/method/evaluation.md`).
//!
//! Folder mode pairs files by case id, never by position: predictions
//! `PRED/{ID}.nii.gz`, ground truth `GT/{ID}.nii.gz` (nnU-Net `labelsTr`),
//! PET `PET/{ID}_0001.nii.gz` (nnU-Net `imagesTr`, channel 1). Every id must
//! be present on both the prediction and the GT side. With `--manifest`,
//! the GT and PET of each case are the manifest's `label` and `pet` files
//! (cases without a label are skipped) and predictions are `PRED/{ID}.nii.gz`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use petseg_eval::cohort::{markdown, summarize};
use petseg_eval::report::{lesions_csv, patients_csv};
use petseg_eval::{binarize, evaluate_case, BinarizePolicy, CaseEvaluation, Connectivity};
use petseg_io::manifest::Manifest;
use petseg_io::nifti::{read_nifti, read_nifti_f32, AnyVolume};
use petseg_io::Volume;

/// Arguments of `petseg evaluate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
petseg evaluate --pred pred/case_0001.nii.gz --gt labelsTr/case_0001.nii.gz --pet imagesTr/case_0001_0001.nii.gz --json\n  \
petseg evaluate --pred pred/ --gt labelsTr/ --pet imagesTr/ --out eval/\n  \
petseg evaluate --pred pred/ --manifest cohort/manifest.json --out eval/\n\n\
Folder mode writes patients.csv, lesions.csv, summary.json and summary.md into --out.")]
pub struct Args {
    /// Predicted mask file, or a folder of `{ID}.nii.gz` predictions.
    #[arg(long)]
    pub pred: PathBuf,
    /// Ground-truth mask file, or a folder of `{ID}.nii.gz` labels (not with --manifest).
    #[arg(
        long,
        required_unless_present = "manifest",
        conflicts_with = "manifest"
    )]
    pub gt: Option<PathBuf>,
    /// Dataset manifest (JSON) giving each case's label and PET; --pred is then a folder.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// PET in SUV (file, or folder of `{ID}_0001.nii.gz`); needed for C3 and uptake.
    #[arg(long)]
    pub pet: Option<PathBuf>,
    /// Voxel connectivity of lesions: 6, 18 or 26.
    #[arg(long, default_value_t = 18)]
    pub connectivity: u32,
    /// Treat every mask value > 0 as foreground instead of refusing non-binary masks.
    #[arg(long)]
    pub binarize: bool,
    /// Print the case's metrics (folder mode: the cohort summary) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Output folder of the folder mode.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Case id reported for a single case (default: the prediction's file stem).
    #[arg(long)]
    pub id: Option<String>,
}

/// Runs `petseg evaluate`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let conn = Connectivity::from_number(args.connectivity)?;
    let policy = if args.binarize {
        BinarizePolicy::Positive
    } else {
        BinarizePolicy::Strict
    };
    if let Some(m) = &args.manifest {
        if !args.pred.is_dir() {
            bail!(
                "--pred {} must be a folder with --manifest",
                args.pred.display()
            );
        }
        if args.pet.is_some() {
            bail!("--pet is taken from the manifest; do not pass it with --manifest");
        }
        let pairs = pairs_from_manifest(&args.pred, m)?;
        return folder(&args, pairs, conn, policy);
    }
    let gt = args
        .gt
        .as_deref()
        .context("--gt is required without --manifest")?;
    match (args.pred.is_dir(), gt.is_dir()) {
        (false, false) => single(&args, gt, conn, policy),
        (true, true) => {
            let pairs = pairs_from_folders(&args.pred, gt, args.pet.as_deref())?;
            folder(&args, pairs, conn, policy)
        }
        _ => bail!(
            "--pred {} and --gt {} must both be files or both be folders",
            args.pred.display(),
            gt.display()
        ),
    }
}

/// A 0/1 mask from any stored type under `policy`; errors name `path`.
pub fn read_mask(
    any: &AnyVolume,
    policy: BinarizePolicy,
    path: &Path,
) -> anyhow::Result<Volume<u8>> {
    let what = path.display().to_string();
    let shape = any.shape();
    let bits = match any {
        AnyVolume::U8(v) => binarize(v.as_raster_slice(), shape, policy, &what),
        AnyVolume::I8(v) => binarize(v.as_raster_slice(), shape, policy, &what),
        AnyVolume::I16(v) => binarize(v.as_raster_slice(), shape, policy, &what),
        AnyVolume::U16(v) => binarize(v.as_raster_slice(), shape, policy, &what),
        AnyVolume::I32(v) => binarize(v.as_raster_slice(), shape, policy, &what),
        AnyVolume::F32(v) => binarize(v.as_raster_slice(), shape, policy, &what),
        AnyVolume::F64(v) => binarize(v.as_raster_slice(), shape, policy, &what),
    }?;
    Ok(Volume::from_raster(shape, bits, *any.affine())?)
}

fn load_mask(path: &Path, policy: BinarizePolicy) -> anyhow::Result<Volume<u8>> {
    let any = read_nifti(path).with_context(|| format!("reading {}", path.display()))?;
    read_mask(&any, policy, path)
}

fn evaluate_files(
    id: &str,
    pred: &Path,
    gt: &Path,
    pet: Option<&Path>,
    conn: Connectivity,
    policy: BinarizePolicy,
) -> anyhow::Result<CaseEvaluation> {
    let p = load_mask(pred, policy)?;
    let g = load_mask(gt, policy)?;
    let pet = pet
        .map(|f| read_nifti_f32(f).with_context(|| format!("reading {}", f.display())))
        .transpose()?;
    evaluate_case(id, &p, &g, pet.as_ref(), conn).with_context(|| {
        format!(
            "case {id}: prediction {}, ground truth {}{}",
            pred.display(),
            gt.display(),
            pet.as_ref().map_or(String::new(), |_| " and PET".into())
        )
    })
}

/// The case id of a NIfTI file name (`X.nii.gz` / `X.nii` → `X`).
fn case_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .map(str::to_string)
}

fn single(
    args: &Args,
    gt: &Path,
    conn: Connectivity,
    policy: BinarizePolicy,
) -> anyhow::Result<()> {
    if args.pet.as_ref().is_some_and(|p| p.is_dir()) {
        bail!(
            "--pet {} is a folder but --pred/--gt are files",
            args.pet.as_ref().unwrap().display()
        );
    }
    let id = args
        .id
        .clone()
        .or_else(|| case_id(&args.pred))
        .unwrap_or_else(|| "case".into());
    let e = evaluate_files(&id, &args.pred, gt, args.pet.as_deref(), conn, policy)?;
    let m = &e.patient;
    if args.json {
        println!("{}", serde_json::to_string_pretty(m)?);
    } else {
        println!(
            "case {id}: DSC {:.4}  FPV {:.3} ml  FNV {:.3} ml  Dmax {:.2} cm",
            m.dice, m.fpv_ml, m.fnv_ml, m.dmax_cm
        );
        println!(
            "  GT lesions {}  predicted lesions {}",
            m.n_gt_lesions, m.n_pred_lesions
        );
        println!(
            "  C1 TP/FP/FN {}/{}/{}  F1 {:.3}",
            m.tp_c1, m.fp_c1, m.fn_c1, m.f1_c1
        );
        println!(
            "  C2 TP/FP/FN {}/{}/{}  F1 {:.3}",
            m.tp_c2, m.fp_c2, m.fn_c2, m.f1_c2
        );
        match (m.tp_c3, m.fp_c3, m.fn_c3) {
            (Some(t), Some(f), Some(n)) => println!("  C3 TP/FP/FN {t}/{f}/{n}  F1 {:.3}", m.f1_c3),
            _ => println!("  C3 needs --pet"),
        }
    }
    Ok(())
}

/// `{ID → path}` of the NIfTI files in `dir` whose name ends with `suffix`
/// after the id (e.g. `_0001` for PET channels).
fn index(dir: &Path, suffix: &str) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if let Some(stem) = case_id(&path) {
            if let Some(id) = stem.strip_suffix(suffix) {
                if out.insert(id.to_string(), path.clone()).is_some() {
                    bail!(
                        "{}: case {id} appears twice (.nii and .nii.gz?)",
                        dir.display()
                    );
                }
            }
        }
    }
    Ok(out)
}

/// One case of the folder mode: id, prediction, GT and optional PET.
type Pair = (String, PathBuf, PathBuf, Option<PathBuf>);

/// Pairs `PRED/{ID}` with `GT/{ID}` and `PET/{ID}_0001` by id.
fn pairs_from_folders(pred: &Path, gt: &Path, pet: Option<&Path>) -> anyhow::Result<Vec<Pair>> {
    let preds = index(pred, "")?;
    let gts = index(gt, "")?;
    let pets = match pet {
        Some(p) if p.is_dir() => Some(index(p, "_0001")?),
        Some(p) => bail!("--pet {} must be a folder in folder mode", p.display()),
        None => None,
    };
    let no_gt: Vec<&String> = preds.keys().filter(|id| !gts.contains_key(*id)).collect();
    let no_pred: Vec<&String> = gts.keys().filter(|id| !preds.contains_key(*id)).collect();
    if !no_gt.is_empty() || !no_pred.is_empty() {
        bail!(
            "cases do not pair by id: predictions without ground truth {no_gt:?}, ground truth without prediction {no_pred:?}"
        );
    }
    preds
        .into_iter()
        .map(|(id, p)| {
            let pet = match &pets {
                Some(map) => Some(map.get(&id).cloned().with_context(|| {
                    format!(
                        "no PET {id}_0001.nii(.gz) in {}",
                        pet.unwrap_or(Path::new("")).display()
                    )
                })?),
                None => None,
            };
            let g = gts[&id].clone();
            Ok((id, p, g, pet))
        })
        .collect()
}

/// Pairs `PRED/{ID}` with the label and PET of manifest case `ID`.
fn pairs_from_manifest(pred: &Path, manifest: &Path) -> anyhow::Result<Vec<Pair>> {
    let m = Manifest::load(manifest)
        .with_context(|| format!("reading manifest {}", manifest.display()))?;
    let preds = index(pred, "")?;
    let unknown: Vec<&String> = preds.keys().filter(|id| m.case(id).is_none()).collect();
    if !unknown.is_empty() {
        bail!(
            "predictions {unknown:?} are not cases of manifest {}",
            manifest.display()
        );
    }
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for case in &m.cases {
        let Some(label) = &case.label else { continue };
        match preds.get(&case.id) {
            Some(p) => pairs.push((
                case.id.clone(),
                p.clone(),
                m.resolve(label),
                Some(m.resolve(&case.pet)),
            )),
            None => missing.push(case.id.clone()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "no prediction in {} for manifest cases {missing:?}",
            pred.display()
        );
    }
    Ok(pairs)
}

fn folder(
    args: &Args,
    pairs: Vec<Pair>,
    conn: Connectivity,
    policy: BinarizePolicy,
) -> anyhow::Result<()> {
    let out = args.out.as_ref().context(
        "folder mode needs --out DIR for patients.csv, lesions.csv, summary.json, summary.md",
    )?;
    if pairs.is_empty() {
        bail!(
            "{}: no .nii/.nii.gz predictions to evaluate",
            args.pred.display()
        );
    }
    let mut cases = Vec::new();
    let mut lesions = Vec::new();
    for (i, (id, pred, gt, pet)) in pairs.iter().enumerate() {
        eprintln!("[{}/{}] {id}", i + 1, pairs.len());
        let e = evaluate_files(id, pred, gt, pet.as_deref(), conn, policy)?;
        cases.push(e.patient);
        lesions.extend(e.lesions);
    }
    let summary = summarize(&cases, &lesions);
    let summary_json = serde_json::to_string_pretty(&summary)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let files = [
        ("patients.csv", patients_csv(&cases)?),
        ("lesions.csv", lesions_csv(&lesions)?),
        ("summary.json", summary_json.clone()),
        ("summary.md", markdown(&summary)),
    ];
    for (name, text) in &files {
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    }
    for (name, _) in &files {
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::rename(&tmp, out.join(name))
            .with_context(|| format!("renaming {}", tmp.display()))?;
    }
    if args.json {
        println!("{summary_json}");
    } else {
        println!(
            "{} cases evaluated; results in {}",
            cases.len(),
            out.display()
        );
        print!("{}", markdown(&summary));
    }
    Ok(())
}
