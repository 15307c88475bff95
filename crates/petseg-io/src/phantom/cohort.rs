//! Writing a cohort in the nnU-Net layout with its manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{generate_case, LesionInfo, PhantomCase, PhantomConfig};
use crate::error::{IoError, Result};
use crate::manifest::{write_atomic, CaseEntry, Manifest};
use crate::nifti::write_nifti;
use crate::volume::Volume;

/// What was written for one case (for progress reports).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseSummary {
    /// Position in the cohort (0-based).
    pub index: usize,
    /// Case id.
    pub id: String,
    /// Patient id.
    pub patient_id: String,
    /// Number of lesions.
    pub n_lesions: usize,
    /// Seconds spent generating and writing the case.
    pub seconds: f64,
}

/// The tracer the cohort imitates.
pub const TRACER: &str = "18F-DCFPyL";

/// Name of the per-lesion facts file written beside the manifest.
pub const LESIONS_FILE: &str = "lesions.json";

/// Writes `n_cases` cases generated from `seed` into `out_dir` and returns
/// the manifest, also saved as `out_dir/manifest.json`. See
/// [`write_cohort_with`] for the layout.
pub fn write_cohort(
    out_dir: &Path,
    config: &PhantomConfig,
    n_cases: usize,
    seed: u64,
) -> Result<Manifest> {
    write_cohort_with(out_dir, config, n_cases, seed, |_| {})
}

/// [`write_cohort`] calling `progress` after each case.
///
/// Layout (nnU-Net raw):
/// * `imagesTr/{ID}_0000.nii.gz`: CT on the PET grid, int16 HU;
/// * `imagesTr/{ID}_0001.nii.gz`: PET in SUVbw, float32;
/// * `labelsTr/{ID}.nii.gz`: lesion mask, uint8 0/1;
/// * `manifest.json`: every case's files, patient id, lesion count and tags
///   (tracer, size, seed, generator);
/// * `lesions.json`: per case, each lesion's centre, volume, SUVmax,
///   SUVmean and region.
///
/// Each file is written atomically; the manifest is written last, so a
/// cohort with a manifest is complete.
pub fn write_cohort_with(
    out_dir: &Path,
    config: &PhantomConfig,
    n_cases: usize,
    seed: u64,
    mut progress: impl FnMut(&CaseSummary),
) -> Result<Manifest> {
    if n_cases == 0 {
        return Err(IoError::Invalid("a cohort needs at least one case".into()));
    }
    // Before anything is created, so that a bad config leaves no folder behind.
    config.validate()?;
    let images = out_dir.join("imagesTr");
    let labels = out_dir.join("labelsTr");
    for d in [&images, &labels] {
        std::fs::create_dir_all(d).map_err(|e| IoError::os(d, e))?;
    }
    let mut manifest = Manifest::new(format!("phantom-{}", config.size.as_str()), out_dir);
    manifest.description = Some(format!(
        "Synthetic whole-body PSMA PET/CT cohort (petseg phantom, size {}, seed {seed}, {n_cases} cases): \
         CT in HU resampled onto the PET grid, PET in SUVbw, lesion masks.",
        config.size.as_str()
    ));
    let mut lesions: BTreeMap<String, Vec<LesionInfo>> = BTreeMap::new();
    for index in 0..n_cases {
        let t0 = Instant::now();
        let case = generate_case(config, seed, index)?;
        let entry = write_case(out_dir, &case, config, seed)?;
        progress(&CaseSummary {
            index,
            id: case.id.clone(),
            patient_id: case.patient_id.clone(),
            n_lesions: case.lesions.len(),
            seconds: t0.elapsed().as_secs_f64(),
        });
        lesions.insert(case.id.clone(), case.lesions);
        manifest.cases.push(entry);
    }
    let lesion_path = out_dir.join(LESIONS_FILE);
    let text = serde_json::to_string_pretty(&LesionsFile {
        seed,
        cases: &lesions,
    })
    .map_err(|e| IoError::format(&lesion_path, format!("cannot serialise lesions: {e}")))?;
    write_atomic(&lesion_path, format!("{text}\n").as_bytes())?;
    manifest.save(&out_dir.join("manifest.json"))?;
    Ok(manifest)
}

#[derive(Serialize)]
struct LesionsFile<'a> {
    seed: u64,
    cases: &'a BTreeMap<String, Vec<LesionInfo>>,
}

/// Writes one case's three files and returns its manifest entry.
fn write_case(
    out_dir: &Path,
    case: &PhantomCase,
    config: &PhantomConfig,
    seed: u64,
) -> Result<CaseEntry> {
    let id = &case.id;
    let ct_rel = PathBuf::from(format!("imagesTr/{id}_0000.nii.gz"));
    let pet_rel = PathBuf::from(format!("imagesTr/{id}_0001.nii.gz"));
    let label_rel = PathBuf::from(format!("labelsTr/{id}.nii.gz"));
    let ct_i16: Volume<i16> = case
        .ct
        .map(|&v| v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16);
    write_nifti(out_dir.join(&ct_rel), &ct_i16)?;
    write_nifti(out_dir.join(&pet_rel), &case.pet_suv)?;
    write_nifti(out_dir.join(&label_rel), &case.label)?;
    let mut tags = BTreeMap::new();
    tags.insert("tracer".to_string(), TRACER.to_string());
    tags.insert("generator".to_string(), "petseg phantom".to_string());
    tags.insert("size".to_string(), config.size.as_str().to_string());
    tags.insert("seed".to_string(), seed.to_string());
    tags.insert("scanner".to_string(), "synthetic".to_string());
    Ok(CaseEntry {
        id: id.clone(),
        patient_id: case.patient_id.clone(),
        ct: ct_rel,
        pet: pet_rel,
        label: Some(label_rel),
        n_lesions: Some(case.lesions.len() as u32),
        tags,
    })
}
