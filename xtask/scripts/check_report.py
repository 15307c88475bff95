#!/usr/bin/env python3
"""Independent recomputation of `cargo xtask report` numbers.

Usage: check_report.py RESULTS_DIR REPORT_JSON [PROPOSED_LOSS]

Reads every RESULTS_DIR/<network>__<loss>[__fold<k>]/patients.csv and
lesions.csv (or the names in cell.json), pools the folds of each network x
loss, recomputes Table 1 (DSC mean/SD/median/IQR, mean TP/FP/FN under C3,
mean F1 C3), the scenario DSC summaries, the GT TMTV threshold rows, the GT
lesion MTV threshold rows (GT lesions of lesions.csv; thresholds
numpy.percentile(mtv, [25, 50, 75, 85]) with NumPy's default linear
interpolation; lesions with MTV <= threshold; a lesion with no predicted
label has DSC 0; none when a folder lacks lesions.csv), the study Dmax groups,
and the one-tailed paired Wilcoxon p-values with
scipy.stats.wilcoxon(proposed, baseline, alternative='greater',
correction=True) on per-patient DSC paired by case id (pairs with a missing
DSC dropped), and compares them with REPORT_JSON. Exit status 1 on any
mismatch. Needs numpy and scipy only.
"""
import csv
import json
import math
import os
import re
import sys

import numpy as np
from scipy import stats

RTOL = 1e-9
PERCENTILES = (25.0, 50.0, 75.0, 85.0)


def s_lesions_csv(report, key):
    return next(c["lesions_csv"] for c in report["cells"] if (c["network"], c["loss"]) == key)


def load(results):
    """(network, loss) -> patient rows, and -> GT lesion rows (None when a
    folder has no lesions.csv)."""
    cells, lesions = {}, {}
    for name in sorted(os.listdir(results)):
        d = os.path.join(results, name)
        if not os.path.isfile(os.path.join(d, "patients.csv")):
            continue
        cj = os.path.join(d, "cell.json")
        if os.path.isfile(cj):
            meta = json.load(open(cj))
            key = (meta["network"], meta["loss"])
        else:
            m = re.fullmatch(r"(.+?)__(.+?)(__fold\d+)?", name)
            key = (m.group(1), m.group(2))
        with open(os.path.join(d, "patients.csv"), newline="") as f:
            cells.setdefault(key, []).extend(csv.DictReader(f))
        lp = os.path.join(d, "lesions.csv")
        if not os.path.isfile(lp):
            lesions[key] = None
        elif lesions.setdefault(key, []) is not None:
            with open(lp, newline="") as f:
                lesions[key].extend(r for r in csv.DictReader(f) if r["kind"] == "gt")
    return cells, lesions


def lesion_dice(row):
    """A GT lesion's DSC: 0 when no predicted component touches it."""
    return 0.0 if row["pred_labels"].strip() == "" else float(row["dice"])


def fl(row, k):
    v = row[k].strip()
    return float("nan") if v == "" else float(v)


def summary(values):
    v = np.array([x for x in values if math.isfinite(x)])
    if len(v) == 0:
        return dict(n=0, mean=None, sd=None, median=None, q1=None, q3=None)
    return dict(
        n=len(v),
        mean=float(v.mean()),
        sd=float(v.std(ddof=1)) if len(v) > 1 else None,
        median=float(np.percentile(v, 50)),
        q1=float(np.percentile(v, 25)),
        q3=float(np.percentile(v, 75)),
    )


failures = []


def same(what, expected, got):
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        ok = got is None
    elif got is None:
        ok = False
    else:
        ok = math.isclose(expected, got, rel_tol=RTOL, abs_tol=1e-12)
    if not ok:
        failures.append(f"{what}: expected {expected}, report has {got}")


def same_summary(what, expected, got):
    for k in ("n", "mean", "sd", "median", "q1", "q3"):
        same(f"{what}.{k}", expected[k], got[k])


def main():
    results, report_path = sys.argv[1], sys.argv[2]
    proposed = sys.argv[3] if len(sys.argv) > 3 else "l1dfl"
    cells, lesions = load(results)
    report = json.load(open(report_path))
    rows = {(r["network"], r["loss"]): r for r in report["table1"]}
    summaries = {(c["network"], c["loss"]): c["summary"] for c in report["cells"]}
    if set(rows) != set(cells):
        failures.append(f"cells differ: {sorted(cells)} vs {sorted(rows)}")
    n_tests = 0
    n_mtv = 0
    for key, cases in cells.items():
        r = rows[key]
        tag = "/".join(key)
        same(f"{tag} n_cases", len(cases), r["n_cases"])
        same_summary(f"{tag} dice", summary(fl(c, "dice") for c in cases), r["dice"])
        c3 = [c for c in cases if c["tp_c3"].strip() != ""]
        same(f"{tag} n_c3", len(c3), r["n_c3"])
        for k in ("tp", "fp", "fn"):
            mean = float(np.mean([float(c[f"{k}_c3"]) for c in c3])) if c3 else None
            same(f"{tag} {k}_c3_mean", mean, r[f"{k}_c3_mean"])
        same_summary(f"{tag} f1_c3", summary(fl(c, "f1_c3") for c in cases), r["f1_c3"])
        # Scenarios.
        s = summaries[key]
        groups = {g["name"]: g for g in s["scenarios"]}
        for name, keep in (
            ("no_lesion", lambda n: n == 0),
            ("single", lambda n: n == 1),
            ("multiple", lambda n: n > 1),
        ):
            sel = [c for c in cases if keep(int(c["n_gt_lesions"]))]
            same(f"{tag} {name} n", len(sel), groups[name]["n_cases"])
            same_summary(f"{tag} {name} dice", summary(fl(c, "dice") for c in sel), groups[name]["dice"])
        # TMTV thresholds (cases with a GT lesion).
        pos = [c for c in cases if int(c["n_gt_lesions"]) > 0]
        tmtv = np.array([fl(c, "gt_tmtv_ml") for c in pos])
        for row in s["tmtv_thresholds"]:
            t = float(np.percentile(tmtv, row["percentile"]))
            same(f"{tag} TMTV P{row['percentile']} threshold", t, row["threshold_ml"])
            below = [fl(c, "dice") for c in pos if fl(c, "gt_tmtv_ml") <= t]
            same(f"{tag} TMTV P{row['percentile']} n", len(below), row["n_below"])
            same(f"{tag} TMTV P{row['percentile']} median", summary(below)["median"], row["median_dice_below"])
        # GT lesion MTV thresholds (lesions.csv).
        gt = lesions[key]
        if (gt is not None) != s_lesions_csv(report, key):
            failures.append(f"{tag}: lesions_csv flag disagrees ({gt is not None} expected)")
        expected_rows = 0 if not gt else len(PERCENTILES)
        if len(s["mtv_thresholds"]) != expected_rows:
            failures.append(f"{tag}: {len(s['mtv_thresholds'])} MTV rows, expected {expected_rows}")
        if gt:
            mtv = np.array([float(r["gt_mtv_ml"]) for r in gt])
            for p, row in zip(PERCENTILES, s["mtv_thresholds"]):
                t = float(np.percentile(mtv, p))
                same(f"{tag} MTV P{p} percentile", p, row["percentile"])
                same(f"{tag} MTV P{p} threshold", t, row["threshold_ml"])
                below = [lesion_dice(r) for r in gt if float(r["gt_mtv_ml"]) <= t]
                same(f"{tag} MTV P{p} n", len(below), row["n_below"])
                same(f"{tag} MTV P{p} median", summary(below)["median"], row["median_dice_below"])
                n_mtv += 1
        # Study Dmax groups.
        bounds = [(0.0, 9.0), (9.0, 11.0), (11.0, 14.0), (14.0, 60.0)]
        for i, g in enumerate(s["dmax_study_groups"]):
            lo, hi = bounds[i]
            last = i == len(bounds) - 1
            sel = [c for c in pos if fl(c, "dmax_cm") >= lo and (fl(c, "dmax_cm") < hi or (last and fl(c, "dmax_cm") <= hi))]
            same(f"{tag} Dmax {lo}-{hi} n", len(sel), g["summary"]["n_cases"])
            same_summary(f"{tag} Dmax {lo}-{hi} dice", summary(fl(c, "dice") for c in sel), g["summary"]["dice"])
        # Wilcoxon: proposed against each baseline of the same network.
        net, loss = key
        if loss.lower() != proposed.lower():
            if r["wilcoxon"]:
                failures.append(f"{tag}: a baseline row carries tests")
            continue
        tests = {t["baseline"]: t for t in r["wilcoxon"]}
        baselines = [k for k in cells if k[0] == net and k[1].lower() != proposed.lower()]
        if sorted(tests) != sorted(b[1] for b in baselines):
            failures.append(f"{tag}: tests against {sorted(tests)}, expected {sorted(b[1] for b in baselines)}")
        for b in baselines:
            other = {c["case_id"]: fl(c, "dice") for c in cells[b]}
            x, y = [], []
            for c in cases:
                u, v = fl(c, "dice"), other[c["case_id"]]
                if math.isfinite(u) and math.isfinite(v):
                    x.append(u)
                    y.append(v)
            res = stats.wilcoxon(x, y, alternative="greater", correction=True)
            t = tests[b[1]]
            if t["alternative"] != "greater":
                failures.append(f"{tag} vs {b[1]}: alternative {t['alternative']}")
            same(f"{tag} vs {b[1]} n", len(x), t["test"]["n"])
            same(f"{tag} vs {b[1]} statistic", float(res.statistic), t["test"]["statistic"])
            if not math.isclose(float(res.pvalue), t["test"]["p_value"], rel_tol=1e-6, abs_tol=1e-12):
                failures.append(f"{tag} vs {b[1]} p: scipy {res.pvalue}, report {t['test']['p_value']} ({t['test']['method']})")
            n_tests += 1
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(
        f"report agrees with the CSVs: {len(cells)} cells, {n_tests} Wilcoxon tests, "
        f"{n_mtv} lesion MTV threshold rows"
    )


if __name__ == "__main__":
    main()
