#!/usr/bin/env python3
"""The SGD escape loop of `noisegeom escape` in PyTorch for Python, the other side of
bench/escape_vs_pytorch.sh: N runs from the run's theta*, each T constant-lr SGD steps on
batches of its own seeded epoch permutations, and at every logged step the loss over all
samples, d = |theta_t - theta*| and p_k, r_k along the run's top eigenvectors of G
(spectra/default/eigenvectors.pt), as noisegeom records them. Runs go one after another with all
threads, the natural way in PyTorch. Prints steps_per_second=<float> (N*T / wall seconds).
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F

from mirror import full_loss, load_model, load_samples, sgd_batches, sgd_step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="noisegeom run directory with spectra/default/")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ks", default="1,5,10,20")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, y = load_samples(a.data_dir, a.run)
    classes = int(y.max()) + 1
    target = F.one_hot(y, classes).float()
    model = load_model(a.run, classes)
    params = list(model.parameters())
    theta_star = [p.detach().clone() for p in params]
    theta_star64 = torch.cat([p.reshape(-1) for p in theta_star]).double()
    saved = torch.load(os.path.join(a.run, "spectra", "default", "eigenvectors.pt"), weights_only=False)
    U = saved["U"].double()
    ks = [min(int(k), U.shape[1]) for k in a.ks.split(",")]
    n = x.shape[0]

    def log(records, run, step):
        loss = full_loss(model, x, target)
        with torch.no_grad():
            delta = torch.cat([p.reshape(-1) for p in params]).double() - theta_star64
            d2 = float(delta.dot(delta))
            proj = U.t().mv(delta)
            row = [run, step, loss, d2 ** 0.5]
            for k in ks:
                pk = float(proj[0]) if k == 1 else float(proj[:k].norm())
                row += [pk, max(d2 - pk * pk, 0.0) ** 0.5]
            records.append(row)

    records = []
    t0 = time.perf_counter()
    for run in range(a.runs):
        with torch.no_grad():
            for p, s in zip(params, theta_star):
                p.copy_(s)
        batches = sgd_batches(n, a.batch, torch.Generator().manual_seed(1000 + run))
        model.train()
        log(records, run, 0)
        for step in range(a.steps):
            sgd_step(model, params, x, target, next(batches), a.lr)
            if (step + 1) % a.log_every == 0 or step + 1 == a.steps:
                log(records, run, step + 1)
    dt = time.perf_counter() - t0
    last = records[-1]
    print(f"steps_per_second={a.runs * a.steps / dt:.3f} seconds={dt:.3f} points={len(records)} "
          f"last_loss={last[2]:.4e}")


if __name__ == "__main__":
    main()
