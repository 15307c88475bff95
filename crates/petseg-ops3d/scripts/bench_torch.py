#!/usr/bin/env python3
"""PyTorch CPU peer of benches/ops.rs: the same cases, forward and forward+backward
(best of 2 after one warm-up), 2 threads by default.

usage: python3 scripts/bench_torch.py [SIZE...] [WORD...]   (default 96 128; THREADS env, default 2;
a WORD keeps only the cases whose name contains it, e.g. pool or norm)
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
REPS = 2


def conv_case(name, n, o, k, s, p):
    out = (n[2] + 2 * p - k) // s + 1
    flops = 2.0 * o * n[1] * k ** 3 * out ** 3
    return (f"{name} conv3d {n[1]}→{o} k{k} s{s}", [n, [o, n[1], k, k, k]], flops,
            lambda x, w: F.conv3d(x, w, None, stride=s, padding=p))


def cases(s):
    h = s // 2
    return [
        conv_case(f"[1,2,{s}³]", [1, 2, s, s, s], 16, 3, 1, 1),
        conv_case(f"[1,16,{s}³]", [1, 16, s, s, s], 16, 3, 1, 1),
        conv_case(f"[1,16,{s}³]", [1, 16, s, s, s], 32, 3, 2, 1),
        conv_case(f"[1,32,{h}³]", [1, 32, h, h, h], 32, 3, 1, 1),
        conv_case(f"[1,32,{h}³]", [1, 32, h, h, h], 16, 1, 1, 0),
        (f"[1,32,{h}³] conv_transpose3d 32→16 k3 s2 p1 op1", [[1, 32, h, h, h], [32, 16, 3, 3, 3]],
         2.0 * 32 * 16 * 27 * h ** 3,
         lambda x, w: F.conv_transpose3d(x, w, None, stride=2, padding=1, output_padding=1)),
        (f"[1,16,{h}³] trilinear x2", [[1, 16, h, h, h]], 0.0,
         lambda x: F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)),
        (f"[1,16,{s}³] group_norm(8)", [[1, 16, s, s, s], [16], [16]], 0.0,
         lambda x, g, b: F.group_norm(x, 8, g, b, 1e-5)),
        (f"[1,16,{s}³] group_norm_relu(8)", [[1, 16, s, s, s], [16], [16]], 0.0,
         lambda x, g, b: F.relu(F.group_norm(x, 8, g, b, 1e-5))),
        (f"[1,16,{s}³] instance_norm", [[1, 16, s, s, s]], 0.0, lambda x: F.instance_norm(x, eps=1e-5)),
        (f"[1,16,{s}³] instance_norm_prelu", [[1, 16, s, s, s], [1]], 0.0,
         lambda x, w: F.prelu(F.instance_norm(x, eps=1e-5), w)),
        (f"[1,16,{s}³] max_pool3d k2 s2", [[1, 16, s, s, s]], 0.0, lambda x: F.max_pool3d(x, 2, 2)),
    ]


def bench(shapes, fn):
    ins = [(torch.randn(*s) * 0.1).requires_grad_(True) for s in shapes]
    fwd = both = float("inf")
    for _ in range(REPS + 1):
        for t in ins:
            t.grad = None
        t0 = time.perf_counter()
        y = fn(*ins)
        t1 = time.perf_counter()
        y.sum().backward()
        t2 = time.perf_counter()
        fwd, both = min(fwd, t1 - t0), min(both, t2 - t0)
    return fwd, both


def main():
    sizes = [int(a) for a in sys.argv[1:] if a.isdigit()] or [96, 128]
    # Any other word keeps only the cases whose name contains it (e.g. "pool", "norm").
    words = [a for a in sys.argv[1:] if not a.isdigit()]
    print(f"torch {torch.__version__}, threads: {torch.get_num_threads()}")
    print("| case | fwd s | fwd GFLOP/s | fwd+bwd s | fwd+bwd GFLOP/s |")
    print("|---|---|---|---|---|")
    for s in sizes:
        for name, shapes, flops, fn in cases(s):
            if words and not any(w in name for w in words):
                continue
            f, b = bench(shapes, fn)
            gf = lambda fl, t: f"{fl / t / 1e9:.1f}" if fl > 0 else "–"
            print(f"| {name} | {f:.3f} | {gf(flops, f)} | {b:.3f} | {gf(3 * flops, b)} |", flush=True)


if __name__ == "__main__":
    main()
