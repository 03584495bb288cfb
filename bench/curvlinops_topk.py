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
from scipy.sparse.linalg import LinearOperator, eigsh

from curvlinops import GGNLinearOperator
from mirror import load_model


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

    data = torch.load(a.data, weights_only=False)
    x, y = data["x"].to(dtype), data["y"].to(dtype)
    model = load_model(a.run, y.shape[1], dtype).eval()
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
