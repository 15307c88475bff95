//! Reading a results folder: one sub-folder per evaluated cell.
//!
//! Layout (written by `petseg evaluate` folder mode, see
//! `crates/petseg-cli/src/commands/evaluate.rs`):
//!
//! ```text
//! results/NAME/
//!   <network>__<loss>[__fold<k>]/   one cell
//!     patients.csv                   required (petseg_eval::report::PATIENT_COLUMNS)
//!     lesions.csv, summary.json, …   optional, not read here
//!     cell.json                      optional: {"network": …, "loss": …, "fold": …,
//!                                    "eval_manifest": …, "predictions": …}
//! ```
//!
//! `eval_manifest` and `predictions` (absolute paths, written by `cargo
//! xtask sweep`) enable the PET MIP overlays.
//!
//! `cell.json`, when present, overrides the names parsed from the folder
//! name. Folders without `patients.csv` are ignored. The folds of one
//! network × loss are pooled (each case is validated in exactly one fold),
//! so a cell of the report is one network × loss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use petseg_eval::report::PATIENT_COLUMNS;
use petseg_eval::PatientMetrics;
use serde::Deserialize;

/// One network × loss with the pooled per-patient metrics of its folds.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Network name (e.g. `attention_unet`).
    pub network: String,
    /// Loss name (e.g. `l1dfl`).
    pub loss: String,
    /// The cell folders pooled into this cell.
    pub folders: Vec<PathBuf>,
    /// Per-patient metrics of every fold.
    pub cases: Vec<PatientMetrics>,
    /// The first folder's evaluation manifest, predictions folder and case
    /// ids, when its `cell.json` records them (for the overlays).
    pub images: Option<Images>,
}

/// Where a cell folder's images are.
#[derive(Debug, Clone)]
pub struct Images {
    /// Manifest of the evaluated cases.
    pub eval_manifest: PathBuf,
    /// Folder of `{id}.nii.gz` predicted masks.
    pub predictions: PathBuf,
    /// Case ids of this folder.
    pub ids: Vec<String>,
}

impl Cell {
    /// `network / loss`, the label used in tables and figures.
    pub fn label(&self) -> String {
        format!("{} / {}", self.network, self.loss)
    }
}

/// Optional `cell.json` of a cell folder.
#[derive(Debug, Deserialize)]
struct CellJson {
    network: String,
    loss: String,
    eval_manifest: Option<PathBuf>,
    predictions: Option<PathBuf>,
}

/// Parses `<network>__<loss>[__fold<k>]` into (network, loss).
pub fn parse_cell_name(name: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = name.split("__").collect();
    match parts.as_slice() {
        [n, l] if !n.is_empty() && !l.is_empty() => Some((n.to_string(), l.to_string())),
        [n, l, f]
            if !n.is_empty()
                && !l.is_empty()
                && f.strip_prefix("fold")
                    .is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit())) =>
        {
            Some((n.to_string(), l.to_string()))
        }
        _ => None,
    }
}

/// Loads every cell folder of `results`, sorted by network then loss.
pub fn load_results(results: &Path) -> Result<Vec<Cell>> {
    let entries = std::fs::read_dir(results)
        .with_context(|| format!("reading results folder {}", results.display()))?;
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("patients.csv").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let cell_json = dir.join("cell.json");
        let mut images = None;
        let (network, loss) = if cell_json.is_file() {
            let text = std::fs::read_to_string(&cell_json)
                .with_context(|| format!("reading {}", cell_json.display()))?;
            let c: CellJson = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected {{\"network\": …, \"loss\": …}}",
                    cell_json.display()
                )
            })?;
            if let (Some(eval_manifest), Some(predictions)) = (c.eval_manifest, c.predictions) {
                images = Some((eval_manifest, predictions));
            }
            (c.network, c.loss)
        } else {
            parse_cell_name(name).with_context(|| {
                format!(
                    "cell folder {} is not named <network>__<loss>[__fold<k>] and has no cell.json",
                    dir.display()
                )
            })?
        };
        let csv = dir.join("patients.csv");
        let text =
            std::fs::read_to_string(&csv).with_context(|| format!("reading {}", csv.display()))?;
        let rows =
            parse_patients_csv(&text).with_context(|| format!("parsing {}", csv.display()))?;
        let cell = cells
            .entry((network.clone(), loss.clone()))
            .or_insert(Cell {
                network,
                loss,
                folders: Vec::new(),
                cases: Vec::new(),
                images: None,
            });
        if let (None, Some((eval_manifest, predictions))) = (&cell.images, images) {
            cell.images = Some(Images {
                eval_manifest,
                predictions,
                ids: rows.iter().map(|r| r.case_id.clone()).collect(),
            });
        }
        cell.folders.push(dir.clone());
        cell.cases.extend(rows);
    }
    if cells.is_empty() {
        bail!(
            "no cell folder with a patients.csv under {}",
            results.display()
        );
    }
    let cells: Vec<Cell> = cells.into_values().collect();
    for c in &cells {
        let mut ids: Vec<&str> = c.cases.iter().map(|p| p.case_id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            bail!("case {} appears twice in the folds of {}", w[0], c.label());
        }
    }
    Ok(cells)
}

/// Splits one CSV line, honouring double-quoted fields.
fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Parses `patients.csv` (columns [`PATIENT_COLUMNS`], any order; empty
/// cells are NaN / absent).
pub fn parse_patients_csv(text: &str) -> Result<Vec<PatientMetrics>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split_csv_line(lines.next().context("empty file: expected a header row")?);
    let mut col = BTreeMap::new();
    for name in PATIENT_COLUMNS {
        let i = header
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("missing column {name:?}"))?;
        col.insert(name, i);
    }
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        let f = split_csv_line(line);
        let row = n + 2;
        let get = |name: &str| -> Result<&str> {
            let i = col[name];
            f.get(i)
                .map(|s| s.trim())
                .with_context(|| format!("row {row}: missing column {name:?}"))
        };
        let float = |name: &str| -> Result<f64> {
            let s = get(name)?;
            if s.is_empty() || s.eq_ignore_ascii_case("nan") {
                return Ok(f64::NAN);
            }
            s.parse()
                .with_context(|| format!("row {row}, column {name}: {s:?} is not a number"))
        };
        let count = |name: &str| -> Result<Option<u64>> {
            let s = get(name)?;
            if s.is_empty() {
                return Ok(None);
            }
            s.parse().map(Some).with_context(|| {
                format!("row {row}, column {name}: {s:?} is not a non-negative integer")
            })
        };
        let req = |name: &str| -> Result<u64> {
            count(name)?.with_context(|| format!("row {row}: column {name} is empty"))
        };
        rows.push(PatientMetrics {
            case_id: get("case_id")?.to_string(),
            connectivity: req("connectivity")? as u32,
            voxel_ml: float("voxel_ml")?,
            dice: float("dice")?,
            fpv_ml: float("fpv_ml")?,
            fnv_ml: float("fnv_ml")?,
            tp_c1: req("tp_c1")?,
            fp_c1: req("fp_c1")?,
            fn_c1: req("fn_c1")?,
            f1_c1: float("f1_c1")?,
            tp_c2: req("tp_c2")?,
            fp_c2: req("fp_c2")?,
            fn_c2: req("fn_c2")?,
            f1_c2: float("f1_c2")?,
            tp_c3: count("tp_c3")?,
            fp_c3: count("fp_c3")?,
            fn_c3: count("fn_c3")?,
            f1_c3: float("f1_c3")?,
            tp_1to1: req("tp_1to1")?,
            fp_1to1: req("fp_1to1")?,
            fn_1to1: req("fn_1to1")?,
            f1_1to1: float("f1_1to1")?,
            n_gt_lesions: req("n_gt_lesions")?,
            n_pred_lesions: req("n_pred_lesions")?,
            gt_tmtv_ml: float("gt_tmtv_ml")?,
            pred_tmtv_ml: float("pred_tmtv_ml")?,
            gt_suvmax: float("gt_suvmax")?,
            gt_suvmean: float("gt_suvmean")?,
            gt_tla: float("gt_tla")?,
            pred_suvmax: float("pred_suvmax")?,
            pred_suvmean: float("pred_suvmean")?,
            pred_tla: float("pred_tla")?,
            dmax_cm: float("dmax_cm")?,
            pred_dmax_cm: float("pred_dmax_cm")?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_names() {
        assert_eq!(
            parse_cell_name("segresnet__l1dfl"),
            Some(("segresnet".into(), "l1dfl".into()))
        );
        assert_eq!(
            parse_cell_name("attention_unet__dice__fold3"),
            Some(("attention_unet".into(), "dice".into()))
        );
        assert_eq!(parse_cell_name("segresnet"), None);
        assert_eq!(parse_cell_name("a__b__foldx"), None);
        assert_eq!(parse_cell_name("a__b__c__d"), None);
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            split_csv_line(r#"a,"b,""c""",d"#),
            vec!["a", "b,\"c\"", "d"]
        );
    }

    #[test]
    fn round_trips_the_eval_writer() {
        let csv = "case_id,connectivity,voxel_ml,dice,fpv_ml,fnv_ml,tp_c1,fp_c1,fn_c1,f1_c1,tp_c2,fp_c2,fn_c2,f1_c2,tp_c3,fp_c3,fn_c3,f1_c3,tp_1to1,fp_1to1,fn_1to1,f1_1to1,n_gt_lesions,n_pred_lesions,gt_tmtv_ml,pred_tmtv_ml,gt_suvmax,gt_suvmean,gt_tla,pred_suvmax,pred_suvmean,pred_tla,dmax_cm,pred_dmax_cm\n\
p1,18,0.064,0.5,1,2,1,0,0,1,1,0,0,1,,,,,1,0,0,1,1,1,3,2,5,4,12,5,4,8,0,0\n";
        let rows = parse_patients_csv(csv).unwrap();
        let back = petseg_eval::report::patients_csv(&rows).unwrap();
        assert_eq!(parse_patients_csv(&back).unwrap().len(), 1);
        assert_eq!(rows[0].tp_c3, None);
        assert!(rows[0].f1_c3.is_nan());
        assert_eq!(rows[0].dice, 0.5);
        assert!(parse_patients_csv("case_id\np1\n").is_err());
    }
}
