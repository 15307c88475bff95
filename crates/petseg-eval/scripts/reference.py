#!/usr/bin/env python3
"""Python references for petseg-eval's tests (fixtures and live checks).

Arrays are indexed [i, j, k] (NIfTI order). Our raster order is i fastest,
i.e. NumPy C order of the array transposed to [k, j, i].

* `label_scipy`: scipy.ndimage.label with the structure matching 6/18/26,
  run on the [k, j, i] view so labels come out in our raster order.
* `autopet_*`: a faithful re-implementation of the autoPET evaluation code
  (lab-midas/autoPET `val_script.py`: con_comp with cc3d 18-connectivity,
  false_pos_pix, false_neg_pix, dice_score), voxel volume = product of
  spacings / 1000.
* `reference_tp_fp_fn`: a re-implementation of the study's detection rules
  (criterion1/2/3, loops over cc3d 18-connected labels 1..n, best IoU with
  strict `>` so the first GT label wins ties, IoU >= threshold for C2, the
  GT lesion's SUVmax voxel for C3, found as the original does with NumPy's
  argmax on the [i, j, k] array, so ties go to the first voxel in C order,
  k fastest).
* `dmax_brute`: all pairs of voxel centres, mm with spacing, in cm.

Live mode: `python3 reference.py` reads one JSON request on stdin (or
{"op": "batch", "requests": [...]}) and writes the JSON answer on stdout
(used by tests/live_scipy.rs).
"""
import json
import sys

import numpy as np
from scipy import ndimage, stats

try:
    import cc3d
except ImportError:  # live CCL checks work without cc3d
    cc3d = None

RANK = {6: 1, 18: 2, 26: 3}


def raster(a):
    """[i, j, k] array -> flat raster order (i fastest)."""
    return np.ascontiguousarray(a.transpose(2, 1, 0)).ravel()


def from_raster(flat, shape):
    ni, nj, nk = shape
    return np.asarray(flat).reshape(nk, nj, ni).transpose(2, 1, 0)


def label_scipy(mask, conn):
    s = ndimage.generate_binary_structure(3, RANK[conn])
    lab, n = ndimage.label(mask.transpose(2, 1, 0), structure=s)
    return lab.transpose(2, 1, 0), int(n)


def label_cc3d(mask, conn):
    # F-ordered [i, j, k]: cc3d scans memory order, i.e. our raster order.
    lab = cc3d.connected_components(np.asfortranarray(mask.astype(np.uint8)), connectivity=conn)
    return lab, int(lab.max())


# --- autoPET evaluation code (re-implementation of val_script.py) ---------
def autopet_con_comp(seg):
    return cc3d.connected_components(np.asfortranarray(seg.astype(np.uint8)), connectivity=18)


def autopet_false_pos_pix(gt, pred):
    cc = autopet_con_comp(pred)
    fp = 0
    for idx in range(1, cc.max() + 1):
        comp = np.isin(cc, idx)
        if (comp * gt).sum() == 0:
            fp += comp.sum()
    return fp


def autopet_false_neg_pix(gt, pred):
    cc = autopet_con_comp(gt)
    fn = 0
    for idx in range(1, cc.max() + 1):
        comp = np.isin(cc, idx)
        if (comp * pred).sum() == 0:
            fn += comp.sum()
    return fn


def autopet_dice(gt, pred):
    s = gt.sum() + pred.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(2 * (gt * pred).sum() / s) if s > 0 else float("nan")


def autopet_metrics(gt, pred, spacing):
    vv = spacing[0] * spacing[1] * spacing[2] / 1000
    return {
        "dice": autopet_dice(gt.astype(float), pred.astype(float)),
        "fpv_ml": float(autopet_false_pos_pix(gt, pred) * vv),
        "fnv_ml": float(autopet_false_neg_pix(gt, pred) * vv),
    }


# --- the study's detection rules --------------------------------------------
def iou(a, b):
    inter = np.sum(b[a == 1])
    union = np.sum(a) + np.sum(b) - inter
    return inter / union


def suvmax_detected(gt_lesion, pred_lesion, pet):
    prod = gt_lesion * pet
    # As the reference: argmax over the [i, j, k] array (C order, k fastest).
    idx = np.unravel_index(int(np.argmax(prod)), prod.shape)
    return pred_lesion[idx] == 1


def reference_tp_fp_fn(gt, pred, criterion, threshold=0.5, pet=None):
    g, ng = cc3d.connected_components(np.asfortranarray(gt.astype(np.uint8)), connectivity=18, return_N=True)
    p, npred = cc3d.connected_components(np.asfortranarray(pred.astype(np.uint8)), connectivity=18, return_N=True)
    remaining = list(range(1, ng + 1))
    tp = fp = 0
    if criterion == 1:
        fn = 0
        for i in range(1, npred + 1):
            if np.any((p == i) & (g > 0)):
                tp += 1
            else:
                fp += 1
        for j in range(1, ng + 1):
            if not np.any((g == j) & (p > 0)):
                fn += 1
        return tp, fp, fn
    for i in range(1, npred + 1):
        best, match = 0, None
        pl = np.where(p == i, 1, 0)
        for j in range(1, ng + 1):
            v = iou(np.where(g == j, 1, 0), pl)
            if v > best:
                best, match = v, j
        if criterion == 2:
            ok = best >= threshold
        else:
            # A component without GT overlap is FP (see module docs).
            ok = match is not None and suvmax_detected(np.where(g == match, 1, 0), pl, pet)
        if ok:
            tp += 1
            remaining.remove(match)
        else:
            fp += 1
    return tp, fp, len(remaining)


def dmax_brute(mask, spacing):
    pts = np.argwhere(mask > 0).astype(float) * np.asarray(spacing)
    if len(pts) < 2:
        return 0.0
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    return float(d.max() / 10.0)


def uptake(mask, pet, spacing):
    vv = spacing[0] * spacing[1] * spacing[2] / 1000
    n = int(mask.sum())
    if n == 0:
        return {"tmtv_ml": 0.0, "suvmax": None, "suvmean": None, "tla": None}
    vals = pet[mask > 0].astype(np.float64)
    return {"tmtv_ml": n * vv, "suvmax": float(vals.max()), "suvmean": float(vals.mean()),
            "tla": float(vals.sum() * vv)}


def wilcoxon_ref(x, y, alternative, correction):
    r = stats.wilcoxon(x, y, alternative=alternative, correction=correction)
    return {"statistic": float(r.statistic), "pvalue": float(r.pvalue)}


def answer(req):
    op = req["op"]
    if op == "batch":
        return [answer(r) for r in req["requests"]]
    if op == "label":
        shape = req["shape"]
        mask = from_raster(np.frombuffer(bytes.fromhex(req["mask_hex"]), dtype=np.uint8), shape)
        lab, n = label_scipy(mask, req["connectivity"])
        out = {"n": n, "labels": raster(lab).tolist()}
        if cc3d is not None:
            lc, nc = label_cc3d(mask, req["connectivity"])
            out["cc3d_labels"] = raster(lc).tolist()
        return out
    if op == "wilcoxon":
        return wilcoxon_ref(req["x"], req["y"], req["alternative"], req["correction"])
    raise SystemExit(f"unknown op {op}")


def main():
    json.dump(answer(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
