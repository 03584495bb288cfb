#!/usr/bin/env python3
"""The training loop of `noisegeom train` in PyTorch for Python: same model, data, batch, steps.

Reads the training samples from a noisegeom run directory (samples.csv), so both sides train on
exactly the same images; times `steps` SGD steps plus one full-loss evaluation, as the C++ side's
train_log.csv rate does. Prints one line: steps_per_second=<float>.
"""
import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_samples(data_dir, run_dir):
    rows = np.loadtxt(os.path.join(run_dir, "samples.csv"), delimiter=",", skiprows=1, dtype=np.int64)
    index, cls = rows[:, 1], rows[:, 3]
    per_file = 10000
    images = []
    for f in range(1, 6):
        raw = np.fromfile(os.path.join(data_dir, f"data_batch_{f}.bin"), dtype=np.uint8)
        images.append(raw.reshape(-1, 3073)[:, 1:])
        per_file = images[0].shape[0]
    allx = np.concatenate(images)
    x = torch.from_numpy(allx[index].astype(np.float32) / 255.0).reshape(-1, 3, 32, 32)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    x = (x - mean) / std
    y = torch.from_numpy(cls)
    return x, y


class CNN(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.f1, self.f2 = nn.Linear(400, 100), nn.Linear(100, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.f2(F.relu(self.f1(x.flatten(1))))


class FixupBlock(nn.Module):
    def __init__(self, cin, cout, stride, nblocks):
        super().__init__()
        self.b1a, self.b1b, self.b2a, self.b2b = (nn.Parameter(torch.zeros(1)) for _ in range(4))
        self.scale = nn.Parameter(torch.ones(1))
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        nn.init.normal_(self.c1.weight, 0, (2 / (cout * 9)) ** 0.5 * nblocks ** -0.5)
        nn.init.zeros_(self.c2.weight)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        xa = x + self.b1a
        out = self.c2(F.relu(self.c1(xa) + self.b1b) + self.b2a) * self.scale + self.b2b
        sc = x  # the Fixup reference adds bias1a only on the downsampling shortcut
        if self.stride != 1 or self.pad:
            sc = F.avg_pool2d(xa, 1, self.stride)
            sc = torch.cat([sc, torch.zeros_like(sc)], 1)
        return F.relu(out + sc)


class FixupResNet(nn.Module):
    def __init__(self, depth, classes, w=16):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(3, w, 3, 1, 1, bias=False)
        self.b1, self.b2 = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        blocks, cin = [], w
        for s, cout in enumerate([w, 2 * w, 4 * w]):
            for k in range(n):
                blocks.append(FixupBlock(cin, cout, 2 if (s > 0 and k == 0) else 1, 3 * n))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(4 * w, classes)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        x = F.relu(self.stem(x) + self.b1)
        x = self.blocks(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1) + self.b2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="noisegeom run directory (for samples.csv)")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x, y = load_samples(a.data_dir, a.run)
    classes = int(y.max()) + 1
    target = F.one_hot(y, classes).float()
    model = CNN(classes) if a.model == "cnn" else FixupResNet(a.depth, classes)
    params = list(model.parameters())
    n = x.shape[0]
    per_epoch = (n + a.batch - 1) // a.batch
    g = torch.Generator().manual_seed(0)
    model.train()
    t0 = time.perf_counter()
    perm = None
    for step in range(a.steps):
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=g)
        idx = perm[(step % per_epoch) * a.batch:(step % per_epoch + 1) * a.batch]
        out = model(x.index_select(0, idx))
        loss = 0.5 * (out - target.index_select(0, idx)).pow(2).sum(1).mean()
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-a.lr)
    with torch.no_grad():
        model.eval()
        total = 0.0
        for s in range(0, n, 1000):
            out = model(x[s:s + 1000])
            total += 0.5 * (out - target[s:s + 1000]).pow(2).sum(1).sum().item()
    dt = time.perf_counter() - t0
    print(f"steps_per_second={a.steps / dt:.3f} final_loss={total / n:.4e}")


if __name__ == "__main__":
    main()
