#!/usr/bin/env python3
"""Regenerate tests/fixtures/torch_ops.safetensors: PyTorch reference values for
petseg-ops3d (outputs and input/weight/bias gradients of torch.nn.functional ops).

Every case stores `<case>.x` (and `.w`, `.b` where used), a random upstream
gradient `<case>.gy`, the output `<case>.y`, and the gradients of
sum(y * gy): `<case>.gx`, `<case>.gw`, `<case>.gb`, `<case>.ggamma`, `<case>.gbeta`.
The configurations (mirrored in tests/torch_fixtures.rs) cover what MONAI's
SegResNet and AttentionUnet use: conv k3 s1 p1 (also at 16 and 32 channels), k3 s2 p1 (also
16 -> 32 channels), k1, convT k3 s2 p1 op1, trilinear x2 align_corners=False, group norm (also
GroupNorm(8) on 16 channels), instance norm (with and without affine weight/bias).
New cases are appended at the end so that the random draws, hence the stored values, of the
existing cases stay the same.

usage: python3 scripts/make_fixtures.py   (needs torch and numpy; no safetensors package)
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(20261128)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "torch_ops.safetensors")
tensors = {}


def r(*shape):
    return torch.randn(*shape, dtype=torch.float64).float()


def case(name, fn, inputs):
    """inputs: dict of short name -> tensor; fn(**inputs) -> output."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y = fn(**leaves)
    gy = r(*y.shape)
    (y * gy).sum().backward()
    for k, v in inputs.items():
        tensors[f"{name}.{k}"] = v
        tensors[f"{name}.g{k}"] = leaves[k].grad
    tensors[f"{name}.gy"] = gy
    tensors[f"{name}.y"] = y.detach()


# convolutions (SegResNet: k3 s1 p1, k3 s2 p1, k1 with bias; plus groups/dilation)
case("conv_k3s1p1", lambda x, w, b: F.conv3d(x, w, b, stride=1, padding=1),
     dict(x=r(1, 3, 6, 7, 5), w=r(4, 3, 3, 3, 3) * 0.2, b=r(4)))
case("conv_k3s2p1", lambda x, w: F.conv3d(x, w, None, stride=2, padding=1),
     dict(x=r(2, 2, 7, 6, 8), w=r(3, 2, 3, 3, 3) * 0.2))
case("conv_k1", lambda x, w, b: F.conv3d(x, w, b),
     dict(x=r(1, 4, 5, 6, 7), w=r(2, 4, 1, 1, 1) * 0.5, b=r(2)))
case("conv_grouped_dilated", lambda x, w: F.conv3d(x, w, None, stride=(1, 2, 1), padding=2, dilation=2, groups=2),
     dict(x=r(1, 4, 7, 7, 7), w=r(4, 2, 3, 3, 3) * 0.2))
# transposed convolutions (AttentionUnet UpConv: k3 s2 p1 op1)
case("convt_k3s2p1op1", lambda x, w, b: F.conv_transpose3d(x, w, b, stride=2, padding=1, output_padding=1),
     dict(x=r(1, 4, 3, 4, 5), w=r(4, 2, 3, 3, 3) * 0.2, b=r(2)))
case("convt_k2s2", lambda x, w: F.conv_transpose3d(x, w, None, stride=2),
     dict(x=r(1, 3, 4, 4, 4), w=r(3, 2, 2, 2, 2) * 0.3))
# pooling
case("maxpool_k2s2", lambda x: F.max_pool3d(x, 2, 2), dict(x=r(1, 2, 6, 7, 8)))
case("maxpool_k3s2p1", lambda x: F.max_pool3d(x, 3, 2, 1), dict(x=r(1, 2, 6, 7, 8)))
case("avgpool_k2s2", lambda x: F.avg_pool3d(x, 2, 2), dict(x=r(1, 2, 6, 7, 8)))
case("avgpool_k3s2p1", lambda x: F.avg_pool3d(x, 3, 2, 1), dict(x=r(1, 2, 6, 7, 8)))
# up-sampling (SegResNet: trilinear x2, align_corners=False)
xu = r(1, 2, 5, 6, 7)
case("tri_scale2", lambda x: F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False), dict(x=xu))
case("tri_scale2_ac", lambda x: F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=True), dict(x=xu))
case("tri_size", lambda x: F.interpolate(x, size=(7, 9, 4), mode="trilinear", align_corners=False), dict(x=xu))
case("tri_size_ac", lambda x: F.interpolate(x, size=(7, 9, 4), mode="trilinear", align_corners=True), dict(x=xu))
case("tri_scale15", lambda x: F.interpolate(x, scale_factor=(1.5, 1.7, 0.6), mode="trilinear", align_corners=False),
     dict(x=xu))
case("nearest_scale2", lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), dict(x=xu))
case("nearest_size", lambda x: F.interpolate(x, size=(7, 9, 4), mode="nearest"), dict(x=xu))
case("nearest_scale15", lambda x: F.interpolate(x, scale_factor=(1.5, 1.7, 0.6), mode="nearest"), dict(x=xu))
# norms (SegResNet: GroupNorm(8), see groupnorm_c16g8 below; instance norm as in MONAI's default
# affine=False -- note MONAI's AttentionUnet itself uses BatchNorm, not InstanceNorm)
case("groupnorm", lambda x, gamma, beta: F.group_norm(x, 4, gamma, beta, eps=1e-5),
     dict(x=r(2, 8, 4, 5, 6) * 2 + 1, gamma=r(8), beta=r(8)))
case("instancenorm", lambda x: F.instance_norm(x, eps=1e-5), dict(x=r(1, 4, 5, 6, 7) * 3 - 1))
# 32 -> 32 channels: the Winograd route of the forward and of the input gradient
# (appended last so that the draws of the cases above stay the same)
case("conv_k3s1p1_c32", lambda x, w, b: F.conv3d(x, w, b, stride=1, padding=1),
     dict(x=r(1, 32, 3, 4, 5), w=r(32, 32, 3, 3, 3) * 0.05, b=r(32)))
# SegResNet at init_filters=16 (appended after the 32-channel case, same reason):
# the 16 -> 16 k3 s1 p1 conv with bias, the 16 -> 32 k3 s2 p1 down-sampling conv
# without bias (≥ 32 output channels: the channel-vector route), MONAI's literal
# GroupNorm(8) on 16 channels, and instance norm with affine weight and bias.
case("conv_k3s1p1_c16", lambda x, w, b: F.conv3d(x, w, b, stride=1, padding=1),
     dict(x=r(1, 16, 5, 6, 7), w=r(16, 16, 3, 3, 3) * 0.07, b=r(16)))
case("conv_k3s2p1_c16to32", lambda x, w: F.conv3d(x, w, None, stride=2, padding=1),
     dict(x=r(1, 16, 7, 6, 9), w=r(32, 16, 3, 3, 3) * 0.07))
case("groupnorm_c16g8", lambda x, gamma, beta: F.group_norm(x, 8, gamma, beta, eps=1e-5),
     dict(x=r(2, 16, 3, 5, 7) * 2 + 1, gamma=r(16), beta=r(16)))
case("instancenorm_affine",
     lambda x, gamma, beta: F.instance_norm(x, weight=gamma, bias=beta, eps=1e-5),
     dict(x=r(2, 4, 5, 6, 7) * 3 - 1, gamma=r(4), beta=r(4)))


def save_safetensors(path, ts):
    header, blobs, off = {}, [], 0
    for k in sorted(ts):
        a = np.ascontiguousarray(ts[k].detach().numpy().astype("<f4"))
        b = a.tobytes()
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"generator": "make_fixtures.py", "torch": torch.__version__}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


save_safetensors(OUT, tensors)
print(f"wrote {len(tensors)} tensors to {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")
