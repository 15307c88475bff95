//! Reading a results folder: one sub-folder per evaluated cell.
//!
//! Layout (written by `petseg evaluate` folder mode, see
//! `crates/petseg-cli/src/commands/evaluate.rs`):
//!
//! ```text
//! results/NAME/
//!   <network>__<loss>[__fold<k>]/   one cell
//!     patients.csv                   required (petseg_eval::report::PATIENT_COLUMNS)
//!     lesions.csv                    optional (petseg_eval::report::LESION_COLUMNS)
//!     summary.json, …                not read here
//!     cell.json                      optional: {"network": …, "loss": …, "fold": …,
//!                                    "eval_manifest": …, "predictions": …}
//! ```
//!
//! `eval_manifest` and `predictions` (absolute paths, written by `cargo
//! xtask sweep`) enable the PET MIP overlays. `lesions.csv` feeds the
//! lesion MTV threshold table; it is checked against `patients.csv` (same
//! cases, one GT row per GT lesion), and a network × loss uses it only when
//! every one of its folders has one (a partial pool would bias the table).
//!
//! `cell.json`, when present, overrides the names parsed from the folder
//! name. Folders without `patients.csv` are ignored. The folds of one
//! network × loss are pooled (each case is validated in exactly one fold),
//! so a cell of the report is one network × loss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use petseg_eval::report::{LESION_COLUMNS, PATIENT_COLUMNS};
use petseg_eval::{LesionKind, LesionMetrics, PatientMetrics};
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
    /// Per-lesion metrics of every fold; `None` when a folder has no
    /// `lesions.csv`.
    pub lesions: Option<Vec<LesionMetrics>>,
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
        let lesions_path = dir.join("lesions.csv");
        let lesions = if lesions_path.is_file() {
            let text = std::fs::read_to_string(&lesions_path)
                .with_context(|| format!("reading {}", lesions_path.display()))?;
            let l = parse_lesions_csv(&text)
                .and_then(|l| check_lesions(&rows, &l).map(|()| l))
                .with_context(|| format!("parsing {}", lesions_path.display()))?;
            Some(l)
        } else {
            None
        };
        let cell = cells
            .entry((network.clone(), loss.clone()))
            .or_insert(Cell {
                network,
                loss,
                folders: Vec::new(),
                cases: Vec::new(),
                lesions: Some(Vec::new()),
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
        cell.lesions = match (cell.lesions.take(), lesions) {
            (Some(mut all), Some(l)) => {
                all.extend(l);
                Some(all)
            }
            _ => None,
        };
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

/// The rows of a CSV file with the named columns located in its header.
struct Csv {
    /// Column name → index.
    col: BTreeMap<&'static str, usize>,
    /// (1-based line number, fields) of each data row.
    rows: Vec<(usize, Vec<String>)>,
}

impl Csv {
    /// Splits `text`; every one of `columns` must be in the header (any
    /// order, extra columns ignored).
    fn parse(text: &str, columns: &[&'static str]) -> Result<Csv> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = split_csv_line(lines.next().context("empty file: expected a header row")?);
        let mut col = BTreeMap::new();
        for &name in columns {
            let i = header
                .iter()
                .position(|h| h.trim() == name)
                .with_context(|| format!("missing column {name:?}"))?;
            col.insert(name, i);
        }
        let rows = lines
            .enumerate()
            .map(|(n, l)| (n + 2, split_csv_line(l)))
            .collect();
        Ok(Csv { col, rows })
    }

    fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|(n, f)| Row {
            n: *n,
            fields: f,
            col: &self.col,
        })
    }
}

/// One data row of a [`Csv`], with typed accessors whose errors name the
/// row, the column and the text found.
struct Row<'a> {
    n: usize,
    fields: &'a [String],
    col: &'a BTreeMap<&'static str, usize>,
}

impl Row<'_> {
    fn get(&self, name: &str) -> Result<&str> {
        let i = self.col[name];
        self.fields
            .get(i)
            .map(|s| s.trim())
            .with_context(|| format!("row {}: missing column {name:?}", self.n))
    }

    /// A number; empty or `nan` is NaN.
    fn float(&self, name: &str) -> Result<f64> {
        let s = self.get(name)?;
        if s.is_empty() || s.eq_ignore_ascii_case("nan") {
            return Ok(f64::NAN);
        }
        s.parse()
            .with_context(|| format!("row {}, column {name}: {s:?} is not a number", self.n))
    }

    /// A count; empty is `None`.
    fn count(&self, name: &str) -> Result<Option<u64>> {
        let s = self.get(name)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).with_context(|| {
            format!(
                "row {}, column {name}: {s:?} is not a non-negative integer",
                self.n
            )
        })
    }

    /// A count that must be present.
    fn req(&self, name: &str) -> Result<u64> {
        self.count(name)?
            .with_context(|| format!("row {}: column {name} is empty", self.n))
    }

    /// A label (`u32`); empty is `None`.
    fn label(&self, name: &str) -> Result<Option<u32>> {
        self.count(name)?
            .map(|v| {
                u32::try_from(v)
                    .with_context(|| format!("row {}, column {name}: label {v} too large", self.n))
            })
            .transpose()
    }
}

/// Parses `patients.csv` (columns [`PATIENT_COLUMNS`], any order; empty
/// cells are NaN / absent).
pub fn parse_patients_csv(text: &str) -> Result<Vec<PatientMetrics>> {
    let csv = Csv::parse(text, &PATIENT_COLUMNS)?;
    csv.rows()
        .map(|r| {
            Ok(PatientMetrics {
                case_id: r.get("case_id")?.to_string(),
                connectivity: r.req("connectivity")? as u32,
                voxel_ml: r.float("voxel_ml")?,
                dice: r.float("dice")?,
                fpv_ml: r.float("fpv_ml")?,
                fnv_ml: r.float("fnv_ml")?,
                tp_c1: r.req("tp_c1")?,
                fp_c1: r.req("fp_c1")?,
                fn_c1: r.req("fn_c1")?,
                f1_c1: r.float("f1_c1")?,
                tp_c2: r.req("tp_c2")?,
                fp_c2: r.req("fp_c2")?,
                fn_c2: r.req("fn_c2")?,
                f1_c2: r.float("f1_c2")?,
                tp_c3: r.count("tp_c3")?,
                fp_c3: r.count("fp_c3")?,
                fn_c3: r.count("fn_c3")?,
                f1_c3: r.float("f1_c3")?,
                tp_1to1: r.req("tp_1to1")?,
                fp_1to1: r.req("fp_1to1")?,
                fn_1to1: r.req("fn_1to1")?,
                f1_1to1: r.float("f1_1to1")?,
                n_gt_lesions: r.req("n_gt_lesions")?,
                n_pred_lesions: r.req("n_pred_lesions")?,
                gt_tmtv_ml: r.float("gt_tmtv_ml")?,
                pred_tmtv_ml: r.float("pred_tmtv_ml")?,
                gt_suvmax: r.float("gt_suvmax")?,
                gt_suvmean: r.float("gt_suvmean")?,
                gt_tla: r.float("gt_tla")?,
                pred_suvmax: r.float("pred_suvmax")?,
                pred_suvmean: r.float("pred_suvmean")?,
                pred_tla: r.float("pred_tla")?,
                dmax_cm: r.float("dmax_cm")?,
                pred_dmax_cm: r.float("pred_dmax_cm")?,
            })
        })
        .collect()
}

/// Parses `lesions.csv` (columns [`LESION_COLUMNS`], any order; `kind` is
/// `gt` or `unmatched_pred`, `pred_labels` `;`-separated, empty cells NaN /
/// absent).
pub fn parse_lesions_csv(text: &str) -> Result<Vec<LesionMetrics>> {
    let csv = Csv::parse(text, &LESION_COLUMNS)?;
    csv.rows()
        .map(|r| {
            let kind = match r.get("kind")? {
                "gt" => LesionKind::Gt,
                "unmatched_pred" => LesionKind::UnmatchedPred,
                k => bail!(
                    "row {}, column kind: {k:?}, expected \"gt\" or \"unmatched_pred\"",
                    r.n
                ),
            };
            let pred_labels = r
                .get("pred_labels")?
                .split(';')
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    l.trim().parse().with_context(|| {
                        format!("row {}, column pred_labels: {l:?} is not a label", r.n)
                    })
                })
                .collect::<Result<_>>()?;
            Ok(LesionMetrics {
                case_id: r.get("case_id")?.to_string(),
                kind,
                gt_label: r.label("gt_label")?,
                pred_labels,
                dice: r.float("dice")?,
                gt_mtv_ml: r.float("gt_mtv_ml")?,
                gt_suvmax: r.float("gt_suvmax")?,
                gt_suvmean: r.float("gt_suvmean")?,
                gt_tla: r.float("gt_tla")?,
                pred_mtv_ml: r.float("pred_mtv_ml")?,
                pred_suvmax: r.float("pred_suvmax")?,
                pred_suvmean: r.float("pred_suvmean")?,
                pred_tla: r.float("pred_tla")?,
            })
        })
        .collect()
}

/// Checks a folder's lesions against its cases: every lesion's case is in
/// `patients.csv`, each case has as many GT lesion rows as its
/// `n_gt_lesions`, and every GT lesion has a finite MTV and DSC.
pub fn check_lesions(cases: &[PatientMetrics], lesions: &[LesionMetrics]) -> Result<()> {
    let mut gt: BTreeMap<&str, u64> = cases.iter().map(|c| (c.case_id.as_str(), 0)).collect();
    for l in lesions {
        let n = gt.get_mut(l.case_id.as_str()).with_context(|| {
            format!(
                "lesion of case {:?}, which patients.csv does not list",
                l.case_id
            )
        })?;
        if l.kind == LesionKind::Gt {
            *n += 1;
            if !(l.gt_mtv_ml.is_finite() && l.dice.is_finite()) {
                bail!(
                    "case {}: GT lesion {:?} has gt_mtv_ml {} and dice {}, expected numbers",
                    l.case_id,
                    l.gt_label,
                    l.gt_mtv_ml,
                    l.dice
                );
            }
        }
    }
    for c in cases {
        let n = gt[c.case_id.as_str()];
        if n != c.n_gt_lesions {
            bail!(
                "case {}: {n} GT lesion rows, but patients.csv says n_gt_lesions = {}",
                c.case_id,
                c.n_gt_lesions
            );
        }
    }
    Ok(())
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

    const PATIENT_CSV: &str = "case_id,connectivity,voxel_ml,dice,fpv_ml,fnv_ml,tp_c1,fp_c1,fn_c1,f1_c1,tp_c2,fp_c2,fn_c2,f1_c2,tp_c3,fp_c3,fn_c3,f1_c3,tp_1to1,fp_1to1,fn_1to1,f1_1to1,n_gt_lesions,n_pred_lesions,gt_tmtv_ml,pred_tmtv_ml,gt_suvmax,gt_suvmean,gt_tla,pred_suvmax,pred_suvmean,pred_tla,dmax_cm,pred_dmax_cm\n\
p1,18,0.064,0.5,1,2,1,0,0,1,1,0,0,1,,,,,1,0,0,1,1,1,3,2,5,4,12,5,4,8,0,0\n";

    #[test]
    fn round_trips_the_eval_writer() {
        let rows = parse_patients_csv(PATIENT_CSV).unwrap();
        let back = petseg_eval::report::patients_csv(&rows).unwrap();
        assert_eq!(parse_patients_csv(&back).unwrap().len(), 1);
        assert_eq!(rows[0].tp_c3, None);
        assert!(rows[0].f1_c3.is_nan());
        assert_eq!(rows[0].dice, 0.5);
        assert!(parse_patients_csv("case_id\np1\n").is_err());
    }

    #[test]
    fn lesions_round_trip_and_are_checked() {
        let csv = "case_id,kind,gt_label,pred_labels,dice,gt_mtv_ml,gt_suvmax,gt_suvmean,gt_tla,pred_mtv_ml,pred_suvmax,pred_suvmean,pred_tla\n\
p1,gt,1,2;3,0.5,3,5,4,12,2,5,4,8\n\
p1,gt,2,,0,1.5,4,3,4.5,0,,,\n\
p1,unmatched_pred,,4,0,,,,,0.2,3,2,0.4\n";
        let rows = parse_lesions_csv(csv).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].pred_labels, [2, 3]);
        assert_eq!(rows[1].gt_label, Some(2));
        assert_eq!(rows[2].kind, LesionKind::UnmatchedPred);
        assert!(rows[2].gt_mtv_ml.is_nan() && rows[2].gt_label.is_none());
        let back = petseg_eval::report::lesions_csv(&rows).unwrap();
        // NaN != NaN: compare the re-written text.
        let again = petseg_eval::report::lesions_csv(&parse_lesions_csv(&back).unwrap()).unwrap();
        assert_eq!(again, back);
        let e = parse_lesions_csv(&csv.replace("unmatched_pred", "fp")).unwrap_err();
        assert!(
            format!("{e:#}").contains("row 4, column kind: \"fp\""),
            "{e:#}"
        );

        let patient = |id: &str, n| PatientMetrics {
            case_id: id.into(),
            n_gt_lesions: n,
            ..parse_patients_csv(PATIENT_CSV).unwrap()[0].clone()
        };
        check_lesions(&[patient("p1", 2)], &rows).unwrap();
        let e = check_lesions(&[patient("p1", 3)], &rows).unwrap_err();
        assert!(
            format!("{e:#}")
                .contains("case p1: 2 GT lesion rows, but patients.csv says n_gt_lesions = 3"),
            "{e:#}"
        );
        let e = check_lesions(&[patient("p2", 0)], &rows).unwrap_err();
        assert!(
            format!("{e:#}").contains("\"p1\", which patients.csv does not list"),
            "{e:#}"
        );
    }
}
