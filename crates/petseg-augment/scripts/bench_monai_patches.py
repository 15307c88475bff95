"""MONAI peer of benches/patches.rs: RandCropByPosNegLabeld (4:1) + RandAffined
(p=0.5, rotate (0,0,pi/15), scale 0.1, translate 10) on a 192x192x320 two-channel
case, patches per second at 96^3 and 128^3. Needs torch and monai."""
import time

import numpy as np
import torch
from monai.transforms import Compose, RandAffined, RandCropByPosNegLabeld

torch.set_num_threads(2)
shape = (192, 192, 320)
i, j, k = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
ct = (((i + 2 * j + 3 * k) % 97) / 97.0).astype(np.float32)
pet = (1.0 + ((i * j + k) % 13)).astype(np.float32)
label = np.zeros(shape, np.float32)
label[90:100, 80:95, 150:160] = 1
data = {"image": np.stack([ct, pet]), "label": label[None]}
for p in (96, 128):
    t = Compose([
        RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=(p, p, p),
                               pos=4, neg=1, num_samples=1, image_key="image", image_threshold=0),
        RandAffined(keys=["image", "label"], mode=("bilinear", "nearest"), prob=0.5,
                    spatial_size=(p, p, p), rotate_range=(0, 0, np.pi / 15),
                    scale_range=(0.1, 0.1, 0.1), translate_range=(10, 10, 10)),
    ])
    t.set_random_state(0)
    t(data)
    n = 16
    t0 = time.perf_counter()
    for _ in range(n):
        t(data)
    dt = time.perf_counter() - t0
    print(f"MONAI patch {p}^3: {n / dt:.2f} patches/s ({1e3 * dt / n:.1f} ms/patch)")
