#!/usr/bin/env python3
"""Regenerates petseg-eval's committed test fixtures (tests/fixtures/*.json).

    python3 crates/petseg-eval/scripts/make_fixtures.py

Needs numpy, scipy and connected-components-3d (cc3d). Everything is seeded.
Masks are stored as strings of '0'/'1' in raster order (i fastest), PET as
float32 values, arrays indexed [i, j, k]. See reference.py for the rules.
"""
import json
import os

import numpy as np

import reference as ref

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")


def mask_str(m):
    return "".join("1" if v else "0" for v in ref.raster(m))


def ball(shape, c, r, spacing=(1, 1, 1)):
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    d = ((ii - c[0]) * spacing[0]) ** 2 + ((jj - c[1]) * spacing[1]) ** 2 + ((kk - c[2]) * spacing[2]) ** 2
    return d <= r * r


def ccl_fixtures(rng):
    cases = []
    # Structured: contacts that only 18/26 (edge) or only 26 (corner) join.
    m = np.zeros((6, 5, 4), np.uint8)
    m[1, 1, 1] = 1; m[2, 2, 1] = 1          # edge contact (dk = 0)
    m[4, 1, 1] = 1; m[5, 2, 2] = 1          # corner contact
    m[0, 4, 0] = 1; m[0, 3, 1] = 1          # edge contact (di = 0)
    m[3, 4, 3] = 1; m[4, 4, 3] = 1          # face contact
    cases.append(("diagonal_contacts", m))
    # Staircase along the k axis with corner-only steps.
    m = np.zeros((7, 7, 7), np.uint8)
    for t in range(7):
        m[t, t, t] = 1
    cases.append(("corner_staircase", m))
    # A U shape whose arms merge late (union-find must relabel).
    m = np.zeros((9, 3, 8), np.uint8)
    m[1, 1, 0:8] = 1; m[7, 1, 0:8] = 1; m[1:8, 1, 7] = 1; m[4, 1, 2:5] = 1
    cases.append(("u_shape_late_merge", m))
    for t, (shape, p) in enumerate([((13, 11, 9), 0.15), ((10, 12, 8), 0.3), ((16, 9, 7), 0.45),
                                     ((8, 8, 8), 0.6), ((20, 6, 5), 0.25), ((1, 14, 12), 0.4),
                                     ((15, 1, 1), 0.5), ((12, 13, 1), 0.35)]):
        cases.append((f"random_{t}_p{p}", (rng.random(shape) < p).astype(np.uint8)))
    out = []
    for name, m in cases:
        entry = {"name": name, "shape": list(m.shape), "mask": mask_str(m)}
        for conn in (6, 18, 26):
            lab, n = ref.label_scipy(m, conn)
            lc, nc = ref.label_cc3d(m, conn)
            assert n == nc and np.array_equal(lab, lc), (name, conn)
            entry[f"labels_{conn}"] = ref.raster(lab).tolist()
            entry[f"n_{conn}"] = n
        out.append(entry)
    return out


def metric_case(name, gt, pred, pet, spacing):
    pet = (np.round(pet * 100) / 100).astype(np.float32)
    am = {k: (None if v != v else v) for k, v in ref.autopet_metrics(gt, pred, spacing).items()}
    e = {
        "name": name, "shape": list(gt.shape), "spacing_mm": list(spacing),
        "gt": mask_str(gt), "pred": mask_str(pred),
        # PET values have 2 decimals: stored as integers × 100; the float32
        # used here is float32(n / 100), which the tests rebuild exactly.
        "pet_x100": [int(round(float(v) * 100)) for v in ref.raster(pet)],
        "autopet": am,
        "dmax_gt_cm": ref.dmax_brute(gt, spacing), "dmax_pred_cm": ref.dmax_brute(pred, spacing),
        "gt_uptake": ref.uptake(gt, pet, spacing), "pred_uptake": ref.uptake(pred, pet, spacing),
        "n_gt": int(ref.autopet_con_comp(gt).max()), "n_pred": int(ref.autopet_con_comp(pred).max()),
    }
    for c in (1, 2, 3):
        e[f"c{c}"] = list(ref.reference_tp_fp_fn(gt, pred, c, 0.5, pet))
    return e


def metric_fixtures(rng):
    out = []
    shape = (14, 12, 10)
    sp = (2.0, 2.5, 3.0)
    for t in range(10):
        gt = np.zeros(shape, bool)
        for _ in range(rng.integers(1, 6)):
            c = rng.integers(2, np.array(shape) - 2)
            gt |= ball(shape, c, rng.uniform(0.8, 3.0))
        pred = gt.copy()
        # Perturb: drop a lesion, shift, dilate/erode, add false positives.
        lab, n = ref.label_scipy(gt.astype(np.uint8), 18)
        if n > 1 and rng.random() < 0.6:
            pred[lab == rng.integers(1, n + 1)] = False
        if rng.random() < 0.5:
            pred = np.roll(pred, rng.integers(-2, 3), axis=int(rng.integers(0, 3)))
        if rng.random() < 0.4:
            from scipy import ndimage
            pred = ndimage.binary_dilation(pred) if rng.random() < 0.5 else ndimage.binary_erosion(pred)
        for _ in range(rng.integers(0, 3)):
            c = rng.integers(1, np.array(shape) - 1)
            pred |= ball(shape, c, rng.uniform(0.5, 2.0))
        noise = rng.random(shape) < 0.002
        pred |= noise
        pet = np.round(rng.gamma(2.0, 1.0, shape) + 6.0 * gt * rng.random(shape), 1)
        out.append(metric_case(f"random_{t}", gt.astype(np.uint8), pred.astype(np.uint8), pet, sp))
    # Edge cases.
    gt = ball(shape, (7, 6, 5), 2.5).astype(np.uint8)
    pet = np.round(rng.gamma(2.0, 1.0, shape), 2)
    z = np.zeros(shape, np.uint8)
    out.append(metric_case("empty_pred", gt, z, pet, sp))
    out.append(metric_case("empty_gt", z, gt, pet, sp))
    out.append(metric_case("both_empty", z, z, pet, sp))
    # GT split by the prediction into two parts; SUVmax tie inside the GT
    # (first voxel in raster order decides C3).
    gt = np.zeros(shape, np.uint8); gt[2:12, 5, 5] = 1
    pred = np.zeros(shape, np.uint8); pred[2:6, 5, 5] = 1; pred[8:12, 5, 5] = 1
    pet = np.ones(shape); pet[4, 5, 5] = 9.0; pet[9, 5, 5] = 9.0
    out.append(metric_case("split_with_suvmax_tie", gt, pred, pet, (1.0, 1.0, 1.0)))
    # Diagonal-only (edge) contact: one lesion for 18-connectivity.
    gt = np.zeros(shape, np.uint8); gt[3, 3, 3] = 1; gt[4, 4, 3] = 1; gt[8, 8, 8] = 1; gt[9, 9, 9] = 1
    pred = np.zeros(shape, np.uint8); pred[4, 4, 3] = 1; pred[9, 9, 9] = 1; pred[13, 2, 2] = 1
    pet = np.round(rng.gamma(2.0, 1.0, shape), 2)
    out.append(metric_case("diagonal_contacts", gt, pred, pet, sp))
    return out


def wilcoxon_fixtures(rng):
    samples = []
    def add(name, x, y):
        samples.append((name, [float(v) for v in x], [float(v) for v in y]))
    x = rng.normal(0.7, 0.1, 5); add("n5_untied", x, x - rng.normal(0.05, 0.1, 5))
    x = rng.normal(0.7, 0.1, 8); y = x.copy(); d = np.array([.1, .1, -.2, .3, .3, .3, -.1, .4]); add("n8_ties", x, x - d)
    d = np.array([0, .1, .2, -.05, .3, 0, .15, .2, -.1, .25]); add("n10_zeros_ties", x[:1].repeat(10) + 0.0, x[:1].repeat(10) - d)
    x = rng.normal(0.6, 0.2, 13); d = np.round(rng.normal(0.05, 0.1, 13), 1); add("n13_rounded", x, x - d)
    x = rng.normal(0.6, 0.2, 20); add("n20_untied", x, x - rng.normal(0.03, 0.1, 20))
    d = np.round(rng.normal(0.05, 0.1, 20), 1); add("n20_ties", np.full(20, 0.5), 0.5 - d)
    d = np.round(rng.normal(0.02, 0.05, 40), 2); add("n40_zeros_ties", np.full(40, 1.0), 1.0 - d)
    x = rng.normal(0.6, 0.2, 50); add("n50_untied", x, x - rng.normal(0.02, 0.1, 50))
    x = rng.normal(0.6, 0.2, 51); add("n51_untied", x, x - rng.normal(0.02, 0.1, 51))
    d = np.round(rng.normal(0.01, 0.05, 120), 2); add("n120_ties", np.full(120, 2.0), 2.0 - d)
    out = []
    for name, x, y in samples:
        for alt in ("greater", "less", "two-sided"):
            for corr in (False, True):
                r = ref.wilcoxon_ref(x, y, alt, corr)
                out.append({"name": name, "x": x, "y": y, "alternative": alt, "correction": corr, **r})
    return out


def main():
    rng = np.random.default_rng(20261128)
    os.makedirs(OUT, exist_ok=True)
    for fname, data in [("ccl.json", ccl_fixtures(rng)), ("metrics.json", metric_fixtures(rng)),
                        ("wilcoxon.json", wilcoxon_fixtures(rng))]:
        with open(os.path.join(OUT, fname), "w") as f:
            json.dump(data, f, separators=(",", ":"))
        print(fname, os.path.getsize(os.path.join(OUT, fname)), "bytes")


if __name__ == "__main__":
    main()
