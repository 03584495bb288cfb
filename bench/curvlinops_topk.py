#!/usr/bin/env python3
"""Top-k eigenpairs of G with curvlinops (GGNLinearOperator + scipy eigsh), the Python side of
bench/spectrum_vs_curvlinops.sh.

The model mirrors noisegeom's parameter for parameter (same names, same named_parameters() order)
and loads the run's own theta.pt, and the samples are the exact tensors `bench_gv topk --dump`
used, so both sides compute the same matrix. Scaling: noisegeom's G = (1/n) sum_i J_i^T J_i
belongs to the loss 1/2 |f - y|^2 averaged over samples; curvlinops' GGN of MSELoss(reduction=
"sum") = sum_i |f_i - y_i|^2 is 2 sum_i J_i^T J_i, so G = GGN / (2 n).

Prints key=value lines: theirs_seconds (operator construction, with curvlinops' default
determinism check, to converged pairs), theirs_matvecs, eigenvalues, residuals |Au - lu|/|l|.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, eigsh

from curvlinops import GGNLinearOperator


class CNN(nn.Module):
    """noisegeom's cnn: conv1, conv2, fc1, fc2 (fc biases switchable, as model.bias)."""

    def __init__(self, classes, bias=True):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 100, bias=bias)
        self.fc2 = nn.Linear(100, classes, bias=bias)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class FixupBlock(nn.Module):
    """models/resnet.cpp's FixupBlockImpl: the identity is x itself at stride 1 (as in Zhang et
    al.'s reference); at stride 2 it is the subsampled x + bias1a padded with zero channels."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        self.stride = stride

    def forward(self, x):
        xa = x + self.bias1a
        out = F.relu(self.conv1(xa) + self.bias1b)
        out = self.conv2(out + self.bias2a) * self.scale + self.bias2b
        identity = x
        if self.stride != 1:
            identity = F.avg_pool2d(xa, 1, self.stride)
            identity = torch.cat([identity, torch.zeros_like(identity)], 1)
        return F.relu(out + identity)


class FixupResNet(nn.Module):
    def __init__(self, depth, classes, width=16):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bias1 = nn.Parameter(torch.zeros(1))
        cin = width
        for s in range(3):
            planes = width << s
            blocks = []
            for k in range(n):
                blocks.append(FixupBlock(cin, planes, 2 if (s > 0 and k == 0) else 1))
                cin = planes
            setattr(self, f"layer{s + 1}", nn.ModuleList(blocks))
        self.bias2 = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        h = F.relu(self.conv1(x) + self.bias1)
        for layer in (self.layer1, self.layer2, self.layer3):
            for b in layer:
                h = b(h)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1) + self.bias2)


def model_config(run):
    """The model section of the run's resolved config.yaml (flat `  key: value` lines)."""
    cfg, inside = {}, False
    for line in open(f"{run}/config.yaml"):
        if not line.startswith(" "):
            inside = line.strip() == "model:"
            continue
        if inside and ":" in line:
            key, value = line.strip().split(":", 1)
            cfg[key] = value.strip().strip('"')
    return cfg


def build_model(cfg, classes):
    if cfg["name"] == "cnn":
        return CNN(classes, cfg.get("bias", "true") == "true")
    if cfg["name"] == "resnet":
        depth, width = int(cfg.get("depth", 0)) or 20, int(cfg.get("width", 0)) or 16
        return FixupResNet(depth, classes, width)
    raise SystemExit(f"no Python mirror for model {cfg['name']!r} (cnn and resnet only)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="the noisegeom run directory (theta.pt, config)")
    ap.add_argument("--data", required=True, help="x, y saved by bench_gv topk --dump")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float64 if a.dtype == "float64" else torch.float32

    # noisegeom's files are TorchScript pickles (typed dicts): PyTorch >= 2.6 loads them only
    # with weights_only=False (or restore_type_tag allowlisted).
    theta = torch.load(f"{a.run}/theta.pt", weights_only=False)
    data = torch.load(a.data, weights_only=False)
    x, y = data["x"].to(dtype), data["y"].to(dtype)
    model = build_model(model_config(a.run), y.shape[1])
    names = [n for n, _ in model.named_parameters()]
    if names != list(theta.keys()):
        raise SystemExit(f"parameter names/order differ from theta.pt:\n{names}\n{list(theta)}")
    model.load_state_dict(theta, strict=True)
    model = model.to(dtype).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    n = x.shape[0]
    batches = [(x[s:s + a.batch], y[s:s + a.batch]) for s in range(0, n, a.batch)]
    loss = nn.MSELoss(reduction="sum")

    calls = [0]
    t0 = time.perf_counter()
    ggn = GGNLinearOperator(model, loss, params, batches, progressbar=False)
    sop = ggn.to_scipy() if hasattr(ggn, "to_scipy") else ggn
    scale = 1.0 / (2 * n)

    def matvec(v):
        calls[0] += 1
        return scale * sop.matvec(v)

    op = LinearOperator(sop.shape, matvec=matvec, dtype=sop.dtype)
    # A fixed start vector, as noisegeom's seeded one, so that reruns do the same work.
    v0 = np.random.default_rng(0).standard_normal(op.shape[0])
    vals, vecs = eigsh(op, k=a.k, which="LA", tol=a.tol, v0=v0)
    seconds = time.perf_counter() - t0
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    matvecs = calls[0]
    res = [np.linalg.norm(op.matvec(vecs[:, j]) - vals[j] * vecs[:, j]) / abs(vals[j])
           for j in range(a.k)]
    print(f"theirs: p = {sum(p.numel() for p in params)}, n = {n}, k = {a.k}, {a.threads} threads,"
          f" {a.dtype}, torch {torch.__version__}")
    print(f"theirs_seconds={seconds:.3f} matvecs={matvecs}")
    print("theirs_eigenvalues=" + ",".join(f"{v:.8g}" for v in vals))
    print("theirs_residuals=" + ",".join(f"{r:.3g}" for r in res))
    print(f"theirs_max_residual={max(res):.3g}")


if __name__ == "__main__":
    main()
