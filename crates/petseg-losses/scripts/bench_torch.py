#!/usr/bin/env python3
"""PyTorch/MONAI peer of benches/losses.rs: forward+backward time of each loss on [2, 2, S^3].

usage: python3 scripts/bench_torch.py [--size 96] [--reps 7] [--threads 2]
Prints a table to stderr and, as the last stdout line, JSON {loss: median ms} that the Rust
bench reads. Same input construction as the Rust bench (sparse ~0.5 % foreground cubes, logits
normal(0, 1.5) shifted by +-1 on channel 1); the random numbers differ, which does not matter
for timing. L1DFL is the PyTorch port from make_fixtures.py.
"""
import argparse
import json
import os
import sys
import time

import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import l1dfl  # noqa: E402


def inputs(size, seed=7):
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(2, 1, size, size, size)
    side = round(size * 0.17)
    for i in range(2):
        at = size // 4 + i * size // 3
        labels[i, 0, at:at + side, at:at + side, at:at + side] = 1
    logits = torch.randn(2, 2, size, size, size, generator=g) * 1.5
    logits[:, 1:2] += torch.where(labels == 1, 1.0, -1.0)
    return logits, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    logits, labels = inputs(a.size)
    losses = {
        "dice": DiceLoss(softmax=True, to_onehot_y=True),
        "dice_focal": DiceFocalLoss(softmax=True, to_onehot_y=True),
        "l1dfl": lambda x, t: l1dfl(x, t, eps=0.1, gamma=2.0),
        "dice_ce": DiceCELoss(softmax=True, to_onehot_y=True),
        "focal": FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2.0),
    }
    result = {}
    for name, fn in losses.items():
        times = []
        for _ in range(a.reps + 1):
            x = logits.clone().requires_grad_(True)
            t0 = time.perf_counter()
            fn(x, labels).backward()
            times.append((time.perf_counter() - t0) * 1e3)
        times = sorted(times[1:])
        result[name] = times[len(times) // 2]
        print(f"{name:<12} {result[name]:8.1f} ms", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
