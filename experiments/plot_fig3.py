#!/usr/bin/env python3
"""Figure 3 of Wang & Wu: escape directions of SGD and GD on linear regression. E[D_{t,1}] =
E[Y_t] / E[X_t] (loss energy beyond the sharpest direction over the energy along it, the ratio of
the means over runs) against the step t, log scale, one curve per srk(G^2): SGD solid, GD dashed,
srk(G^2) - 1 as a dotted line in the curve's colour (Theorem 5.2's level for SGD), and for GD
Proposition 5.3's sum at E[w_{0,i}^2] = sigma^2 as a thin line.

    plot_fig3.py --out figures/fig3.png --summary figures/fig3.json [--scale quick]
                 LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Everything comes from the summary reproduce writes (OUT/figures/fig3.json): the curves, srk(G^2)
from each run's spectrum, GD's fitted and closed-form rates (Proposition 5.3), SGD's level.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plot_common import parse_args, save_figure  # noqa: E402


def main():
    args, _ = parse_args(__doc__.splitlines()[0], load_spectra=False)
    rows = args.summary.get("srk", [])
    if not rows:
        raise SystemExit("plot_fig3.py: --summary with the figure's numbers is required")
    fig, (ax_sgd, ax_gd) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    cmap = plt.get_cmap("viridis")
    for j, r in enumerate(rows):
        color = cmap(0.1 + 0.8 * j / max(1, len(rows) - 1))
        srk = r["srk_G2"]
        label = f"srk$(G^2)$ = {srk:.3g}"
        s, g = r["sgd"], r["gd"]
        ax_sgd.semilogy(s["steps"], s["expected_D"], "-", color=color, lw=1.8, label=label)
        ax_sgd.axhline(srk - 1, color=color, ls=":", lw=1.2)
        ax_gd.semilogy(g["steps"], [max(v, 1e-300) for v in g["expected_D"]], "--", color=color,
                       lw=1.8, label=f"{label}: rate {g['fitted_rate']:.3g} "
                                     f"(Prop. 5.3: {g['closed_form_rate']:.3g})")
        ax_gd.semilogy(g["steps"], [max(v, 1e-300) for v in g["closed_form_expected_D"]], "-",
                       color=color, lw=0.8, alpha=0.6)
        ax_gd.axhline(srk - 1, color=color, ls=":", lw=1.2)
    n_sgd = rows[0]["sgd"]["runs"]
    n_gd = rows[0]["gd"]["runs"]
    ax_sgd.set_title(f"SGD (batch 1, $\\eta = 1.2/\\|G\\|_F$, {n_sgd} runs)")
    ax_gd.set_title(f"GD ($\\eta = 4/(\\lambda_1+\\lambda_2)$, {n_gd} runs)")
    floor = args.summary.get("gd_fit_floor", 1e-20)
    ax_gd.set_ylim(bottom=floor / 100)
    for ax in (ax_sgd, ax_gd):
        ax.set_xlabel("step $t$")
        ax.set_ylabel("$E[D_{t,1}]$")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    ax_sgd.text(0.02, 0.02, "dotted: srk$(G^2) - 1$", transform=ax_sgd.transAxes, fontsize=8)
    ax_gd.text(0.02, 0.02, "thin: Prop. 5.3's sum at $E[w_{0,i}^2] = \\sigma^2$; dotted: "
               "srk$(G^2) - 1$", transform=ax_gd.transAxes, fontsize=7)
    save_figure(fig, args, "Figure 3", "escape directions of SGD and GD, linear regression")


if __name__ == "__main__":
    main()
