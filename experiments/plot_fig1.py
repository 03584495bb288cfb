#!/usr/bin/env python3
"""Figure 1 of Wang & Wu: the loss alignment mu(theta) = tr(Sigma G) / (2L |G|_F^2) at random
theta against the number of parameters p (log scale), mean +- std over the runs of each width,
one curve per input covariance; columns: the 4-layer linear net and the two-layer ReLU net;
rows: theta from the model's initialisation (the primary curves) and theta ~ N(0, I). Reads only
the figure's numbers (--summary, OUT/figures/fig1.json, written by reproduce from the runs'
spectra/*/summary.json).

    plot_fig1.py --out figures/fig1.png --summary figures/fig1.json [--scale quick] LABEL=RUN_DIR...
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plot_common import parse_args, save_figure  # noqa: E402

MODELS = [("linear_net", "4-layer linear net"), ("two_layer", "two-layer ReLU net (a, b trained)")]
STYLE = {"iso": ("tab:blue", "o", r"isotropic, $S = I_{50}$"),
         "aniso": ("tab:red", "s", r"anisotropic, $S_{kk} = k^{-1/2}$, $k \leq 662$")}


def main():
    a, _ = parse_args(__doc__, load_spectra=False)
    s = a.summary
    if not s:
        raise SystemExit("plot_fig1.py: needs --summary (reproduce fig1 writes it)")
    thetas = list(s["thetas"].items())
    fig, axes = plt.subplots(len(thetas), len(MODELS), figsize=(5.6 * len(MODELS),
                             4.2 * len(thetas)), squeeze=False)
    lo, hi = s["band"]
    for row, (name, theta) in enumerate(thetas):
        for col, (model, title) in enumerate(MODELS):
            ax = axes[row][col]
            ax.axhspan(lo, hi, color="0.93", zorder=0)
            ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
            fits = []
            for c in theta["curves"]:
                if f"_{model}_" not in c["experiment"]:
                    continue
                cov = c["experiment"].rsplit("_", 1)[1]
                color, marker, label = STYLE[cov]
                w = c["widths"]
                ax.errorbar([x["p"] for x in w], [x["mean"] for x in w],
                            yerr=[x["std"] for x in w], color=color, marker=marker, ms=5,
                            capsize=3, lw=1.2, label=label)
                f = c["fit"]
                fits.append(f"{cov}: weighted slope {f['slope_per_ln_p']:+.3f}"
                            f"$\\pm${f['slope_se']:.3f}/ln p (p = {f['p_value']:.2f})")
            ax.set_xscale("log")
            ax.set_ylim(0, max(2.5, ax.get_ylim()[1]))
            ax.set_xlabel("number of parameters p")
            ax.set_ylabel(r"$\mu(\theta)$")
            runs = theta["curves"][0]["widths"][0]["runs"]
            ax.set_title(f"{title}\n{theta['description']}", fontsize=9)
            ax.text(0.02, 0.03, "\n".join(fits) + f"\nmean $\\pm$ std over {runs} runs, n = {s['n']}",
                    transform=ax.transAxes, fontsize=7, color="0.3", va="bottom")
            ax.legend(fontsize=8, loc="upper right")
            ax.grid(alpha=0.3, which="both")
    save_figure(fig, a, "Figure 1", r"loss alignment $\mu(\theta)$ at random $\theta$ across widths",
                fontsize=11)


if __name__ == "__main__":
    main()
