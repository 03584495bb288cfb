#!/usr/bin/env python3
"""Figure 5 of Wang & Wu: lambda_k/|lambda|_1 and alpha_k/|alpha|_1 against k at theta*, one panel
per model, with Sigma's own top-k spectrum (normalised the same way) as a third series; below,
the directional alignment g_k = alpha_k/lambda_k. Reads only RUN_DIR/spectra/NAME/*.csv|json
and RUN_DIR/manifest.json.

    plot_fig5.py --out figures/fig5.png [--scale quick] LABEL=RUN_DIR [LABEL=RUN_DIR ...]
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plot_common import (describe, l1_normalised, median, metric, metric_note,  # noqa: E402
                         parse_args, save_figure)


def main():
    a, runs = parse_args(__doc__)
    fig, axes = plt.subplots(2, len(runs), figsize=(5.2 * len(runs), 7.4), squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1]})
    for col, run in enumerate(runs):
        ax, axg = axes[0][col], axes[1][col]
        k = run["k"]
        ax.plot(k, l1_normalised(run["lambda"]), "o-", color="tab:blue", ms=4,
                label=r"$\lambda_k/\|\lambda\|_1$ (G)")
        ax.plot(k, l1_normalised(run["alpha"]), "s--", color="tab:red", ms=4,
                label=r"$\alpha_k/\|\alpha\|_1$ (noise along $u_k$)")
        sigma = run["spectra"].get("Sigma")
        if sigma:
            ax.plot(range(1, len(sigma) + 1), l1_normalised(sigma), "^:", color="tab:green", ms=4,
                    label=r"$\sigma_k/\|\sigma\|_1$ ($\Sigma$'s own top-k)")
        ax.set_yscale("log")
        ax.set_xlabel("k")
        ax.set_title(f"{run['label']}", fontsize=11)
        ax.text(0.98, 0.97, describe(run), transform=ax.transAxes, ha="right", va="top",
                fontsize=7, color="0.3")
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3, which="both")
        g = run["g"]
        s = run["summary"]
        axg.plot(k, g, "o-", color="tab:purple", ms=4)
        axg.axhline(1.0, color="0.5", lw=0.8, ls="--")
        axg.set_yscale("log")
        axg.set_xlabel("k")
        axg.set_ylabel(r"$g_k=\alpha_k/\lambda_k$")
        axg.set_title(f"median g = {median(g):.3g}, range {min(g):.3g}..{max(g):.3g}, "
                      f"mu = {metric(s, 'mu')} ({metric_note(s)})", fontsize=9)
        axg.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(r"normalised by the $\ell_1$ norm over the top k")
    save_figure(fig, a, "Figure 5",
                r"curvature and noise energy along the eigen-directions of G at $\theta^*$")


if __name__ == "__main__":
    main()
