"""Regenerates tests/fixtures/adamw.json: torch.optim.AdamW on two small
parameters for 4 steps with given gradients and a learning-rate change,
for tests/adamw.rs. Run: python3 crates/petseg-train/scripts/make_adamw_fixture.py"""
import json
import os

import torch

torch.manual_seed(0)
a = torch.nn.Parameter(torch.randn(3, 4))
b = torch.nn.Parameter(torch.randn(5))
init = {"a": a.detach().flatten().tolist(), "b": b.detach().flatten().tolist()}
opt = torch.optim.AdamW([a, b], lr=2e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
steps = []
for t in range(4):
    ga = torch.randn(3, 4) * (10.0 ** (t - 2))
    gb = torch.randn(5)
    if t == 2:
        for g in opt.param_groups:
            g["lr"] = 1e-2
    a.grad, b.grad = ga, gb
    opt.step()
    lr = opt.param_groups[0]["lr"]
    steps.append({"lr": lr, "grad_a": ga.flatten().tolist(), "grad_b": gb.flatten().tolist(),
                  "a": a.detach().flatten().tolist(), "b": b.detach().flatten().tolist(),
                  "exp_avg_a": opt.state[a]["exp_avg"].flatten().tolist(),
                  "exp_avg_sq_b": opt.state[b]["exp_avg_sq"].flatten().tolist()})
out = {"lr": 2e-2, "weight_decay": 1e-2, "init": init, "steps": steps, "torch": torch.__version__}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "adamw.json")
with open(path, "w") as f:
    json.dump(out, f, indent=0)
print("wrote", path)
