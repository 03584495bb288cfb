#!/usr/bin/env python3
"""Figure 4 of Wang & Wu: the toy OLM f(x; w) = (w2 / sqrt(w1^2 + 1)) x trained by SGD+CLR and
GD+CLR under one cyclical learning rate, several seeds of each. Left: the trajectories in the
(w1, w2) plane over the contours of L(w) = w2^2 / [2 (w1^2 + 1)] (the valley w2 = 0 is flatter for
larger |w1|), every SGD seed thin and translucent, the summary's highlighted seed (the median
outcome) bold, GD in a zoomed inset; right: w1^2 against the step for every run, with the learning
rate shaded behind. Reads RUN_DIR/trace.csv of each run and the figure's --summary
(OUT/figures/fig4.json) for the numbers in the titles. Labels are "SGD+CLR sNN" / "GD+CLR sNN".

    plot_fig4.py --out figures/fig4.png [--scale quick] [--summary fig4.json] LABEL=RUN ...
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
    return {k: np.array([float(r[k]) for r in rows]) for k in ("step", "lr", "w1", "w2")}


def is_sgd(run):
    return run["label"].upper().startswith("SGD")


def seed_of(run):
    tail = run["label"].rsplit(" s", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def highlighted(sgd, summary):
    want = summary.get("sgd", {}).get("highlight_seed") if summary else None
    for r in sgd:
        if seed_of(r) == want:
            return r
    return sgd[len(sgd) // 2] if sgd else None


def contours(ax, runs, w2_lin):
    """L(w) on the plotted window: w1 > 0 throughout (its update multiplies it by a factor > 1),
    so a log w1 axis shows the drifts of x1.01 and x100 alike; w2 on a symlog axis."""
    w1 = np.concatenate([r["trace"]["w1"] for r in runs])
    w2 = np.concatenate([r["trace"]["w2"] for r in runs])
    lo, hi = w1.min() / 1.3, w1.max() * 1.3
    w2max = np.abs(w2).max() * 1.3
    g1, g2 = np.meshgrid(np.geomspace(lo, hi, 300),
                         np.concatenate([-np.geomspace(w2max, w2_lin / 10, 200),
                                         np.geomspace(w2_lin / 10, w2max, 200)]))
    loss = g2 ** 2 / (2 * (g1 ** 2 + 1))
    levels = np.geomspace(max(loss.max() * 1e-8, 1e-14), loss.max(), 16)
    ax.contour(g1, g2, loss, levels=levels, colors="0.8", linewidths=0.5)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=w2_lin)
    # Decades outside the linear band only: the default ticks inside it overlap.
    top = int(np.ceil(np.log10(w2max)))
    bottom = int(np.ceil(np.log10(w2_lin)))
    decades = [10.0 ** e for e in range(bottom, top + 1)]
    ax.set_yticks([-d for d in reversed(decades)] + [0] + decades)
    ax.set_xlim(lo, hi)
    ax.set_ylim(-w2max, w2max)


def plane(ax, sgd, gd, hl):
    t0 = (sgd or gd)[0]["trace"]
    contours(ax, sgd + gd, abs(t0["w2"][0]))
    ax.axhline(0, color="0.4", lw=0.8, ls="--", label="minima valley $w_2=0$")
    for r in sgd:
        t = r["trace"]
        ax.plot(t["w1"], t["w2"], color=COLORS["SGD"], lw=0.5, alpha=0.25)
        ax.plot(t["w1"][-1], t["w2"][-1], "o", color=COLORS["SGD"], ms=3, alpha=0.5)
    if hl is not None:
        t = hl["trace"]
        ax.plot(t["w1"], t["w2"], color="darkred", lw=1.2,
                label=f"SGD+CLR seed {seed_of(hl)} (median outcome)")
        ax.plot(t["w1"][-1], t["w2"][-1], "o", color="darkred", ms=6)
    ax.plot([], [], color=COLORS["SGD"], lw=0.8, alpha=0.5, label=f"SGD+CLR, {len(sgd)} seeds")
    ax.plot(t0["w1"][0], t0["w2"][0], "k*", ms=10, label="start", zorder=5)
    ax.set_xlabel("$w_1$ (flat direction, log)")
    ax.set_ylabel("$w_2$ (sharp direction, symlog)")
    ax.set_title("trajectories over the contours of $L(w)$")
    ax.legend(fontsize=7, loc="upper right")
    zoom(ax, gd)


def zoom(ax, gd):
    """GD's trajectories at their own scale: they never leave the start's neighbourhood."""
    if not gd:
        return
    inset = ax.inset_axes([0.62, 0.06, 0.34, 0.30])
    for r in gd:
        t = r["trace"]
        inset.plot(t["w1"], t["w2"], color=COLORS["GD"], lw=0.6, marker=".", ms=1.5, alpha=0.6)
    t = gd[0]["trace"]
    inset.plot(t["w1"][0], t["w2"][0], "k*", ms=8)
    inset.axhline(0, color="0.4", lw=0.6, ls="--")
    w1 = np.concatenate([r["trace"]["w1"] for r in gd])
    span = w1.max() - w1.min()
    inset.set_xlim(w1.min() - 0.5 * span, w1.max() + 0.5 * span)
    inset.tick_params(labelsize=6)
    inset.set_title(f"GD+CLR, {len(gd)} seeds (zoom)", fontsize=7)


def growth(ax, sgd, gd, hl, summary):
    for r in sgd:
        t = r["trace"]
        ax.loglog(t["step"] + 1, t["w1"] ** 2, color=COLORS["SGD"], lw=0.6, alpha=0.3)
    if hl is not None:
        t = hl["trace"]
        ax.loglog(t["step"] + 1, t["w1"] ** 2, color="darkred", lw=1.4,
                  label=f"SGD+CLR seed {seed_of(hl)}")
    for r in gd:
        t = r["trace"]
        ax.loglog(t["step"] + 1, t["w1"] ** 2, color=COLORS["GD"], lw=1.0, alpha=0.7)
    ax.plot([], [], color=COLORS["SGD"], lw=0.8, alpha=0.5, label=f"SGD+CLR, {len(sgd)} seeds")
    ax.plot([], [], color=COLORS["GD"], lw=1.0, label=f"GD+CLR, {len(gd)} seeds")
    # A log step axis: the escapes happen in the first cycles, the rest shows where they led.
    ax.set_xlabel("step $t+1$")
    ax.set_ylabel("$w_1^2$")
    tw = ax.twinx()
    t = (sgd or gd)[0]["trace"]
    tw.fill_between(t["step"] + 1, 0, t["lr"], color="0.88", step="post", zorder=0)
    tw.set_ylabel("learning rate", color="0.5")
    tw.set_ylim(0, 1.05 * t["lr"].max() * 3)
    ax.set_zorder(tw.get_zorder() + 1)
    ax.patch.set_visible(False)
    title = "$w_1^2$ against $t$"
    if summary and "sgd" in summary:
        s, g = summary["sgd"], summary["gd"]
        title += ("\nSGD: median x{:.3g}, >x10 for {:.0f}% of seeds (max x{:.3g}); "
                  "GD: |change| <= {:.2f}%").format(
            s["median"], 100 * s["fraction_above_10"], s["max"],
            100 * g["max_abs_relative_change"])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def main():
    args, runs = parse_args(__doc__, load_spectra=False)
    for r in runs:
        r["trace"] = load_trace(r)
    sgd = [r for r in runs if is_sgd(r)]
    gd = [r for r in runs if not is_sgd(r)]
    hl = highlighted(sgd, args.summary)
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6))
    plane(axes[0], sgd, gd, hl)
    growth(axes[1], sgd, gd, hl, args.summary)
    sched = args.summary.get("schedule", "") if args.summary else ""
    save_figure(fig, args, "Figure 4",
                "toy OLM, SGD+CLR vs GD+CLR" + (f" ({sched})" if sched else ""), fontsize=11)


if __name__ == "__main__":
    main()
