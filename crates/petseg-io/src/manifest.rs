//! The dataset manifest (`docs/method/data.md` §4): a data set described as data.
//!
//! A manifest (`data-manifests/*.json`, or `manifest.json` beside a cohort)
//! lists every case with its files named explicitly — CT, PET and optional
//! label, relative to the manifest — together with the patient each case
//! belongs to, the number of lesions when known, free-form tags (tracer,
//! scanner, centre) and optionally the train/val/test split. Nothing is ever
//! paired by sorted file position.
//!
//! Paths resolve as `<manifest dir>/<root>/<case path>`: `root` (default
//! `"."`) lets a manifest kept under `data-manifests/` point at data stored
//! elsewhere.
//!
//! This module validates and stores the split; choosing one (grouped by
//! patient, stratified by [`LesionScenario`]) is the job of `cargo xtask
//! split`.
//!
//! ```no_run
//! use petseg_io::manifest::Manifest;
//! # fn main() -> petseg_io::Result<()> {
//! let m = Manifest::load("data-manifests/phantom-small.json".as_ref())?;
//! m.check_files_exist()?;
//! for case in &m.cases {
//!     println!("{} (patient {}): {}", case.id, case.patient_id, m.resolve(&case.pet).display());
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoError, Result};

/// A data set: named cases with explicit files, and optionally its split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short name of the data set (e.g. `"phantom-small"`).
    pub name: String,
    /// Free text: where the data come from, how they were made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Directory that case paths are relative to, itself relative to the
    /// manifest's directory (or absolute). Default `"."`.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// The cases, in a stable order (ids are unique).
    pub cases: Vec<CaseEntry>,
    /// The train/val/test split, when one has been made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Directory of the manifest file (where `root` is resolved from); not
    /// serialised: it is where the file was loaded from or saved to.
    #[serde(skip)]
    base_dir: PathBuf,
}

/// One case: one PET/CT study of one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseEntry {
    /// Unique case id (letters, digits, `_`, `-`, `.`), as in nnU-Net file names.
    pub id: String,
    /// The patient the study belongs to; several cases may share one. Splits
    /// never put one patient in two partitions.
    pub patient_id: String,
    /// CT volume in HU, relative to the manifest root.
    pub ct: PathBuf,
    /// PET volume in SUVbw, relative to the manifest root.
    pub pet: PathBuf,
    /// Lesion mask (u8 0/1), when the case is labelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<PathBuf>,
    /// Number of lesions (connected components) in the label, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_lesions: Option<u32>,
    /// Free-form facts: tracer, scanner, centre, generator...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The split of a manifest: a held-out test set and k folds of train/val.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// The seed the split was drawn with (for the record and for re-running).
    pub seed: u64,
    /// Case ids held out for the final test.
    pub test: Vec<String>,
    /// Cross-validation folds over the remaining cases.
    pub folds: Vec<Fold>,
}

/// One cross-validation fold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fold {
    /// Case ids trained on.
    pub train: Vec<String>,
    /// Case ids validated on.
    pub val: Vec<String>,
}

/// The study's lesion scenarios (`docs/method/data.md` §4), used to stratify splits and
/// group results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LesionScenario {
    /// No lesion in the label.
    None,
    /// Exactly one lesion.
    Single,
    /// More than one lesion.
    Multiple,
}

impl LesionScenario {
    /// The scenario of a case with `n_lesions` lesions.
    pub fn from_count(n_lesions: u32) -> Self {
        match n_lesions {
            0 => LesionScenario::None,
            1 => LesionScenario::Single,
            _ => LesionScenario::Multiple,
        }
    }

    /// Lower-case name (`"none"`, `"single"`, `"multiple"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LesionScenario::None => "none",
            LesionScenario::Single => "single",
            LesionScenario::Multiple => "multiple",
        }
    }
}

impl CaseEntry {
    /// The lesion scenario, when the lesion count is known.
    pub fn scenario(&self) -> Option<LesionScenario> {
        self.n_lesions.map(LesionScenario::from_count)
    }

    /// The case's files with their roles (`"ct"`, `"pet"`, `"label"`).
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        let mut out = vec![("ct", self.ct.as_path()), ("pet", self.pet.as_path())];
        if let Some(l) = &self.label {
            out.push(("label", l.as_path()));
        }
        out
    }
}

fn default_root() -> PathBuf {
    PathBuf::from(".")
}

impl Manifest {
    /// An empty manifest whose paths resolve against `base_dir` (root `"."`).
    pub fn new(name: impl Into<String>, base_dir: impl Into<PathBuf>) -> Self {
        Manifest {
            name: name.into(),
            description: None,
            root: default_root(),
            cases: Vec::new(),
            split: None,
            base_dir: base_dir.into(),
        }
    }

    /// Reads and validates a manifest file. Errors name the file and, for
    /// content problems, the case and field concerned.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| IoError::os(path, e))?;
        let mut m: Manifest = serde_json::from_str(&text)
            .map_err(|e| IoError::format(path, format!("not a valid manifest: {e}")))?;
        m.base_dir = parent_dir(path);
        m.validate()
            .map_err(|reason| IoError::format(path, reason))?;
        Ok(m)
    }

    /// Validates, then writes the manifest as pretty JSON to `path`
    /// atomically (temporary file in the same directory, then rename). When
    /// `path` is in another directory than the one the manifest was loaded
    /// from, `root` is rewritten so that every case still resolves to the same
    /// file. Afterwards the manifest resolves against `path`'s directory.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.validate()
            .map_err(|reason| IoError::format(path, reason))?;
        let new_base = parent_dir(path);
        if new_base != self.base_dir {
            let data_root = self.base_dir.join(&self.root);
            self.root = relative_path(&new_base, &data_root).map_err(|e| IoError::os(path, e))?;
            self.base_dir = new_base;
        }
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| IoError::format(path, format!("cannot serialise manifest: {e}")))?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// The directory `root` is resolved from (the manifest file's directory).
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The file a case path refers to: `<manifest dir>/<root>/<path>`.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(&self.root).join(path)
    }

    /// The case with this id.
    pub fn case(&self, id: &str) -> Option<&CaseEntry> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// Case ids grouped by patient id (both sorted).
    pub fn patients(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for c in &self.cases {
            out.entry(c.patient_id.as_str())
                .or_default()
                .push(c.id.as_str());
        }
        for ids in out.values_mut() {
            ids.sort_unstable();
        }
        out
    }

    /// Checks that every file of every case exists; the error names the
    /// missing file, its role and case, and this manifest.
    pub fn check_files_exist(&self) -> Result<()> {
        for c in &self.cases {
            for (role, rel) in c.files() {
                let p = self.resolve(rel);
                if !p.is_file() {
                    return Err(IoError::format(
                        &p,
                        format!(
                            "{role} file of case '{}' (manifest '{}' in {}) does not exist",
                            c.id,
                            self.name,
                            self.base_dir.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the invariants: a name; unique, well-formed case ids; patient
    /// ids; relative file paths; and, for the split, that every id exists,
    /// no case or patient is in two partitions (test, a fold's train, that
    /// fold's val) and no id is listed twice. Returns the reason on failure.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("manifest has an empty \"name\"".into());
        }
        let mut ids = BTreeSet::new();
        for (n, c) in self.cases.iter().enumerate() {
            check_id(&c.id).map_err(|r| format!("case #{n}: {r}"))?;
            if !ids.insert(c.id.as_str()) {
                return Err(format!("case id '{}' appears more than once", c.id));
            }
            if c.patient_id.trim().is_empty() {
                return Err(format!("case '{}': empty \"patient_id\"", c.id));
            }
            for (role, p) in c.files() {
                if p.as_os_str().is_empty() {
                    return Err(format!("case '{}': empty \"{role}\" path", c.id));
                }
                if p.is_absolute() {
                    return Err(format!(
                        "case '{}': \"{role}\" path {} must be relative to the manifest root",
                        c.id,
                        p.display()
                    ));
                }
            }
        }
        if let Some(split) = &self.split {
            self.validate_split(split, &ids)?;
        }
        Ok(())
    }

    fn validate_split(
        &self,
        split: &Split,
        ids: &BTreeSet<&str>,
    ) -> std::result::Result<(), String> {
        let patient: BTreeMap<&str, &str> = self
            .cases
            .iter()
            .map(|c| (c.id.as_str(), c.patient_id.as_str()))
            .collect();
        let test = partition(&split.test, "split test", ids)?;
        if split.folds.is_empty() && split.test.is_empty() {
            return Err("split has neither test cases nor folds".into());
        }
        for (f, fold) in split.folds.iter().enumerate() {
            let train_name = format!("split fold {f} train");
            let val_name = format!("split fold {f} val");
            let train = partition(&fold.train, &train_name, ids)?;
            let val = partition(&fold.val, &val_name, ids)?;
            let parts = [
                ("split test", &test),
                (&train_name[..], &train),
                (&val_name[..], &val),
            ];
            for a in 0..parts.len() {
                for b in a + 1..parts.len() {
                    if let Some(id) = parts[a].1.intersection(parts[b].1).next() {
                        return Err(format!(
                            "case '{id}' is in both {} and {}",
                            parts[a].0, parts[b].0
                        ));
                    }
                    let pa: BTreeMap<&str, &str> =
                        parts[a].1.iter().map(|id| (patient[id], *id)).collect();
                    for id in parts[b].1 {
                        if let Some(other) = pa.get(patient[id]) {
                            return Err(format!(
                                "patient '{}' is in both {} (case '{other}') and {} (case '{id}')",
                                patient[id], parts[a].0, parts[b].0
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// nnU-Net v2 `dataset.json` for this data set (channel 0 = CT, 1 = PET,
    /// labels background/lesion).
    pub fn nnunet_dataset_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "description": self.description.clone().unwrap_or_default(),
            "channel_names": { "0": "CT", "1": "PET" },
            "labels": { "background": 0, "lesion": 1 },
            "numTraining": self.cases.len(),
            "file_ending": ".nii.gz",
        })
    }

    /// nnU-Net `splits_final.json` (a list of `{train, val}` per fold), when
    /// the manifest has a split.
    pub fn nnunet_splits_json(&self) -> Option<serde_json::Value> {
        self.split.as_ref().map(|s| {
            serde_json::Value::Array(
                s.folds
                    .iter()
                    .map(|f| serde_json::json!({ "train": f.train, "val": f.val }))
                    .collect(),
            )
        })
    }

    /// Builds a manifest from an nnU-Net raw data set folder:
    /// `imagesTr/{ID}_0000.nii.gz` (CT), `imagesTr/{ID}_0001.nii.gz` (PET) and
    /// optional `labelsTr/{ID}.nii.gz`. Cases are matched by id, never by
    /// position; each case is its own patient (edit `patient_id` afterwards
    /// when patients have several studies). The manifest resolves against
    /// `dir`.
    pub fn from_nnunet_dir(dir: &Path, name: &str) -> Result<Self> {
        const SUFFIX: &str = ".nii.gz";
        let images = dir.join("imagesTr");
        let mut channels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in list_dir(&images)? {
            let Some(stem) = file.strip_suffix(SUFFIX) else {
                continue;
            };
            let (id, ch) = match stem.rsplit_once('_') {
                Some((id, ch)) if ch.len() == 4 && ch.bytes().all(|b| b.is_ascii_digit()) => {
                    (id, ch)
                }
                _ => {
                    return Err(IoError::format(
                        images.join(&file),
                        "nnU-Net image names must end in _XXXX.nii.gz (channel number)",
                    ))
                }
            };
            channels
                .entry(id.to_string())
                .or_default()
                .insert(ch.to_string());
        }
        if channels.is_empty() {
            return Err(IoError::format(&images, "no *_0000.nii.gz images found"));
        }
        let labels_dir = dir.join("labelsTr");
        let labels: BTreeSet<String> = if labels_dir.is_dir() {
            list_dir(&labels_dir)?
                .into_iter()
                .filter_map(|f| f.strip_suffix(SUFFIX).map(str::to_string))
                .collect()
        } else {
            BTreeSet::new()
        };
        if let Some(orphan) = labels.iter().find(|l| !channels.contains_key(*l)) {
            return Err(IoError::format(
                labels_dir.join(format!("{orphan}{SUFFIX}")),
                format!("label without images: no imagesTr/{orphan}_0000.nii.gz"),
            ));
        }
        let mut m = Manifest::new(name, dir);
        m.description = Some(format!("nnU-Net layout read from {}", dir.display()));
        for (id, chs) in channels {
            let expected: BTreeSet<String> = ["0000".to_string(), "0001".to_string()].into();
            if chs != expected {
                return Err(IoError::format(
                    &images,
                    format!(
                        "case '{id}' has channels {:?}; expected exactly 0000 (CT) and 0001 (PET)",
                        chs
                    ),
                ));
            }
            let label = labels
                .contains(&id)
                .then(|| PathBuf::from(format!("labelsTr/{id}{SUFFIX}")));
            m.cases.push(CaseEntry {
                ct: PathBuf::from(format!("imagesTr/{id}_0000{SUFFIX}")),
                pet: PathBuf::from(format!("imagesTr/{id}_0001{SUFFIX}")),
                label,
                patient_id: id.clone(),
                id,
                n_lesions: None,
                tags: BTreeMap::new(),
            });
        }
        m.validate().map_err(|r| IoError::format(dir, r))?;
        Ok(m)
    }

    /// Builds a manifest from an autoPET folder: each study directory holds
    /// `CTres.nii.gz` (CT on the PET grid), `SUV.nii.gz` and optionally
    /// `SEG.nii.gz`. Study directories are either `{ID}/` (id = patient =
    /// the directory name) or autoPET's `{PATIENT}/{STUDY}/` (id =
    /// `PATIENT_STUDY`, patient = `PATIENT`). The manifest resolves against `dir`.
    pub fn from_autopet_dir(dir: &Path, name: &str) -> Result<Self> {
        let mut m = Manifest::new(name, dir);
        m.description = Some(format!("autoPET layout read from {}", dir.display()));
        for first in list_dir(dir)? {
            let p1 = dir.join(&first);
            if !p1.is_dir() {
                continue;
            }
            if p1.join("SUV.nii.gz").is_file() || p1.join("CTres.nii.gz").is_file() {
                m.cases.push(autopet_case(dir, &[&first], &first, &first)?);
                continue;
            }
            for second in list_dir(&p1)? {
                let p2 = p1.join(&second);
                if p2.is_dir()
                    && (p2.join("SUV.nii.gz").is_file() || p2.join("CTres.nii.gz").is_file())
                {
                    let id = sanitise_id(&format!("{first}_{second}"));
                    m.cases
                        .push(autopet_case(dir, &[&first, &second], &id, &first)?);
                }
            }
        }
        if m.cases.is_empty() {
            return Err(IoError::format(
                dir,
                "no autoPET study folder (with SUV.nii.gz) found",
            ));
        }
        m.cases.sort_by(|a, b| a.id.cmp(&b.id));
        m.validate().map_err(|r| IoError::format(dir, r))?;
        Ok(m)
    }
}

fn autopet_case(dir: &Path, parts: &[&str], id: &str, patient: &str) -> Result<CaseEntry> {
    let rel: PathBuf = parts.iter().collect();
    for required in ["CTres.nii.gz", "SUV.nii.gz"] {
        if !dir.join(&rel).join(required).is_file() {
            return Err(IoError::format(
                dir.join(&rel).join(required),
                format!("autoPET study '{id}' lacks {required}"),
            ));
        }
    }
    let seg = rel.join("SEG.nii.gz");
    Ok(CaseEntry {
        id: id.to_string(),
        patient_id: patient.to_string(),
        ct: rel.join("CTres.nii.gz"),
        pet: rel.join("SUV.nii.gz"),
        label: dir.join(&seg).is_file().then_some(seg),
        n_lesions: None,
        tags: BTreeMap::new(),
    })
}

/// Checks that a case id is non-empty and made of `[A-Za-z0-9_.-]`.
fn check_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("empty case id".into());
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "case id '{id}' contains '{bad}'; use letters, digits, '_', '-' or '.'"
        ));
    }
    Ok(())
}

/// Replaces characters not allowed in ids by `_`.
fn sanitise_id(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The ids of one partition, checked to exist and to be listed once.
fn partition<'a>(
    list: &'a [String],
    what: &str,
    ids: &BTreeSet<&str>,
) -> std::result::Result<BTreeSet<&'a str>, String> {
    let mut out = BTreeSet::new();
    for id in list {
        if !ids.contains(id.as_str()) {
            return Err(format!(
                "{what} names case '{id}', which is not in the manifest"
            ));
        }
        if !out.insert(id.as_str()) {
            return Err(format!("{what} lists case '{id}' twice"));
        }
    }
    Ok(out)
}

/// Sorted file names of a directory (names that are not UTF-8 are skipped).
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| IoError::os(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| IoError::os(dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// The directory of a file path (`"."` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A path to `target` relative to directory `from`; both are made absolute
/// (and canonical when they exist) first. Falls back to the absolute target
/// when no relative path exists (different roots).
fn relative_path(from: &Path, target: &Path) -> std::io::Result<PathBuf> {
    let abs = |p: &Path| -> std::io::Result<PathBuf> {
        match p.canonicalize() {
            Ok(c) => Ok(c),
            Err(_) => std::path::absolute(p),
        }
    };
    let from = abs(from)?;
    let target = abs(target)?;
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = target.components().collect();
    if f.first() != t.first() {
        return Ok(target);
    }
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so that readers never see a partial file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| IoError::Invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| IoError::os(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        IoError::os(path, e)
    })
}
