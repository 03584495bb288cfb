#!/usr/bin/env python3
"""Figure 2b of Wang & Wu: alpha_k against lambda_k (log-log) along the top eigen-directions of G
at a random theta ~ N(0, I), one panel per network, with the line alpha = lambda (g = 1). Reads
only RUN_DIR/spectra/NAME/*.csv|json and RUN_DIR/manifest.json.

    plot_fig2b.py --out figures/fig2b.png [--scale quick] LABEL=RUN_DIR [LABEL=RUN_DIR ...]
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plot_common import describe, median, parse_args, save_figure  # noqa: E402


def main():
    a, runs = parse_args(__doc__)
    fig, axes = plt.subplots(1, len(runs), figsize=(5.0 * len(runs), 4.8), squeeze=False)
    for col, run in enumerate(runs):
        ax = axes[0][col]
        lam, alpha, g = run["lambda"], run["alpha"], run["g"]
        ax.loglog(lam, alpha, "o", color="tab:red", ms=5, label=r"$(\lambda_k, \alpha_k)$")
        lo = min(min(lam), min(alpha))
        hi = max(max(lam), max(alpha))
        ax.loglog([lo, hi], [lo, hi], "--", color="0.5", lw=0.8, label=r"$\alpha = \lambda$")
        ax.set_xlabel(r"$\lambda_k$ (curvature along $u_k$)")
        ax.set_ylabel(r"$\alpha_k$ (noise energy along $u_k$)")
        theta = run["summary"].get("theta", "?")
        ax.set_title(f"{run['label']} at theta {theta}: median g = {median(g):.3g} "
                     f"({min(g):.3g}..{max(g):.3g})", fontsize=9)
        ax.text(0.03, 0.97, describe(run), transform=ax.transAxes, ha="left", va="top",
                fontsize=7, color="0.3")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3, which="both")
    save_figure(fig, a, "Figure 2b",
                "noise energy against curvature along the eigen-directions of G", fontsize=11)


if __name__ == "__main__":
    main()
