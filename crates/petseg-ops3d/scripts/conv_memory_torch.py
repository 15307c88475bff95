#!/usr/bin/env python3
"""PyTorch CPU peer of examples/conv_memory.rs: the same conv3d forward+backward
(3×3×3 kernel, padding 1), measured the same way, so that the two ratios can be
put side by side.

The peak RSS (VmHWM of /proc/self/status) is reset through /proc/self/clear_refs
once the inputs exist; the rise of the peak over the RSS at that moment is set
against the bytes of output, upstream gradient, input gradient and weight
gradient, and the last figure printed is (inputs + rise) / (inputs + needed),
the issue's "~1.5× the size of its input, output and gradients". Linux only.

usage: python3 scripts/conv_memory_torch.py [C] [O] [SIZE] [STRIDE]   (defaults 16 16 96 1;
THREADS env, default 2)
"""
import os
import sys

import torch
import torch.nn.functional as F


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"{field} not in /proc/self/status")


def main():
    args = [int(a) for a in sys.argv[1:]]
    c, o, s, stride = (args + [16, 16, 96, 1][len(args):])[:4]
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    x = torch.randn(1, c, s, s, s, requires_grad=True)
    w = (torch.randn(o, c, 3, 3, 3) * 0.05).requires_grad_()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_mb("VmRSS:")
    y = F.conv3d(x, w, stride=stride, padding=1)
    y.sum().backward()
    rise = status_mb("VmHWM:") - base
    need = 4 * (2 * y.numel() + x.grad.numel() + w.grad.numel()) / 1e6
    inputs = 4 * (x.numel() + w.numel()) / 1e6
    print(f"torch conv3d [1,{c},{s}³]→{o} k3 s{stride} p1 fwd+bwd: peak RSS rise {rise:.1f} MB "
          f"over the baseline with inputs ({inputs:.1f} MB) allocated; output + upstream grad + "
          f"input grad + weight grad = {need:.1f} MB; rise/needed = {rise / need:.2f}; "
          f"(inputs + rise)/(inputs + needed) = {(inputs + rise) / (inputs + need):.2f}")


if __name__ == "__main__":
    main()
