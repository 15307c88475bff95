#!/usr/bin/env python3
"""The MONAI/PyTorch peer of `cargo bench -p petseg-models --bench models`.

    python3 crates/petseg-models/scripts/bench_monai.py [segresnet|attention_unet|all] [size] [steps]

Same protocol as benches/models.rs: study configurations (docs/method/networks.md §2–3), input
[1, 2, S³] ~ N(0, 1), labels x[:, 0] > 0, one warm-up eval forward, `steps` timed eval forwards
(torch.no_grad), then steps + 1 training steps (train-mode forward, cross-entropy, backward,
AdamW lr 2e-4 / wd 1e-5), the first untimed. Without a network argument (or with "all") each
network runs in its own process so that peak RSS (VmHWM) is per network. Threads: torch's
default (all cores) unless OMP_NUM_THREADS / torch.set_num_threads say otherwise.
"""
import subprocess
import sys
import time

import torch
from monai.networks.nets import AttentionUnet, SegResNet


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(name):
    if name == "segresnet":
        return SegResNet(spatial_dims=3, init_filters=16, in_channels=2, out_channels=2,
                         blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))
    if name == "attention_unet":
        return AttentionUnet(spatial_dims=3, in_channels=2, out_channels=2,
                             channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2))
    raise SystemExit(f"unknown network {name!r}")


def run(name, size, steps):
    torch.manual_seed(0)
    net = build(name)
    x = torch.randn(1, 2, size, size, size)
    labels = (x[:, 0] > 0).long()
    net.eval()
    with torch.no_grad():
        net(x)
        t = time.perf_counter()
        for _ in range(steps):
            net(x)
        fwd = (time.perf_counter() - t) / steps
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4, weight_decay=1e-5)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        last = step()
    train = (time.perf_counter() - t) / steps
    print(f"{name:<15} [1,2,{size}³] threads={torch.get_num_threads()} forward {fwd:.2f} s  "
          f"train step {train:.2f} s  peak RSS {peak_rss_mb():.0f} MB  (loss {last:.4f})  "
          f"[MONAI {__import__('monai').__version__}, torch {torch.__version__}]")


def main():
    args = sys.argv[1:]
    size = int(args[1]) if len(args) > 1 else 96
    steps = int(args[2]) if len(args) > 2 else 2
    if args and args[0] != "all":
        run(args[0], size, steps)
    else:
        for name in ("segresnet", "attention_unet"):
            subprocess.run([sys.executable, __file__, name, str(size), str(steps)], check=True)


if __name__ == "__main__":
    main()
