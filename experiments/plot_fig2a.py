#!/usr/bin/env python3
"""Figure 2a of Wang & Wu: alpha_k against lambda_k (log-log) for every eigen-direction u_k of G,
linear regression at theta ~ N(0, I) with n = d/8 and n = 8 ln d, with the line alpha = lambda
(g = 1); beside it g_k = alpha_k/lambda_k against lambda_k. Reads only
RUN_DIR/spectra/NAME/*.csv|json and RUN_DIR/manifest.json.

    plot_fig2a.py --out figures/fig2a.png [--scale quick] [--spectrum full] LABEL=RUN_DIR...
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plot_common import median, parse_args, save_figure  # noqa: E402

COLORS = ["tab:red", "tab:blue", "tab:green", "tab:purple"]


def main():
    a, runs = parse_args(__doc__)
    fig, (ax, axg) = plt.subplots(1, 2, figsize=(11.0, 4.8))
    lo, hi = float("inf"), 0.0
    for j, run in enumerate(runs):
        lam, alpha, g, s = run["lambda"], run["alpha"], run["g"], run["summary"]
        c = COLORS[j % len(COLORS)]
        label = f"{run['label']} (n = {s['n_train']}, d = {s['p']:,}, k = 1..{len(lam)})"
        ax.loglog(lam, alpha, "o", color=c, ms=3, alpha=0.6, mec="none", label=label)
        axg.semilogx(lam, g, "o", color=c, ms=3, alpha=0.6, mec="none",
                     label=f"{run['label']}: median g = {median(g):.3f} "
                           f"({min(g):.3f}..{max(g):.3f})")
        lo = min(lo, min(lam), min(alpha))
        hi = max(hi, max(lam), max(alpha))
    ax.loglog([lo, hi], [lo, hi], "--", color="0.3", lw=1.0, label=r"$\alpha = \lambda$")
    ax.set_xlabel(r"$\lambda_k$ (curvature along $u_k$)")
    ax.set_ylabel(r"$\alpha_k$ (noise energy along $u_k$)")
    ax.set_title(r"linear regression, $x \sim N(0, I_d)$, $\theta \sim N(0, I)$", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    axg.axhspan(0.5, 2.0, color="0.93", zorder=0)
    axg.axhline(1.0, color="0.3", lw=1.0, ls="--")
    axg.set_xlabel(r"$\lambda_k$")
    axg.set_ylabel(r"$g_k = \alpha_k / \lambda_k$")
    axg.set_ylim(0, max(2.5, axg.get_ylim()[1]))
    axg.set_title("directional alignment along every eigen-direction of G", fontsize=10)
    axg.legend(fontsize=8, loc="upper right")
    axg.grid(alpha=0.3, which="both")
    save_figure(fig, a, "Figure 2a", "noise energy against curvature along the eigen-directions "
                "of G", fontsize=11)


if __name__ == "__main__":
    main()
