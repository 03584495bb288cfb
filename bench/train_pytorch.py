#!/usr/bin/env python3
"""The training loop of `noisegeom train` in PyTorch for Python: same model, data, batch, steps.

Reads the training samples from a noisegeom run directory (samples.csv), so both sides train on
exactly the same images; times `steps` SGD steps plus one full-loss evaluation, as the C++ side's
train_log.csv rate does. Prints one line: steps_per_second=<float>.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from mirror import CNN, FixupResNet, full_loss, load_samples, sgd_batches, sgd_step


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
    batches = sgd_batches(n, a.batch, torch.Generator().manual_seed(0))
    model.train()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        sgd_step(model, params, x, target, next(batches), a.lr)
    loss = full_loss(model, x, target)
    dt = time.perf_counter() - t0
    print(f"steps_per_second={a.steps / dt:.3f} final_loss={loss:.4e}")


if __name__ == "__main__":
    main()
