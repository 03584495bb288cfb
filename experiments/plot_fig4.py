#!/usr/bin/env python3
"""Figure 4 of Wang & Wu: the toy OLM f(x; w) = (w2 / sqrt(w1^2 + 1)) x trained by SGD+CLR and
GD+CLR under one cyclical learning rate. Left: both trajectories in the (w1, w2) plane over the
contours of L(w) = w2^2 / [2 (w1^2 + 1)] (the valley w2 = 0 is flatter for larger |w1|); right:
w1^2 against the step, with the learning rate shaded behind. Reads RUN_DIR/trace.csv of each run
and the figure's --summary (OUT/figures/fig4.json) for the numbers in the titles.

    plot_fig4.py --out figures/fig4.png [--scale quick] [--summary fig4.json] SGD+CLR=RUN GD+CLR=RUN
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from plot_common import parse_args, read_csv, save_figure  # noqa: E402

COLORS = {"SGD": "tab:red", "GD": "tab:blue"}


def load_trace(run):
    rows = read_csv(os.path.join(run["dir"], "trace.csv"))
    col = {k: np.array([float(r[k]) for r in rows]) for k in ("step", "lr", "w1", "w2")}
    return col


def color(label):
    return COLORS["SGD" if label.upper().startswith("SGD") else "GD"]


def plane(ax, runs):
    w1max = max(np.abs(r["trace"]["w1"]).max() for r in runs) * 1.15
    w2max = max(np.abs(r["trace"]["w2"]).max() for r in runs) * 1.15
    w1 = np.linspace(-0.05 * w1max, w1max, 400)
    w2 = np.linspace(-w2max, w2max, 400)
    g1, g2 = np.meshgrid(w1, w2)
    loss = g2 ** 2 / (2 * (g1 ** 2 + 1))
    levels = np.geomspace(max(loss.max() * 1e-6, 1e-12), loss.max(), 14)
    ax.contour(g1, g2, loss, levels=levels, colors="0.75", linewidths=0.6)
    ax.axhline(0, color="0.4", lw=0.8, ls="--", label="minima valley $w_2=0$")
    for r in runs:
        t = r["trace"]
        ax.plot(t["w1"], t["w2"], color=color(r["label"]), lw=0.8, alpha=0.85, label=r["label"])
        ax.plot(t["w1"][-1], t["w2"][-1], "o", color=color(r["label"]), ms=5)
    t0 = runs[0]["trace"]
    ax.plot(t0["w1"][0], t0["w2"][0], "k*", ms=10, label="start")
    ax.set_xlabel("$w_1$ (flat direction)")
    ax.set_ylabel("$w_2$ (sharp direction)")
    ax.set_title("trajectories over the contours of $L(w)$")
    ax.legend(fontsize=8, loc="upper right")
    zoom(ax, [r for r in runs if color(r["label"]) == COLORS["GD"]])


def zoom(ax, runs):
    """GD's trajectory at its own scale: it never leaves the start's neighbourhood."""
    if not runs:
        return
    t = runs[0]["trace"]
    inset = ax.inset_axes([0.06, 0.06, 0.34, 0.34])
    inset.plot(t["w1"], t["w2"], color=COLORS["GD"], lw=0.8, marker=".", ms=2)
    inset.plot(t["w1"][0], t["w2"][0], "k*", ms=8)
    inset.axhline(0, color="0.4", lw=0.6, ls="--")
    span = t["w1"].max() - t["w1"].min()
    inset.set_xlim(t["w1"].min() - 0.5 * span, t["w1"].max() + 0.5 * span)
    inset.tick_params(labelsize=6)
    inset.set_title(runs[0]["label"] + " (zoom)", fontsize=7)


def growth(ax, runs, summary):
    for r in runs:
        t = r["trace"]
        ax.loglog(t["step"] + 1, t["w1"] ** 2, color=color(r["label"]), lw=1.2, label=r["label"])
    # A log step axis: the escapes happen in the first cycles, the rest shows where they led.
    ax.set_xlabel("step $t+1$")
    ax.set_ylabel("$w_1^2$")
    tw = ax.twinx()
    t = runs[0]["trace"]
    tw.fill_between(t["step"] + 1, 0, t["lr"], color="0.88", step="post", zorder=0)
    tw.set_ylabel("learning rate", color="0.5")
    tw.set_ylim(0, 1.05 * t["lr"].max() * 3)
    ax.set_zorder(tw.get_zorder() + 1)
    ax.patch.set_visible(False)
    title = "$w_1^2$ against $t$"
    if summary:
        title += "\nSGD: x{:.3g}, GD: {:+.2f}%".format(summary["sgd_w1sq_factor"],
                                                     100 * summary["gd_w1sq_relative_change"])
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center right")


def main():
    args, runs = parse_args(__doc__, load_spectra=False)
    for r in runs:
        r["trace"] = load_trace(r)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    plane(axes[0], runs)
    growth(axes[1], runs, args.summary)
    sched = args.summary.get("schedule", "") if args.summary else ""
    save_figure(fig, args, "Figure 4",
                "toy OLM, SGD+CLR vs GD+CLR" + (f" ({sched})" if sched else ""), fontsize=11)


if __name__ == "__main__":
    main()
