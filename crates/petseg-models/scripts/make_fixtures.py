#!/usr/bin/env python3
"""Regenerate the MONAI reference fixtures of petseg-models.

Needs torch and monai (tested with torch 2.15, MONAI 1.6.1); no safetensors package
(the format is written by hand below). Run from anywhere:

    python3 crates/petseg-models/scripts/make_fixtures.py

Writes into crates/petseg-models/tests/fixtures/:

* monai_keys.json: MONAI's state_dict key -> shape and parameter count for the study's
  configurations (full size; nothing is allocated on our side to check them).
* segresnet_small.safetensors, attention_unet_small.safetensors: small-configuration
  MONAI weights (state_dict, incl. BatchNorm num_batches_tracked) with non-trivial
  norm parameters and running statistics.
* attention_unet_small_ddp.pt: the same AttentionUnet weights saved as
  torch.save({"state_dict": {"module." + key: value}}) (DDP prefix, wrapped checkpoint).
* reference.safetensors: the shared input, each model's eval-mode output, and for one
  train-mode step the loss, chosen gradients and updated BatchNorm running statistics.

The train-mode loss is computed identically in tests/parity.rs:
    p = softmax(y, dim=1)[:, 1];  m = (x[:, 0] > 0) as float;  loss = mean(p * m)
"""
import json
import os
import struct
from collections import OrderedDict

import numpy as np
import torch
from monai.networks.nets import AttentionUnet, SegResNet

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def save_safetensors(tensors, path):
    """Minimal safetensors writer (little-endian, keys sorted, 8-byte aligned header)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.numpy().tobytes()
        header[name] = {
            "dtype": DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)


def key_shapes(model):
    sd = model.state_dict()
    return {
        "param_count": sum(p.numel() for p in model.parameters()),
        "keys": {k: list(v.shape) for k, v in sd.items()},
    }


def randomize_norms(model, gen):
    """Give every norm/PReLU layer non-default values so that eval parity tests them."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.BatchNorm3d, torch.nn.GroupNorm)):
                mod.weight.copy_(0.5 + torch.rand(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=gen))
            if isinstance(mod, torch.nn.BatchNorm3d):
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=gen))
                mod.num_batches_tracked.fill_(7)
            if isinstance(mod, torch.nn.PReLU):
                mod.weight.copy_(0.1 + 0.3 * torch.rand(mod.weight.shape, generator=gen))


def loss_fn(y, x):
    p = torch.softmax(y, dim=1)[:, 1]
    m = (x[:, 0] > 0).float()
    return (p * m).mean()


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)

    # 1. Key/shape lists of the study's full-size configurations.
    full = {
        "segresnet_study": key_shapes(
            SegResNet(spatial_dims=3, init_filters=16, in_channels=2, out_channels=2,
                      blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))),
        "segresnet_study_deconv": key_shapes(
            SegResNet(spatial_dims=3, init_filters=16, in_channels=2, out_channels=2,
                      blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), upsample_mode="deconv")),
        "attention_unet_study": key_shapes(
            AttentionUnet(spatial_dims=3, in_channels=2, out_channels=2,
                          channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2))),
        "attention_unet_512": key_shapes(
            AttentionUnet(spatial_dims=3, in_channels=2, out_channels=2,
                          channels=(16, 32, 64, 128, 256, 512), strides=(2, 2, 2, 2, 2))),
    }
    with open(os.path.join(OUT, "monai_keys.json"), "w") as f:
        json.dump(full, f, indent=1, sort_keys=True)
        f.write("\n")

    # 2. Small models with fixed seeds.
    gen = torch.Generator().manual_seed(1234)
    torch.manual_seed(42)
    seg = SegResNet(spatial_dims=3, init_filters=4, in_channels=2, out_channels=2,
                    blocks_down=(1, 2, 1), blocks_up=(1, 1), norm=("GROUP", {"num_groups": 2}))
    att = AttentionUnet(spatial_dims=3, in_channels=2, out_channels=2,
                        channels=(4, 8, 16), strides=(2, 2))
    randomize_norms(seg, gen)
    randomize_norms(att, gen)
    x = torch.randn((1, 2, 16, 16, 16), generator=gen)

    ref = {"input": x}
    for name, model in (("segresnet", seg), ("attention_unet", att)):
        save_safetensors(OrderedDict(model.state_dict()),
                         os.path.join(OUT, f"{name}_small.safetensors"))
        model.eval()
        with torch.no_grad():
            ref[f"{name}.eval_output"] = model(x)
        # one train-mode step (forward + backward, no optimizer)
        model.train()
        model.zero_grad()
        y = model(x)
        loss = loss_fn(y, x)
        loss.backward()
        ref[f"{name}.train_loss"] = loss.detach().reshape(1)
        for pname, p in model.named_parameters():
            if pname in GRADS[name]:
                ref[f"{name}.grad.{pname}"] = p.grad
        for bname, b in model.named_buffers():
            if bname in BUFFERS.get(name, ()):
                ref[f"{name}.after_train.{bname}"] = b

    # The .pt checkpoint holds the weights as saved before the train step (read back from
    # the safetensors file, which also checks the hand-written safetensors writer).
    att_before = load_small("attention_unet")
    torch.save({"state_dict": OrderedDict(("module." + k, v) for k, v in att_before.items()),
                "epoch": 3},
               os.path.join(OUT, "attention_unet_small_ddp.pt"))
    save_safetensors(ref, os.path.join(OUT, "reference.safetensors"))
    for fn in sorted(os.listdir(OUT)):
        print(f"{fn}: {os.path.getsize(os.path.join(OUT, fn))} bytes")


def load_small(name):
    """Read back one of our hand-written safetensors files (round-trip check of the writer)."""
    path = os.path.join(OUT, f"{name}_small.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = OrderedDict()
    for k, info in header.items():
        a, b = info["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[info["dtype"]]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).copy()).reshape(info["shape"])
    return out


GRADS = {
    "segresnet": {
        "convInit.conv.weight",
        "down_layers.1.1.norm1.weight",
        "up_samples.0.0.conv.weight",
        "conv_final.0.weight",
        "conv_final.2.conv.weight",
        "conv_final.2.conv.bias",
    },
    "attention_unet": {
        "model.0.conv.0.conv.weight",
        "model.0.conv.0.adn.N.weight",
        "model.1.attention.psi.0.conv.weight",
        "model.1.submodule.1.upconv.up.conv.weight",
        "model.1.merge.adn.A.weight",
        "model.2.conv.weight",
        "model.2.conv.bias",
    },
}
BUFFERS = {
    "attention_unet": {
        "model.0.conv.0.adn.N.running_mean",
        "model.0.conv.0.adn.N.running_var",
        "model.1.submodule.1.upconv.up.adn.N.running_var",
    },
}

if __name__ == "__main__":
    main()
