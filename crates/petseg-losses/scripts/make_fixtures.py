#!/usr/bin/env python3
"""Regenerate the parity fixtures of petseg-losses from MONAI 1.6.1 / PyTorch.

usage: python3 crates/petseg-losses/scripts/make_fixtures.py  (needs numpy, torch, monai)

Writes, under crates/petseg-losses/tests/fixtures/:
  case_<name>.npz  logits [B,2,10,8,8] f32, labels [B,1,10,8,8] u8, and grad_<loss> f32 arrays
                   (gradient of each loss with respect to the logits);
  fixtures.json    for every case and loss: the loss config (petseg `LossConfig` JSON) and the
                   reference value.

The references are computed in float64 from the same f32 logits (MONAI's FocalLoss casts to float32
internally; that is MONAI's behaviour and is kept). L1DFL has no MONAI class: `l1dfl` below is a
PyTorch port of docs/method/losses.md §5 (histogram of g = |p - y| pooled over B x C x voxels, bins
of width eps centred at k*eps and clipped to [0, 1], left-closed, beta = N / density held constant,
weighted Dice with squared denominator and smoothing 1e-8, plus MONAI's softmax focal loss). The
logits are nudged so that no g lies within 1e-4 of a bin edge: the bin of an entry must not
depend on the last bit of a float32 softmax.
"""
import json
import os

import numpy as np
import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss
from monai.networks import one_hot

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
SPATIAL = (10, 8, 8)
EDGE_MARGIN = 1e-4


def bin_edges(eps):
    """float32 left edges of bins 1..K-1, exactly as petseg-losses computes them."""
    k_bins = int(round(1.0 / eps)) + 1
    return np.array([(2 * k - 1) * eps / 2 for k in range(1, k_bins)], dtype=np.float32), k_bins


def l1dfl(logits, labels, eps=0.1, gamma=2.0, smooth=1e-8):
    """PyTorch port of the L1-weighted Dice Focal loss (docs/method/losses.md §5)."""
    n_classes = logits.shape[1]
    p = torch.softmax(logits, 1)
    y = one_hot(labels, num_classes=n_classes).to(p.dtype)
    with torch.no_grad():  # beta is a constant: no gradient through the histogram
        g = (p - y).abs()
        edges, k_bins = bin_edges(eps)
        idx = torch.bucketize(g.float(), torch.from_numpy(edges), right=True)
        counts = torch.bincount(idx.flatten(), minlength=k_bins).double()
        widths = torch.full((k_bins,), eps, dtype=torch.float64)
        widths[0] = widths[-1] = eps / 2
        beta_k = g.numel() * widths / counts
        beta = beta_k[idx].to(p.dtype)
    dims = list(range(2, logits.dim()))
    num = 2 * (beta * p * y).sum(dims) + smooth
    den = (beta * (p * p + y * y)).sum(dims) + smooth
    wdice = 1 - (num / den).mean()
    focal = FocalLoss(use_softmax=True, gamma=gamma)(logits, y)
    return wdice + focal


def monai(cls, **kw):
    return lambda x, t: cls(**kw)(x, t)


def dice_softmax_focal(x, t):
    y = one_hot(t, num_classes=x.shape[1])
    return DiceLoss(softmax=True)(x, y) + FocalLoss(use_softmax=True, gamma=2.0)(x, y)


LOSSES = {
    "dice": ({"name": "dice"}, monai(DiceLoss, softmax=True, to_onehot_y=True)),
    "dice_squared_nobg": (
        {"name": "dice", "squared_pred": True, "include_background": False},
        monai(DiceLoss, softmax=True, to_onehot_y=True, squared_pred=True, include_background=False),
    ),
    "dice_batch": (
        {"name": "dice", "batch": True},
        monai(DiceLoss, softmax=True, to_onehot_y=True, batch=True),
    ),
    "focal_softmax": (
        {"name": "focal", "kind": "softmax", "gamma": 2.0},
        monai(FocalLoss, use_softmax=True, to_onehot_y=True, gamma=2.0),
    ),
    "focal_softmax_alpha": (
        {"name": "focal", "kind": "softmax", "gamma": 2.0, "alpha": 0.25},
        monai(FocalLoss, use_softmax=True, to_onehot_y=True, gamma=2.0, alpha=0.25),
    ),
    "focal_sigmoid_alpha": (
        {"name": "focal", "kind": "sigmoid", "gamma": 1.5, "alpha": 0.25},
        monai(FocalLoss, use_softmax=False, to_onehot_y=True, gamma=1.5, alpha=0.25),
    ),
    "dice_focal": ({"name": "dice_focal"}, monai(DiceFocalLoss, softmax=True, to_onehot_y=True)),
    "dice_focal_softmax": (
        {"name": "dice_focal", "focal": {"kind": "softmax"}},
        dice_softmax_focal,
    ),
    "dice_ce": ({"name": "dice_ce"}, monai(DiceCELoss, softmax=True, to_onehot_y=True)),
    "l1dfl": ({"name": "l1dfl"}, lambda x, t: l1dfl(x, t, eps=0.1, gamma=2.0)),
    "l1dfl_eps005": (
        {"name": "l1dfl", "epsilon": 0.05},
        lambda x, t: l1dfl(x, t, eps=0.05, gamma=2.0),
    ),
}


def make_labels(rng, batch, case):
    y = np.zeros((batch, 1) + SPATIAL, dtype=np.uint8)
    if case == "all_foreground":
        y[:] = 1
    elif case in ("sparse", "batch2"):
        # 3 of 640 voxels (0.47 %): an L-shaped speck
        y[0, 0, 4, 3, 3] = y[0, 0, 4, 3, 4] = y[0, 0, 5, 3, 3] = 1
        if batch == 2:
            y[1, 0, 2:5, 2:5, 1:4] = 1  # 27 voxels (4.2 %)
    return y


def min_edge_distance(logits):
    x = torch.from_numpy(logits)
    worst = np.inf
    for dtype in (torch.float32, torch.float64):
        p = torch.softmax(x.to(dtype), 1).numpy()
        for y in (0.0, 1.0):
            g = np.abs(p - y).astype(np.float64)
            for eps in (0.1, 0.05):
                edges, _ = bin_edges(eps)
                d = np.abs(g[..., None] - edges.astype(np.float64)).min(axis=-1)
                worst = min(worst, d.min())
    return worst


def make_logits(rng, labels):
    shape = (labels.shape[0], 2) + SPATIAL
    x = rng.normal(0.0, 1.5, size=shape).astype(np.float32)
    x[:, 1:2] += np.where(labels == 1, 1.0, -1.0).astype(np.float32)
    # nudge entries whose |p - y| sits close to a bin edge (see module docs)
    for _ in range(100):
        p1 = torch.softmax(torch.from_numpy(x).double(), 1).numpy()[:, 1]
        bad = np.zeros(p1.shape, dtype=bool)
        for eps in (0.1, 0.05):
            edges, _ = bin_edges(eps)
            for g in (p1, 1 - p1):
                bad |= np.abs(g[..., None] - edges.astype(np.float64)).min(axis=-1) < 2 * EDGE_MARGIN
        if not bad.any():
            break
        x[:, 1][bad] += np.float32(0.01)
    assert min_edge_distance(x) > EDGE_MARGIN, "could not move the logits away from the bin edges"
    return x


def main():
    rng = np.random.default_rng(20261128)
    os.makedirs(OUT, exist_ok=True)
    cases = {"sparse": 1, "empty": 1, "all_foreground": 1, "batch2": 2}
    meta = {"cases": {}}
    for case, batch in cases.items():
        labels = make_labels(rng, batch, case)
        logits = make_logits(rng, labels)
        arrays = {"logits": logits, "labels": labels}
        entry = {}
        for name, (config, fn) in LOSSES.items():
            x = torch.from_numpy(logits).double().requires_grad_(True)
            t = torch.from_numpy(labels).double()
            value = fn(x, t)
            value.backward()
            arrays[f"grad_{name}"] = x.grad.numpy().astype(np.float32)
            entry[name] = {"config": config, "value": float(value.item())}
        np.savez(os.path.join(OUT, f"case_{case}.npz"), **arrays)
        meta["cases"][case] = {"shape": list(logits.shape), "losses": entry}
    with open(os.path.join(OUT, "fixtures.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(f"wrote {len(cases)} cases x {len(LOSSES)} losses to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
