#!/usr/bin/env python3
"""The MONAI/PyTorch peer of `cargo bench -p petseg-train --bench pipeline`.

    python3 crates/petseg-train/scripts/bench_monai_pipeline.py             # both, study sizes
    python3 crates/petseg-train/scripts/bench_monai_pipeline.py step 96 3
    python3 crates/petseg-train/scripts/bench_monai_pipeline.py infer 192,192,320 96

Same protocol as benches/pipeline.rs: the study's SegResNet (init_filters 16, blocks_down
(1, 2, 2, 4), blocks_up (1, 1, 1)); `step` = train-mode forward on [1, 2, S^3], DiceCELoss
(to_onehot_y, softmax), backward, gradient clipping at 12, AdamW lr 2e-4 / wd 1e-5 (one
untimed step, then `steps` timed); `infer` = eval mode, torch.no_grad, MONAI
sliding_window_inference (roi R^3, overlap 0.25, gaussian, sw_batch_size 1) then softmax.
Inputs N(0, 1), labels x[:, 0] > 1. Without arguments each benchmark runs in its own process
so that its peak RSS (VmHWM) is its own. Threads: torch's default unless OMP_NUM_THREADS says.
"""
import subprocess
import sys
import time

import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import SegResNet


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def study_segresnet():
    torch.manual_seed(0)
    return SegResNet(spatial_dims=3, init_filters=16, in_channels=2, out_channels=2,
                     blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))


def step(size, steps):
    net = study_segresnet().train()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.randn(1, 2, size, size, size)
    y = (x[:, :1] > 1).float()

    def one():
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        opt.step()
        return loss.item()

    one()
    t = time.perf_counter()
    for _ in range(steps):
        last = one()
    secs = (time.perf_counter() - t) / steps
    print(f"step  MONAI segresnet [1,2,{size}^3] DiceCE: {secs:.3f} s/step  peak RSS "
          f"{peak_rss_mb():.0f} MB  (threads {torch.get_num_threads()}, last loss {last:.4f})")


def infer(shape, roi):
    net = study_segresnet().eval()
    x = torch.randn(1, 2, *shape)
    t = time.perf_counter()
    with torch.no_grad():
        logits = sliding_window_inference(x, (roi,) * 3, 1, net, overlap=0.25, mode="gaussian")
        p = torch.softmax(logits, 1)
    secs = time.perf_counter() - t
    print(f"infer MONAI segresnet [1,2,{','.join(map(str, shape))}] roi {roi}^3 overlap 0.25 "
          f"gaussian: {secs:.1f} s  peak RSS {peak_rss_mb():.0f} MB  "
          f"(threads {torch.get_num_threads()}, mean p(fg) {p[:, 1].mean().item():.4f})")


def main(argv):
    if not argv:
        for sub in ("step", "infer"):
            subprocess.run([sys.executable, __file__, sub], check=True)
    elif argv[0] == "step":
        step(int(argv[1]) if len(argv) > 1 else 96, int(argv[2]) if len(argv) > 2 else 3)
    elif argv[0] == "infer":
        shape = tuple(int(v) for v in (argv[1] if len(argv) > 1 else "192,192,320").split(","))
        infer(shape, int(argv[2]) if len(argv) > 2 else 96)
    else:
        raise SystemExit(f"unknown benchmark {argv[0]!r} (step or infer)")


if __name__ == "__main__":
    main(sys.argv[1:])
