#!/usr/bin/env python3
"""Figure A: Appendix A's b = 2k estimator tested. For each network, two panels against the number
of per-sample gradients b (log axis): the ratio lambda_k(b)/lambda_k(n) of G's top eigenvalues
for k = 1, 5, 20 (mean and std over seeds; the 10 % band shaded), and the overlap
|U_b^T U_n|_F^2/k of the top-k eigenvectors with those over all n samples (0.9 dashed). The
paper's b = 2k is marked. Reads only the figure's numbers (--summary, OUT/figures/figA.json).

    plot_figA.py --out figures/figA.png --summary figures/figA.json [--scale quick] LABEL=RUN...
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from plot_common import parse_args, save_figure  # noqa: E402

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red"]


def series(net, get):
    """(b, mean, std) over the sweep, then b = n where the reference is exact by definition."""
    bs = [p["b"] for p in net["points"]]
    means = [get(p)["mean"] for p in net["points"]]
    stds = [get(p)["std"] for p in net["points"]]
    if not bs or bs[-1] < net["n"]:
        bs, means, stds = bs + [net["n"]], means + [1.0], stds + [0.0]
    return bs, means, stds


def b_axis(ax, net):
    """Log axis ticked at the b of the sweep and at n (whose point is the reference itself)."""
    bs = [p["b"] for p in net["points"]] + [net["n"]]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(bs))))
    ax.xaxis.set_minor_locator(NullLocator())
    ticks = sorted(set(bs))
    ax.set_xticklabels([str(b) if b != net["n"] else f"n={b}" for b in ticks], fontsize=8,
                       rotation=45 if len(ticks) > 6 else 0)
    ax.set_xlabel("b (per-sample gradients)")


def from_b(b, n):
    """How the summary's smallest sufficient b reads in a title."""
    if b is None:
        return "never"
    return f"only at b = n = {n}" if b == n else f"from b = {b}"


def mark_paper_b(ax, b):
    ax.axvline(b, color="0.35", lw=1, ls=":")
    ax.text(b, 0.02, f" b = 2k = {b}\n (Appendix A)", transform=ax.get_xaxis_transform(),
            fontsize=8, color="0.3", va="bottom")


def ratio_panel(ax, net, summary):
    ks, tol = summary["ks"], summary["lambda_tolerance"]
    ax.axhspan(1 - tol, 1 + tol, color="0.9", zorder=0, label=f"within {tol:.0%}")
    ax.axhline(1.0, color="0.5", lw=0.8)
    for i, k in enumerate(ks):
        bs, m, s = series(net, lambda p, k=k: p["ratio"][f"lambda_{k}"])
        ax.errorbar(bs, m, yerr=s, fmt="o-", ms=4, capsize=3, color=COLORS[i % len(COLORS)],
                    label=rf"$\lambda_{{{k}}}(b)/\lambda_{{{k}}}(n)$")
    mark_paper_b(ax, summary["paper_b"])
    b1 = net["b_lambda1_within_10pct"]
    ax.set_title(f"{net['label']}: n = {net['n']}, p = {net['p']:,}, "
                 rf"$\lambda_1(n)$ = {net['reference']['lambda'][0]:.3g}" "\n"
                 rf"$\lambda_1$ within {tol:.0%} {from_b(b1, net['n'])}", fontsize=10)
    b_axis(ax, net)
    ax.set_ylabel("eigenvalue ratio")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, which="both")


def overlap_panel(ax, net, summary):
    thr = summary["overlap_threshold"]
    bs, m, s = series(net, lambda p: p["overlap"])
    ax.errorbar(bs, m, yerr=s, fmt="s-", ms=4, capsize=3, color="tab:purple",
                label=rf"$\|U_b^\top U_n\|_F^2/k$, k = {summary['k']}")
    ax.axhline(thr, color="0.4", lw=1, ls="--", label=f"{thr}")
    mark_paper_b(ax, summary["paper_b"])
    ax.set_title(f"overlap above {thr} {from_b(net['b_overlap_above_0.9'], net['n'])}",
                 fontsize=10)
    b_axis(ax, net)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("subspace overlap")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")


def main():
    a, _ = parse_args(__doc__, load_spectra=False)
    if not a.summary:
        raise SystemExit("plot_figA.py: --summary (OUT/figures/figA.json) is required")
    nets = a.summary["networks"]
    fig, axes = plt.subplots(2, len(nets), figsize=(5.4 * len(nets), 8), squeeze=False)
    for col, net in enumerate(nets):
        ratio_panel(axes[0][col], net, a.summary)
        overlap_panel(axes[1][col], net, a.summary)
    save_figure(fig, a, "Figure A",
                r"G's top-k from b per-sample gradients against all n samples at $\theta^*$")


if __name__ == "__main__":
    main()
