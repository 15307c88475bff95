"""MONAI reference for the `petseg demo` recipe: does a MONAI SegResNet learn
the synthetic cohort in the demo's step budget?

Trains MONAI's SegResNet (init 8, blocks_down 1-2-2, blocks_up 1-1) with
DiceCELoss and AdamW on the fold-0 training cases of a demo's data folder
(patches 32³ at 4 mm, batch 4, 4:1 lesion-centred crops, no affine), then
prints DSC and mean foreground probabilities on the validation cases and on
three training cases (sliding window roi 64³, overlap 0.25, gaussian).

Usage (after `petseg demo --out DIR` has written DIR/data):
    python3 crates/petseg-train/scripts/demo_monai_reference.py DIR/data [STEPS] [LR] [THREADS]

Needs numpy, nibabel, torch and monai (not installed in CI; a diagnostic, not a test).
"""
import json
import sys
import time

import nibabel as nib
import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import SegResNet

data = sys.argv[1].rstrip("/") + "/"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
lr = float(sys.argv[3]) if len(sys.argv) > 3 else 3e-3
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
torch.manual_seed(0)
rng = np.random.default_rng(0)
manifest = json.load(open(data + "manifest.json"))
fold = manifest["split"]["folds"][0]
PATCH = 32


def load(case):
    ct = nib.load(f"{data}imagesTr/{case}_0000.nii.gz").get_fdata().astype(np.float32)
    pet = nib.load(f"{data}imagesTr/{case}_0001.nii.gz").get_fdata().astype(np.float32)
    lab = (nib.load(f"{data}labelsTr/{case}.nii.gz").get_fdata() > 0).astype(np.int64)
    ct = (np.clip(ct, -154, 325) + 154) / (325 + 154)
    return np.stack([ct, pet]), lab


def crop(img, lab):
    fg = np.argwhere(lab > 0)
    if len(fg) and rng.random() < 0.8:
        c = fg[rng.integers(len(fg))]
    else:
        c = np.array([rng.integers(s) for s in lab.shape])
    s = [int(min(max(c[a] - PATCH // 2, 0), lab.shape[a] - PATCH)) for a in range(3)]
    sl = tuple(slice(s[a], s[a] + PATCH) for a in range(3))
    return img[(slice(None),) + sl], lab[sl]


train = [load(c) for c in fold["train"]]
val = [load(c) for c in fold["val"]]
net = SegResNet(spatial_dims=3, init_filters=8, in_channels=2, out_channels=2,
                blocks_down=(1, 2, 2), blocks_up=(1, 1))
opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-5)
loss_fn = DiceCELoss(softmax=True, to_onehot_y=True)
t0 = time.time()
for step in range(steps):
    batch = [crop(*train[rng.integers(len(train))]) for _ in range(4)]
    x = torch.from_numpy(np.stack([b[0] for b in batch]))
    y = torch.from_numpy(np.stack([b[1] for b in batch]))[:, None]
    opt.zero_grad()
    loss = loss_fn(net(x), y)
    loss.backward()
    opt.step()
    if (step + 1) % 20 == 0:
        print(f"step {step + 1} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
net.eval()
with torch.no_grad():
    for name, (img, lab) in [("val", v) for v in val] + [("train", t) for t in train[:3]]:
        logits = sliding_window_inference(torch.from_numpy(img)[None], (64, 64, 64), 1, net,
                                          overlap=0.25, mode="gaussian")
        p = torch.softmax(logits, 1)[0, 1].numpy()
        pred, gt = p > 0.5, lab > 0
        dsc = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
        print(f"{name}: DSC {dsc:.3f}  p(fg|lesion) {p[gt].mean():.3f}  p(fg|bg) {p[~gt].mean():.3f}"
              f"  predicted {pred.sum()} voxels, truth {gt.sum()}")
