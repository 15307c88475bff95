//! Lesion detection counts under the study's criteria (`docs/method/evaluation.md` §4).
//!
//! Components are visited in label order (raster order of first appearance)
//! exactly as the reference loops over `1..=n`:
//!
//! * **C1** (any overlap): TP = predicted components sharing a voxel with the
//!   GT foreground, FP = the others, FN = GT components sharing no voxel
//!   with the prediction. TP counts predicted components, so one GT lesion
//!   split in two gives TP = 2.
//! * **C2** (IoU): each predicted component takes its best-IoU GT component
//!   (the first in label order on ties; none without overlap); TP if that
//!   IoU ≥ 0.5 (the GT lesion is then consumed), else FP; FN = GT lesions
//!   never consumed.
//! * **C3** (the study's SUVmax rule): each predicted component takes its
//!   best-IoU GT component as in C2; TP if the predicted component contains
//!   that GT lesion's SUVmax voxel (its highest PET voxel; on ties the
//!   first in NumPy C order of the `[i, j, k]` array, k fastest, exactly as
//!   the reference's `argmax`), which consumes the GT lesion; else FP.
//!   FN = GT lesions never consumed. Deviations from the reference code,
//!   which only matter in corner cases: a predicted component with no GT
//!   overlap is always FP (the reference then tests voxel (0,0,0) and
//!   crashes if it is predicted); the SUVmax voxel is searched inside the
//!   lesion only (the reference's `argmax(gt · pet)` can leave the lesion if
//!   all its PET values are ≤ 0).
//! * **One-to-one** (ours, not in the study): overlapping pairs are matched
//!   greedily by decreasing IoU (ties by GT then predicted label), each
//!   component at most once; TP = pairs, FP/FN = unmatched components. It
//!   neither rewards split predictions (as C1 does) nor merges.
//!
//! F1 = 2TP / (2TP + FP + FN), NaN when there is no lesion on either side.

use serde::Serialize;

use crate::overlap::{frac_gt, iou_fraction, Overlap};

/// TP/FP/FN counts of one criterion and the F1 they give.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    /// True positives.
    pub tp: u64,
    /// False positives (predicted components).
    pub fp: u64,
    /// False negatives (GT components).
    pub fn_: u64,
}

impl Detection {
    /// F1 = 2TP / (2TP + FP + FN); NaN when all three are zero.
    pub fn f1(&self) -> f64 {
        let den = 2 * self.tp + self.fp + self.fn_;
        if den == 0 {
            f64::NAN
        } else {
            2.0 * self.tp as f64 / den as f64
        }
    }
}

/// Overlaps grouped per predicted label: `(gt, voxels)` lists, GT ascending.
fn by_pred(overlaps: &[Overlap], n_pred: usize) -> Vec<Vec<(u32, u64)>> {
    let mut v = vec![Vec::new(); n_pred];
    for o in overlaps {
        v[o.pred as usize - 1].push((o.gt, o.voxels));
    }
    for l in &mut v {
        l.sort_unstable();
    }
    v
}

/// Best-IoU GT label of each predicted component (first GT label on ties,
/// `None` without overlap) and its IoU as an exact fraction.
fn best_iou(
    overlaps: &[Overlap],
    gt_voxels: &[u64],
    pred_voxels: &[u64],
) -> Vec<Option<(u32, (u64, u64))>> {
    by_pred(overlaps, pred_voxels.len())
        .iter()
        .enumerate()
        .map(|(p, list)| {
            let mut best: Option<(u32, (u64, u64))> = None;
            for &(g, inter) in list {
                let f = iou_fraction(inter, gt_voxels[g as usize - 1], pred_voxels[p]);
                if best.is_none_or(|(_, b)| frac_gt(f, b)) {
                    best = Some((g, f));
                }
            }
            best
        })
        .collect()
}

/// C1: any overlap, counting predicted components.
pub fn criterion1(overlaps: &[Overlap], n_gt: usize, n_pred: usize) -> Detection {
    let mut gt_hit = vec![false; n_gt];
    let mut pred_hit = vec![false; n_pred];
    for o in overlaps {
        gt_hit[o.gt as usize - 1] = true;
        pred_hit[o.pred as usize - 1] = true;
    }
    let tp = pred_hit.iter().filter(|&&h| h).count() as u64;
    Detection {
        tp,
        fp: n_pred as u64 - tp,
        fn_: gt_hit.iter().filter(|&&h| !h).count() as u64,
    }
}

/// C2: best-IoU GT lesion with IoU ≥ `threshold` (0.5 in the study).
pub fn criterion2(
    overlaps: &[Overlap],
    gt_voxels: &[u64],
    pred_voxels: &[u64],
    threshold: f64,
) -> Detection {
    let mut consumed = vec![false; gt_voxels.len()];
    let (mut tp, mut fp) = (0, 0);
    for best in best_iou(overlaps, gt_voxels, pred_voxels) {
        match best {
            Some((g, (i, u))) if i as f64 >= threshold * u as f64 => {
                tp += 1;
                consumed[g as usize - 1] = true;
            }
            _ => fp += 1,
        }
    }
    Detection {
        tp,
        fp,
        fn_: consumed.iter().filter(|&&c| !c).count() as u64,
    }
}

/// C3: the predicted component contains the SUVmax voxel of its best-IoU
/// GT lesion. `gt_suvmax_voxel[g - 1]` is that voxel's raster index (None
/// when the lesion has no finite PET value) and `pred_labels` the predicted
/// label image.
pub fn criterion3(
    overlaps: &[Overlap],
    gt_voxels: &[u64],
    pred_voxels: &[u64],
    gt_suvmax_voxel: &[Option<usize>],
    pred_labels: &[u32],
) -> Detection {
    let mut consumed = vec![false; gt_voxels.len()];
    let (mut tp, mut fp) = (0, 0);
    for (p, best) in best_iou(overlaps, gt_voxels, pred_voxels)
        .into_iter()
        .enumerate()
    {
        let hit = best.and_then(|(g, _)| {
            let v = gt_suvmax_voxel[g as usize - 1]?;
            (pred_labels[v] as usize == p + 1).then_some(g)
        });
        match hit {
            Some(g) => {
                tp += 1;
                consumed[g as usize - 1] = true;
            }
            None => fp += 1,
        }
    }
    Detection {
        tp,
        fp,
        fn_: consumed.iter().filter(|&&c| !c).count() as u64,
    }
}

/// One-to-one greedy matching by decreasing IoU (ours; see module docs).
pub fn one_to_one(overlaps: &[Overlap], gt_voxels: &[u64], pred_voxels: &[u64]) -> Detection {
    let mut pairs: Vec<(u32, u32, (u64, u64))> = overlaps
        .iter()
        .map(|o| {
            let f = iou_fraction(
                o.voxels,
                gt_voxels[o.gt as usize - 1],
                pred_voxels[o.pred as usize - 1],
            );
            (o.gt, o.pred, f)
        })
        .collect();
    pairs.sort_by(|a, b| {
        if frac_gt(a.2, b.2) {
            std::cmp::Ordering::Less
        } else if frac_gt(b.2, a.2) {
            std::cmp::Ordering::Greater
        } else {
            (a.0, a.1).cmp(&(b.0, b.1))
        }
    });
    let mut gt_used = vec![false; gt_voxels.len()];
    let mut pred_used = vec![false; pred_voxels.len()];
    let mut tp = 0u64;
    for (g, p, _) in pairs {
        let (gi, pi) = (g as usize - 1, p as usize - 1);
        if !gt_used[gi] && !pred_used[pi] {
            gt_used[gi] = true;
            pred_used[pi] = true;
            tp += 1;
        }
    }
    Detection {
        tp,
        fp: pred_voxels.len() as u64 - tp,
        fn_: gt_voxels.len() as u64 - tp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(gt: u32, pred: u32, voxels: u64) -> Overlap {
        Overlap { gt, pred, voxels }
    }

    #[test]
    fn split_prediction_counts_twice_under_c1_once_one_to_one() {
        // GT 1 (10 voxels) split into predictions 1 (4, all inside) and 2
        // (6, all inside); prediction 3 (5) touches nothing; GT 2 missed.
        let ov = [o(1, 1, 4), o(1, 2, 6)];
        let gt = [10, 3];
        let pr = [4, 6, 5];
        let c1 = criterion1(&ov, 2, 3);
        assert_eq!((c1.tp, c1.fp, c1.fn_), (2, 1, 1));
        let c2 = criterion2(&ov, &gt, &pr, 0.5);
        // IoU 0.4 and 0.6: only prediction 2 is TP.
        assert_eq!((c2.tp, c2.fp, c2.fn_), (1, 2, 1));
        let oo = one_to_one(&ov, &gt, &pr);
        assert_eq!((oo.tp, oo.fp, oo.fn_), (1, 2, 1));
        assert!((c1.f1() - 4.0 / 6.0).abs() < 1e-12);
        assert!(Detection {
            tp: 0,
            fp: 0,
            fn_: 0
        }
        .f1()
        .is_nan());
    }

    #[test]
    fn c3_needs_the_suvmax_voxel_and_ties_take_first_gt() {
        // Prediction 1 overlaps GT 1 and GT 2 equally (IoU 2/(4+4-2) both):
        // the first GT label wins.
        let ov = [o(1, 1, 2), o(2, 1, 2)];
        let gt = [4, 4];
        let pr = [4];
        // Pred label image: voxels 0..4 are prediction 1.
        let labels = [1, 1, 1, 1, 0, 0, 0, 0];
        let hit = criterion3(&ov, &gt, &pr, &[Some(3), Some(0)], &labels);
        assert_eq!((hit.tp, hit.fp, hit.fn_), (1, 0, 1));
        let miss = criterion3(&ov, &gt, &pr, &[Some(6), Some(0)], &labels);
        assert_eq!((miss.tp, miss.fp, miss.fn_), (0, 1, 2));
    }
}
