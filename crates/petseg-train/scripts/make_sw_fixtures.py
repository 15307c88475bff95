"""Regenerates tests/fixtures/sliding_window/: MONAI sliding_window_inference
outputs for a tiny deterministic predictor that tests/sliding_window.rs
reproduces exactly.

The predictor maps a window batch x [n, 2, r0, r1, r2] to [n, 2, r0, r1, r2]:
    out[n, k] = sigmoid(sum_c W[k, c] x[n, c] + B[k] + sum_c M[k, c] mean(x[n, c]))
computed in float64 and returned as float32. The window-mean term makes the
output of a voxel depend on which window it is seen through, so the blending
weights and window placement both matter.

Run: python3 crates/petseg-train/scripts/make_sw_fixtures.py   (torch + monai)
"""
import json
import os

import numpy as np
import torch
from monai.inferers import sliding_window_inference

W = np.array([[1.5, -0.75], [-0.5, 2.0]])
B = np.array([0.25, -0.5])
M = np.array([[3.0, -2.0], [-1.0, 4.0]])


def predictor(x):
    x64 = x.double()
    means = x64.mean(dim=(2, 3, 4))  # [n, 2]
    lin = torch.einsum("kc,ncijl->nkijl", torch.tensor(W), x64)
    bias = torch.tensor(B)[None, :] + means @ torch.tensor(M).T  # [n, 2]
    return torch.sigmoid(lin + bias[:, :, None, None, None]).float()


out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "sliding_window")
os.makedirs(out_dir, exist_ok=True)
rng = np.random.default_rng(20261128)
cases = []
big = rng.normal(size=(1, 2, 16, 18, 13)).astype(np.float32)
small = rng.normal(size=(1, 2, 5, 9, 6)).astype(np.float32)
inputs = {"big": big, "small": small}
for name, arr in inputs.items():
    arr.tofile(os.path.join(out_dir, f"input_{name}.f32"))
runs = [
    ("big", [8, 8, 8], 0.25, "constant", 1),
    ("big", [8, 8, 8], 0.25, "gaussian", 2),
    ("big", [8, 10, 6], 0.5, "constant", 3),
    ("big", [8, 8, 8], 0.5, "gaussian", 1),
    ("small", [8, 8, 8], 0.25, "gaussian", 1),
    ("small", [8, 8, 8], 0.5, "constant", 2),
]
for idx, (name, roi, overlap, mode, swb) in enumerate(runs):
    x = torch.from_numpy(inputs[name])
    with torch.no_grad():
        y = sliding_window_inference(x, roi, swb, predictor, overlap=overlap, mode=mode,
                                     sigma_scale=0.125, padding_mode="constant", cval=0.0)
    fname = f"output_{idx}.f32"
    y.numpy().astype(np.float32).tofile(os.path.join(out_dir, fname))
    cases.append({"input": f"input_{name}.f32", "shape": list(inputs[name].shape[2:]), "roi": roi,
                  "overlap": overlap, "mode": mode, "sw_batch_size": swb, "output": fname})
meta = {"W": W.tolist(), "B": B.tolist(), "M": M.tolist(), "channels": 2, "cases": cases,
        "monai": __import__("monai").__version__, "torch": torch.__version__}
with open(os.path.join(out_dir, "cases.json"), "w") as f:
    json.dump(meta, f, indent=1)
print(f"wrote {len(cases)} cases to {out_dir}")
