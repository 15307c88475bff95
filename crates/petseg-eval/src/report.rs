//! CSV output of per-patient and per-lesion metrics.
//!
//! Columns follow the struct fields in declaration order (the same names as
//! the JSON keys). Undefined values (NaN, absent C3 counts) are empty cells;
//! matched predicted labels are joined with `;`.

use serde::Serialize;
use serde_json::Value;

use crate::case::{LesionMetrics, PatientMetrics};
use crate::error::{EvalError, Result};

/// Columns of `patients.csv`.
pub const PATIENT_COLUMNS: [&str; 34] = [
    "case_id",
    "connectivity",
    "voxel_ml",
    "dice",
    "fpv_ml",
    "fnv_ml",
    "tp_c1",
    "fp_c1",
    "fn_c1",
    "f1_c1",
    "tp_c2",
    "fp_c2",
    "fn_c2",
    "f1_c2",
    "tp_c3",
    "fp_c3",
    "fn_c3",
    "f1_c3",
    "tp_1to1",
    "fp_1to1",
    "fn_1to1",
    "f1_1to1",
    "n_gt_lesions",
    "n_pred_lesions",
    "gt_tmtv_ml",
    "pred_tmtv_ml",
    "gt_suvmax",
    "gt_suvmean",
    "gt_tla",
    "pred_suvmax",
    "pred_suvmean",
    "pred_tla",
    "dmax_cm",
    "pred_dmax_cm",
];

/// Columns of `lesions.csv`.
pub const LESION_COLUMNS: [&str; 13] = [
    "case_id",
    "kind",
    "gt_label",
    "pred_labels",
    "dice",
    "gt_mtv_ml",
    "gt_suvmax",
    "gt_suvmean",
    "gt_tla",
    "pred_mtv_ml",
    "pred_suvmax",
    "pred_suvmean",
    "pred_tla",
];

/// `patients.csv` content.
pub fn patients_csv(rows: &[PatientMetrics]) -> Result<String> {
    to_csv(rows, &PATIENT_COLUMNS)
}

/// `lesions.csv` content.
pub fn lesions_csv(rows: &[LesionMetrics]) -> Result<String> {
    to_csv(rows, &LESION_COLUMNS)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        }
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(";"),
        other => other.to_string(),
    }
}

fn to_csv<T: Serialize>(rows: &[T], columns: &[&str]) -> Result<String> {
    let mut out = columns.join(",");
    out.push('\n');
    for r in rows {
        let v = serde_json::to_value(r)
            .map_err(|e| EvalError::Invalid(format!("cannot serialise a metrics row: {e}")))?;
        let cells: Vec<String> = columns.iter().map(|c| cell(&v[*c])).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}
