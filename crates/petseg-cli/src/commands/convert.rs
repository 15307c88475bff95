//! `petseg convert`: DICOM PET/CT → nnU-Net NIfTI (PET in SUVbw, CT in HU on
//! the PET grid) plus `{ID}.suv.json`, the record of how the SUV factor was
//! obtained (`docs/method/suv.md`).
//!
//! Everything is validated before anything is written: every header, the
//! geometry of both series, the SUV rules, then the pixels of both series and
//! the resampling. The files of a study are written into a hidden staging
//! folder inside `--out` and renamed into place, so an error leaves no partial
//! output. In batch mode every study's headers are checked before the first
//! study is decoded.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use petseg_io::dicom::{
    decode_ct_hu, decode_pet_suv, plan_ct_hu, plan_pet_suv, scan_dir, DicomScan, DicomSeries,
    PetPlan, SeriesGeometry, SkipReason, SkippedFile, SuvOverrides, SuvReport,
};
use petseg_io::nifti::write_nifti;
use petseg_io::resample::{resample_onto, Interpolation};
use serde::Serialize;

/// Arguments of `petseg convert`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes {ID}_0001.nii.gz (PET in SUVbw), {ID}_0000.nii.gz (CT in HU resampled
onto the PET grid, fill -1024) when a CT is given, {ID}_ct.nii.gz (CT on its own
grid) with --ct-native, and {ID}.suv.json (SUV factor, scan and injection times
and the rules that chose them, every tag value used, overrides).
Batch mode: every subfolder of --batch is a study holding one PT and at most
one CT series; its name is the case ID.
Files that belong to no converted series (a README, a DICOMDIR, an empty or
unreadable file, a dataset without file meta, another modality's series) are
skipped: stderr names each stray file and each unused series with the reason,
and {ID}.suv.json lists every skipped file under \"skipped_files\". A series
itself must be whole: an unreadable file that names its SeriesInstanceUID, a
missing slice or a mixed geometry is an error.

Examples:
  petseg convert --pet study/PET --ct study/CT --out imagesTr --id psma_0001
  petseg convert --pet study/PET --out out --id p7 --weight-kg 81 --json
  petseg convert --batch dicom/ --out imagesTr --ct-native")]
pub struct Args {
    /// Folder holding the PT series (searched recursively; may also hold the CT).
    #[arg(long, conflicts_with = "batch", required_unless_present = "batch")]
    pub pet: Option<PathBuf>,
    /// Folder holding the CT series (defaults to a CT found next to the PT in --pet).
    #[arg(long, conflicts_with = "batch")]
    pub ct: Option<PathBuf>,
    /// Case ID: the output file prefix.
    #[arg(long, conflicts_with = "batch", required_unless_present = "batch")]
    pub id: Option<String>,
    /// A folder of studies (one subfolder per study, named by its case ID).
    #[arg(long)]
    pub batch: Option<PathBuf>,
    /// Output folder (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Patient weight in kg, replacing PatientWeight (0010,1030).
    #[arg(long, conflicts_with = "batch")]
    pub weight_kg: Option<f64>,
    /// Injected dose in Bq, replacing RadionuclideTotalDose (0018,1074).
    #[arg(long, conflicts_with = "batch")]
    pub dose_bq: Option<f64>,
    /// Radionuclide half-life in s, replacing RadionuclideHalfLife (0018,1075).
    #[arg(long)]
    pub half_life_s: Option<f64>,
    /// Injection start (YYYYMMDDHHMMSS, YYYY-MM-DDTHH:MM:SS, or HH:MM:SS on the
    /// series date), replacing RadiopharmaceuticalStartDateTime/StartTime.
    #[arg(long, conflicts_with = "batch")]
    pub injection_time: Option<String>,
    /// Also write the CT on its own grid as {ID}_ct.nii.gz.
    #[arg(long)]
    pub ct_native: bool,
    /// Print the SUV record(s) as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// What `{ID}.suv.json` holds: the SUV report plus the study's identity and outputs.
#[derive(Debug, Serialize)]
pub struct ConvertRecord {
    /// Case ID.
    pub id: String,
    /// The SUV report (suv_factor, times, rules, tags, overrides).
    #[serde(flatten)]
    pub suv: SuvReport,
    /// The PT series folder.
    pub pet_dir: PathBuf,
    /// The PET grid: shape.
    pub pet_shape: [usize; 3],
    /// The PET grid: voxel size in mm.
    pub pet_spacing_mm: [f64; 3],
    /// The PET affine (voxel → RAS+ mm), row-major.
    pub pet_affine: [[f64; 4]; 4],
    /// The CT series, when given.
    pub ct_series_instance_uid: Option<String>,
    /// Files under the study's folders that were not converted, with why.
    pub skipped_files: Vec<SkippedFile>,
    /// Files written.
    pub outputs: Vec<PathBuf>,
}

/// One study, validated (headers only) and ready to decode.
struct Study<'a> {
    id: String,
    pet: &'a DicomSeries,
    pet_plan: PetPlan,
    ct: Option<(&'a DicomSeries, SeriesGeometry)>,
    skipped: Vec<SkippedFile>,
}

/// Runs `petseg convert`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let overrides = SuvOverrides {
        weight_kg: args.weight_kg,
        dose_bq: args.dose_bq,
        half_life_s: args.half_life_s,
        injection_time: args.injection_time.clone(),
    };
    // Scans live here so that the planned studies can borrow their series.
    let mut scans: Vec<(String, DicomScan, Option<DicomScan>)> = Vec::new();
    if let Some(batch) = &args.batch {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(batch)
            .with_context(|| format!("cannot read --batch folder {}", batch.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            bail!("--batch {}: no study subfolders", batch.display());
        }
        for d in dirs {
            let id = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            check_id(&id)?;
            let scan = scan_dir(&d).with_context(|| format!("study {id}"))?;
            scans.push((id, scan, None));
        }
    } else {
        let (pet, id) = (
            args.pet.as_ref().expect("clap requires --pet"),
            args.id.clone().expect("clap requires --id"),
        );
        check_id(&id)?;
        let pet_scan = scan_dir(pet).with_context(|| format!("--pet {}", pet.display()))?;
        let ct_scan = match &args.ct {
            Some(ct) => Some(scan_dir(ct).with_context(|| format!("--ct {}", ct.display()))?),
            None => None,
        };
        scans.push((id, pet_scan, ct_scan));
    }

    // Pass 1: headers, geometry, SUV rules for every study.
    let mut studies = Vec::with_capacity(scans.len());
    for (id, pet_scan, ct_scan) in &scans {
        let pet = pet_scan
            .single("PT")
            .with_context(|| format!("study {id}: PET"))?;
        let pet_plan = plan_pet_suv(pet, &overrides)
            .with_context(|| format!("study {id}: PET{}", skipped_hint(pet_scan)))?;
        let ct_series = match ct_scan {
            Some(s) => Some(
                s.single("CT")
                    .with_context(|| format!("study {id}: --ct"))?,
            ),
            None => pet_scan
                .optional("CT")
                .with_context(|| format!("study {id}: CT"))?,
        };
        let ct_scan_used = ct_scan.as_ref().unwrap_or(pet_scan);
        let ct = match ct_series {
            Some(s) => Some((
                s,
                plan_ct_hu(s)
                    .with_context(|| format!("study {id}: CT{}", skipped_hint(ct_scan_used)))?,
            )),
            None => None,
        };
        let converted: Vec<&str> = [Some(pet), ct_series]
            .into_iter()
            .flatten()
            .map(|s| s.uid.as_str())
            .collect();
        let skipped = std::iter::once(pet_scan)
            .chain(ct_scan)
            .flat_map(|scan| skipped_files(scan, &converted))
            .collect();
        studies.push(Study {
            id: id.clone(),
            pet,
            pet_plan,
            ct,
            skipped,
        });
    }
    for study in &studies {
        report_skipped(&study.id, &study.skipped);
    }

    // Pass 2: decode, resample, write each study atomically.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create --out {}", args.out.display()))?;
    let mut records = Vec::with_capacity(studies.len());
    for study in &studies {
        let record = convert_study(study, &args.out, args.ct_native)
            .with_context(|| format!("study {}", study.id))?;
        let [ni, nj, nk] = record.pet_shape;
        let scan_time = record
            .suv
            .scan_time_rule
            .map(|r| format!("; scan time by {r}"))
            .unwrap_or_default();
        eprintln!(
            "{}: PET {ni}×{nj}×{nk}, SUV factor {:.6e} ({}{scan_time}){}",
            study.id,
            record.suv.suv_factor,
            record.suv.method,
            if study.ct.is_some() {
                ", CT on the PET grid"
            } else {
                ""
            }
        );
        records.push(record);
    }
    if args.json {
        let text = if args.batch.is_some() {
            serde_json::to_string_pretty(&records)?
        } else {
            serde_json::to_string_pretty(&records[0])?
        };
        println!("{text}");
    }
    Ok(())
}

/// The stray files of a scan and the files of its series that are not
/// converted (not among `converted` UIDs).
fn skipped_files(scan: &DicomScan, converted: &[&str]) -> Vec<SkippedFile> {
    let mut out = scan.skipped.clone();
    for series in &scan.series {
        if !converted.contains(&series.uid.as_str()) {
            let why = match series.modality.as_str() {
                "PT" | "CT" => format!("the {} is read from another folder", series.modality),
                _ => "neither PT nor CT".to_string(),
            };
            out.extend(SkippedFile::unused_series(series, &why));
        }
    }
    out
}

/// One stderr line per stray file and one per unused series.
fn report_skipped(id: &str, skipped: &[SkippedFile]) {
    let mut last_series: Option<&str> = None;
    for s in skipped {
        if s.reason != SkipReason::UnusedSeries {
            eprintln!("{id}: skipped {s}");
            continue;
        }
        let series = s.detail.as_deref().unwrap_or_default();
        if last_series != Some(series) {
            let n = skipped
                .iter()
                .filter(|o| o.detail.as_deref() == Some(series))
                .count();
            eprintln!(
                "{id}: skipped {n} file(s) of {series} (e.g. {})",
                s.path.display()
            );
            last_series = Some(series);
        }
    }
}

/// For errors about a series: the files the scan skipped, which may be
/// the series' missing slices.
fn skipped_hint(scan: &DicomScan) -> String {
    let stray: Vec<String> = scan.skipped.iter().map(|s| s.to_string()).collect();
    if stray.is_empty() {
        String::new()
    } else {
        format!(" ({} file(s) skipped: {})", stray.len(), stray.join("; "))
    }
}

fn check_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\']) {
        bail!("case ID {id:?} must be a plain file-name prefix");
    }
    Ok(())
}

fn convert_study(study: &Study, out: &Path, ct_native: bool) -> anyhow::Result<ConvertRecord> {
    let pet = decode_pet_suv(study.pet, &study.pet_plan)?;
    let ct = match &study.ct {
        Some((series, geom)) => {
            let native = decode_ct_hu(series, geom)?;
            let on_pet = resample_onto(
                &native,
                pet.shape(),
                pet.affine(),
                Interpolation::Linear,
                -1024.0,
            )?;
            Some((series.uid.clone(), native, on_pet))
        }
        None => None,
    };
    let id = &study.id;
    let stage = out.join(format!(".convert-{id}.partial"));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("cannot clear {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage)
        .with_context(|| format!("cannot create {}", stage.display()))?;
    let result = (|| -> anyhow::Result<ConvertRecord> {
        let mut names = vec![format!("{id}_0001.nii.gz")];
        write_nifti(stage.join(&names[0]), &pet)?;
        if let Some((_, native, on_pet)) = &ct {
            names.push(format!("{id}_0000.nii.gz"));
            write_nifti(stage.join(&names[1]), on_pet)?;
            if ct_native {
                names.push(format!("{id}_ct.nii.gz"));
                write_nifti(stage.join(names.last().expect("pushed")), native)?;
            }
        }
        names.push(format!("{id}.suv.json"));
        let record = ConvertRecord {
            id: id.clone(),
            suv: study.pet_plan.report.clone(),
            pet_dir: study.pet.slices[0]
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            pet_shape: pet.shape(),
            pet_spacing_mm: pet.spacing_mm(),
            pet_affine: pet.affine().rows(),
            ct_series_instance_uid: ct.as_ref().map(|c| c.0.clone()),
            skipped_files: study.skipped.clone(),
            outputs: names.iter().map(|n| out.join(n)).collect(),
        };
        std::fs::write(
            stage.join(names.last().expect("pushed")),
            serde_json::to_string_pretty(&record)?,
        )?;
        for n in &names {
            std::fs::rename(stage.join(n), out.join(n))
                .with_context(|| format!("cannot move {n} into place"))?;
        }
        Ok(record)
    })();
    let _ = std::fs::remove_dir_all(&stage);
    result
}
