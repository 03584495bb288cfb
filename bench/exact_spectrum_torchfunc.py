#!/usr/bin/env python3
"""The exact spectrum of a run in PyTorch for Python with torch.func, the peer of
bench/exact_vs_torchfunc.sh: per-sample Jacobians by vmap(jacrev) over all n samples, the Gram
matrices of G and Sigma, torch.linalg.eigh, and the metrics noisegeom writes (top-k of G and
Sigma, alpha_k, mu, |G|_F, tr G, srk(G), srk(G^2)), all exact, in the given dtype.

Square loss l_i = |f_i - y_i|^2 / 2 (noisegeom's mse, one-hot targets): G = (1/n) sum J_i^T J_i,
Sigma = (1/n) sum J_i^T r_i r_i^T J_i with r_i = f_i - y_i. Prints key=value lines: seconds (from
the samples in memory to every number), eigenvalues of G and Sigma, mu, srk_G2, max residual.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, jacrev, vmap

from mirror import load_model, load_samples


def per_sample_jacobian(model, params, x, chunk):
    """(n, C, p): row block i is J_i = d f(x_i) / d theta, parameters in named_parameters() order."""
    names = list(params)

    def f(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(f), in_dims=(None, 0))
    blocks = []
    for s in range(0, x.shape[0], chunk):
        j = jac(params, x[s:s + chunk])
        blocks.append(torch.cat([j[k].flatten(2) for k in names], dim=2))
    return torch.cat(blocks)


def top_k_from_rows(rows, n, k):
    """Top-k eigenpairs of A = B^T B / n from the Gram matrix B B^T / n (same nonzero spectrum)."""
    gram = rows @ rows.T / n
    vals, w = torch.linalg.eigh(gram)
    vals, w = vals.flip(0)[:k], w.flip(1)[:, :k]
    u = rows.T @ w
    u = u / u.norm(dim=0, keepdim=True)
    au = rows.T @ (rows @ u) / n
    res = ((au - u * vals).norm(dim=0) / vals.abs()).max().item()
    return vals, u, res, gram


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--dtype", default="float64")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    x, cls = load_samples(a.data_dir, a.run)
    classes = int(cls.max().item()) + 1
    model = load_model(a.run, classes).to(dtype).eval()
    x = x.to(dtype)
    y = F.one_hot(cls, classes).to(dtype)
    n = x.shape[0]

    t0 = time.perf_counter()
    params = {k: v.detach() for k, v in model.named_parameters()}
    with torch.no_grad():
        f = model(x)
    r = f - y
    loss = 0.5 * (r * r).sum().item() / n
    jac = per_sample_jacobian(model, params, x, a.chunk)              # (n, C, p)
    g_rows = jac.reshape(n * classes, -1)                             # G = B^T B / n
    s_rows = torch.einsum("nc,ncp->np", r, jac)                       # Sigma = S^T S / n
    del jac
    g_vals, u, g_res, g_gram = top_k_from_rows(g_rows, n, a.k)
    s_vals, _, s_res, _ = top_k_from_rows(s_rows, n, a.k)
    alpha = (s_rows @ u).pow(2).sum(0) / n / (2 * loss)
    tr_g = g_rows.pow(2).sum().item() / n
    frob_sq = g_gram.pow(2).sum().item()
    tr_sg = (s_rows @ g_rows.T).pow(2).sum().item() / n ** 2
    mu = tr_sg / (2 * loss * frob_sq)
    seconds = time.perf_counter() - t0

    lam1 = g_vals[0].item()
    print(f"theirs_seconds={seconds:.3f}")
    print("theirs_G=" + ",".join(f"{v:.17g}" for v in g_vals.tolist()))
    print("theirs_Sigma=" + ",".join(f"{v:.17g}" for v in s_vals.tolist()))
    print("theirs_alpha=" + ",".join(f"{v:.17g}" for v in alpha.tolist()))
    print(f"theirs_mu={mu:.17g} theirs_srk_G={tr_g / lam1:.17g} "
          f"theirs_srk_G2={frob_sq / lam1 ** 2:.17g} theirs_frobenius_G={frob_sq ** 0.5:.17g}")
    print(f"theirs_max_residual={max(g_res, s_res):.3e} theirs_n={n} theirs_p={u.shape[0]}")


if __name__ == "__main__":
    main()
