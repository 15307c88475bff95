//! Loading the cases of a run: each case is read, reoriented, resampled and
//! normalised once, then kept in memory (`docs/method/training.md` §2).

use petseg_augment::{PreparedCase, PreprocessConfig};
use petseg_io::manifest::{CaseEntry, Manifest};
use petseg_io::nifti::{read_nifti, read_nifti_f32};
use petseg_io::Volume;
use rayon::prelude::*;

use crate::error::{Result, TrainError};

/// Reads a label file as u8 (any value > 0 is foreground).
pub fn read_label(path: &std::path::Path) -> Result<Volume<u8>> {
    let v = read_nifti(path)?.to_f32();
    Ok(v.map(|&x| u8::from(x > 0.0)))
}

/// Reads and prepares one manifest case (label required when `need_label`).
pub fn load_case(
    manifest: &Manifest,
    entry: &CaseEntry,
    pre: &PreprocessConfig,
    need_label: bool,
) -> Result<PreparedCase> {
    let ct = read_nifti_f32(manifest.resolve(&entry.ct))?;
    let pet = read_nifti_f32(manifest.resolve(&entry.pet))?;
    let label = match &entry.label {
        Some(p) => Some(read_label(&manifest.resolve(p))?),
        None if need_label => {
            return Err(TrainError::Config(format!(
                "case {}: no label in the manifest, but training needs one",
                entry.id
            )))
        }
        None => None,
    };
    Ok(pre.prepare(&entry.id, &ct, &pet, label.as_ref())?)
}

/// The train and validation ids of `fold` in the manifest's split.
pub fn fold_ids(manifest: &Manifest, fold: usize) -> Result<(Vec<String>, Vec<String>)> {
    let split = manifest.split.as_ref().ok_or_else(|| {
        TrainError::Config("the manifest has no split: run `petseg split` first".into())
    })?;
    let f = split.folds.get(fold).ok_or_else(|| {
        TrainError::Config(format!(
            "fold {fold}: the manifest's split has {} folds",
            split.folds.len()
        ))
    })?;
    Ok((f.train.clone(), f.val.clone()))
}

/// Loads the cases `ids` in parallel, keeping their order.
pub fn load_cases(
    manifest: &Manifest,
    ids: &[String],
    pre: &PreprocessConfig,
    need_label: bool,
) -> Result<Vec<PreparedCase>> {
    let entries: Vec<&CaseEntry> = ids
        .iter()
        .map(|id| {
            manifest.case(id).ok_or_else(|| {
                TrainError::Config(format!("case {id} of the split is not in the manifest"))
            })
        })
        .collect::<Result<_>>()?;
    entries
        .par_iter()
        .map(|e| load_case(manifest, e, pre, need_label))
        .collect()
}
