//! Per-patient and per-lesion metrics of one case (`docs/method/evaluation.md` §3–7).

use petseg_io::Volume;
use serde::Serialize;

use crate::components::{label, Components, Connectivity};
use crate::detection::{criterion1, criterion2, criterion3, one_to_one, Detection};
use crate::dmax::dmax_mm;
use crate::error::{EvalError, Result};
use crate::overlap::{overlaps, uptake, Overlap, Uptake};

/// Largest affine difference (mm) tolerated between the grids of a case's
/// prediction, ground truth and PET.
pub const GRID_TOL_MM: f64 = 1e-3;

/// IoU threshold of criterion C2 in the study.
pub const C2_IOU_THRESHOLD: f64 = 0.5;

/// One case's metrics. Field names are the JSON/CSV keys.
///
/// NaN (JSON `null`) marks a value that is undefined for the case: DSC when
/// the GT is empty, F1 with no lesion on either side, uptake without PET or
/// of an empty mask. The C3 counts are absent without PET.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatientMetrics {
    /// Case identifier.
    pub case_id: String,
    /// Connectivity used for components (6, 18, 26).
    pub connectivity: u32,
    /// Volume of one voxel (ml).
    pub voxel_ml: f64,
    /// Dice 2|P∩G|/(|P|+|G|); NaN when the GT is empty.
    pub dice: f64,
    /// autoPET false-positive volume: predicted components touching no GT voxel (ml).
    pub fpv_ml: f64,
    /// autoPET false-negative volume: GT components touching no predicted voxel (ml).
    pub fnv_ml: f64,
    /// C1 true positives (predicted components overlapping the GT).
    pub tp_c1: u64,
    /// C1 false positives.
    pub fp_c1: u64,
    /// C1 false negatives.
    pub fn_c1: u64,
    /// C1 F1.
    pub f1_c1: f64,
    /// C2 true positives (best IoU ≥ 0.5).
    pub tp_c2: u64,
    /// C2 false positives.
    pub fp_c2: u64,
    /// C2 false negatives.
    pub fn_c2: u64,
    /// C2 F1.
    pub f1_c2: f64,
    /// C3 true positives (SUVmax-voxel rule); absent without PET.
    pub tp_c3: Option<u64>,
    /// C3 false positives.
    pub fp_c3: Option<u64>,
    /// C3 false negatives.
    pub fn_c3: Option<u64>,
    /// C3 F1 (NaN without PET).
    pub f1_c3: f64,
    /// One-to-one (ours) true positives.
    pub tp_1to1: u64,
    /// One-to-one false positives.
    pub fp_1to1: u64,
    /// One-to-one false negatives.
    pub fn_1to1: u64,
    /// One-to-one F1.
    pub f1_1to1: f64,
    /// Number of GT lesions (components).
    pub n_gt_lesions: u64,
    /// Number of predicted lesions.
    pub n_pred_lesions: u64,
    /// GT total metabolic tumour volume (ml).
    pub gt_tmtv_ml: f64,
    /// Predicted TMTV (ml).
    pub pred_tmtv_ml: f64,
    /// Highest PET value in the GT.
    pub gt_suvmax: f64,
    /// Mean PET value over the GT.
    pub gt_suvmean: f64,
    /// GT total lesion activity Σ MTV_i·SUVmean_i (ml·SUV).
    pub gt_tla: f64,
    /// Highest PET value in the prediction.
    pub pred_suvmax: f64,
    /// Mean PET value over the prediction.
    pub pred_suvmean: f64,
    /// Predicted TLA (ml·SUV).
    pub pred_tla: f64,
    /// GT lesion dissemination Dmax (cm, between voxel centres; 0 for < 2 voxels).
    pub dmax_cm: f64,
    /// Dmax of the prediction (cm).
    pub pred_dmax_cm: f64,
}

/// Whether a lesion row describes a GT lesion or a predicted lesion that
/// touches no GT lesion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LesionKind {
    /// A GT lesion with the predicted components that share a voxel with it.
    Gt,
    /// A predicted component that shares no voxel with any GT lesion.
    UnmatchedPred,
}

/// One lesion's metrics (`docs/method/evaluation.md` §7).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LesionMetrics {
    /// Case identifier.
    pub case_id: String,
    /// Row kind.
    pub kind: LesionKind,
    /// GT label (1-based), absent for unmatched predictions.
    pub gt_label: Option<u32>,
    /// Predicted labels matched (sharing a voxel) with the GT lesion, or the
    /// unmatched predicted label.
    pub pred_labels: Vec<u32>,
    /// Lesion DSC between the GT lesion and the union of its matched
    /// predictions; 0 for an unmatched GT or an unmatched prediction.
    pub dice: f64,
    /// GT lesion MTV (ml); NaN for unmatched predictions.
    pub gt_mtv_ml: f64,
    /// GT lesion SUVmax.
    pub gt_suvmax: f64,
    /// GT lesion SUVmean.
    pub gt_suvmean: f64,
    /// GT lesion TLA (ml·SUV).
    pub gt_tla: f64,
    /// MTV of the matched predictions (ml; 0 when none).
    pub pred_mtv_ml: f64,
    /// SUVmax of the matched predictions.
    pub pred_suvmax: f64,
    /// SUVmean of the matched predictions.
    pub pred_suvmean: f64,
    /// TLA of the matched predictions (ml·SUV).
    pub pred_tla: f64,
}

/// All metrics of one case.
#[derive(Debug, Clone)]
pub struct CaseEvaluation {
    /// Per-patient metrics.
    pub patient: PatientMetrics,
    /// GT lesions first (label order), then unmatched predictions.
    pub lesions: Vec<LesionMetrics>,
}

/// Labelled side of a case: components and their PET uptake.
struct Side {
    cc: Components,
    uptake: Option<Vec<Uptake>>,
}

impl Side {
    fn voxels(&self) -> Vec<u64> {
        self.cc.stats().iter().map(|s| s.voxels).collect()
    }

    /// (MTV ml, SUVmax, SUVmean, TLA) over the given labels.
    fn summary(&self, labels: impl Iterator<Item = u32>, voxel_ml: f64) -> [f64; 4] {
        let (mut n, mut sum, mut max) = (0u64, 0.0, f64::NEG_INFINITY);
        for l in labels {
            n += self.cc.stats()[l as usize - 1].voxels;
            if let Some(u) = &self.uptake {
                sum += u[l as usize - 1].sum;
                max = max.max(u[l as usize - 1].max);
            }
        }
        let mtv = n as f64 * voxel_ml;
        if self.uptake.is_none() || n == 0 {
            return [mtv, f64::NAN, f64::NAN, f64::NAN];
        }
        [mtv, max, sum / n as f64, sum * voxel_ml]
    }
}

/// Evaluates a binary prediction against a binary GT (0/1 masks, non-zero
/// is foreground) with optional PET in SUV. All grids must agree (shape and
/// affine within [`GRID_TOL_MM`]).
pub fn evaluate_case(
    case_id: &str,
    pred: &Volume<u8>,
    gt: &Volume<u8>,
    pet: Option<&Volume<f32>>,
    connectivity: Connectivity,
) -> Result<CaseEvaluation> {
    check_grid(pred, gt, "prediction vs ground truth")?;
    if let Some(p) = pet {
        check_grid(gt, p, "ground truth vs PET")?;
    }
    let shape = gt.shape();
    let voxel_ml = gt.voxel_volume_ml();
    let rows = gt.affine().rows();
    let linear = [
        [rows[0][0], rows[0][1], rows[0][2]],
        [rows[1][0], rows[1][1], rows[1][2]],
        [rows[2][0], rows[2][1], rows[2][2]],
    ];
    let side = |m: &Volume<u8>| -> Result<Side> {
        let cc = label(m.as_raster_slice(), shape, connectivity)?;
        let uptake = pet.map(|p| uptake(&cc, p.as_raster_slice()));
        Ok(Side { cc, uptake })
    };
    let g = side(gt)?;
    let p = side(pred)?;
    let ov = overlaps(&g.cc, &p.cc);
    let (gv, pv) = (g.voxels(), p.voxels());

    let inter: u64 = ov.iter().map(|o| o.voxels).sum();
    let (g_tot, p_tot) = (g.cc.foreground_voxels(), p.cc.foreground_voxels());
    let dice = if g_tot == 0 {
        f64::NAN
    } else {
        2.0 * inter as f64 / (g_tot + p_tot) as f64
    };
    let mut gt_hit = vec![false; gv.len()];
    let mut pred_hit = vec![false; pv.len()];
    for o in &ov {
        gt_hit[o.gt as usize - 1] = true;
        pred_hit[o.pred as usize - 1] = true;
    }
    let unhit = |hit: &[bool], v: &[u64]| -> u64 {
        hit.iter()
            .zip(v)
            .filter(|(h, _)| !**h)
            .map(|(_, n)| n)
            .sum()
    };
    let fpv_ml = unhit(&pred_hit, &pv) as f64 * voxel_ml;
    let fnv_ml = unhit(&gt_hit, &gv) as f64 * voxel_ml;

    let c1 = criterion1(&ov, gv.len(), pv.len());
    let c2 = criterion2(&ov, &gv, &pv, C2_IOU_THRESHOLD);
    let c3: Option<Detection> = g.uptake.as_ref().map(|u| {
        let suvmax_voxel: Vec<Option<usize>> = u
            .iter()
            .map(|x| (x.argmax != usize::MAX).then_some(x.argmax))
            .collect();
        criterion3(&ov, &gv, &pv, &suvmax_voxel, p.cc.labels())
    });
    let oo = one_to_one(&ov, &gv, &pv);

    let all = |s: &Side| s.summary(1..=s.cc.count() as u32, voxel_ml);
    let [gt_tmtv_ml, gt_suvmax, gt_suvmean, gt_tla] = all(&g);
    let [pred_tmtv_ml, pred_suvmax, pred_suvmean, pred_tla] = all(&p);
    let nj = shape[1];
    let patient = PatientMetrics {
        case_id: case_id.to_string(),
        connectivity: connectivity.number(),
        voxel_ml,
        dice,
        fpv_ml,
        fnv_ml,
        tp_c1: c1.tp,
        fp_c1: c1.fp,
        fn_c1: c1.fn_,
        f1_c1: c1.f1(),
        tp_c2: c2.tp,
        fp_c2: c2.fp,
        fn_c2: c2.fn_,
        f1_c2: c2.f1(),
        tp_c3: c3.map(|d| d.tp),
        fp_c3: c3.map(|d| d.fp),
        fn_c3: c3.map(|d| d.fn_),
        f1_c3: c3.map_or(f64::NAN, |d| d.f1()),
        tp_1to1: oo.tp,
        fp_1to1: oo.fp,
        fn_1to1: oo.fn_,
        f1_1to1: oo.f1(),
        n_gt_lesions: gv.len() as u64,
        n_pred_lesions: pv.len() as u64,
        gt_tmtv_ml,
        pred_tmtv_ml,
        gt_suvmax,
        gt_suvmean,
        gt_tla,
        pred_suvmax,
        pred_suvmean,
        pred_tla,
        dmax_cm: dmax_mm(g.cc.runs(), nj, linear) / 10.0,
        pred_dmax_cm: dmax_mm(p.cc.runs(), nj, linear) / 10.0,
    };
    let lesions = lesion_rows(case_id, &g, &p, &ov, &pred_hit, voxel_ml);
    Ok(CaseEvaluation { patient, lesions })
}

/// Per-lesion rows: every GT lesion with the union of the predictions that
/// share a voxel with it, then every prediction that touches no GT lesion.
fn lesion_rows(
    case_id: &str,
    g: &Side,
    p: &Side,
    ov: &[Overlap],
    pred_hit: &[bool],
    voxel_ml: f64,
) -> Vec<LesionMetrics> {
    let mut rows = Vec::new();
    let mut start = 0;
    for gl in 1..=g.cc.count() as u32 {
        let mut end = start;
        while end < ov.len() && ov[end].gt == gl {
            end += 1;
        }
        let matched: Vec<u32> = ov[start..end].iter().map(|o| o.pred).collect();
        let inter: u64 = ov[start..end].iter().map(|o| o.voxels).sum();
        start = end;
        let [gt_mtv_ml, gt_suvmax, gt_suvmean, gt_tla] = g.summary(std::iter::once(gl), voxel_ml);
        let [pred_mtv_ml, pred_suvmax, pred_suvmean, pred_tla] =
            p.summary(matched.iter().copied(), voxel_ml);
        let gvox = g.cc.stats()[gl as usize - 1].voxels;
        let pvox: u64 = matched
            .iter()
            .map(|&l| p.cc.stats()[l as usize - 1].voxels)
            .sum();
        rows.push(LesionMetrics {
            case_id: case_id.to_string(),
            kind: LesionKind::Gt,
            gt_label: Some(gl),
            pred_labels: matched,
            dice: 2.0 * inter as f64 / (gvox + pvox) as f64,
            gt_mtv_ml,
            gt_suvmax,
            gt_suvmean,
            gt_tla,
            pred_mtv_ml,
            pred_suvmax,
            pred_suvmean,
            pred_tla,
        });
    }
    for (i, _) in pred_hit.iter().enumerate().filter(|(_, h)| !**h) {
        let pl = i as u32 + 1;
        let [pred_mtv_ml, pred_suvmax, pred_suvmean, pred_tla] =
            p.summary(std::iter::once(pl), voxel_ml);
        rows.push(LesionMetrics {
            case_id: case_id.to_string(),
            kind: LesionKind::UnmatchedPred,
            gt_label: None,
            pred_labels: vec![pl],
            dice: 0.0,
            gt_mtv_ml: f64::NAN,
            gt_suvmax: f64::NAN,
            gt_suvmean: f64::NAN,
            gt_tla: f64::NAN,
            pred_mtv_ml,
            pred_suvmax,
            pred_suvmean,
            pred_tla,
        });
    }
    rows
}

fn check_grid<A, B>(a: &Volume<A>, b: &Volume<B>, what: &str) -> Result<()> {
    a.check_same_grid(b, GRID_TOL_MM, what)
        .map_err(|e| EvalError::Grid {
            what: what.to_string(),
            detail: e.to_string(),
        })
}
