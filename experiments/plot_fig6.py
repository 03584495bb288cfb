#!/usr/bin/env python3
"""Figure 6 of Wang & Wu: escape trajectories from theta* in the plane (p_{t,k}, r_{t,k}): the
component of theta_t - theta* along the top-k eigen-directions of G against the flat remainder.
One panel per (model, k); thin red curves for each SGD run and a bold red mean, blue for GD.
Reads only RUN_DIR/escapes/NAME/trajectories.csv and result.json for each --escapes NAME, and
RUN_DIR/spectra/NAME/summary.json.

    plot_fig6.py --out figures/fig6.png [--scale quick] [--spectrum default] [--escapes gd,sgd]
                 LABEL=RUN_DIR [LABEL=RUN_DIR ...]

|p_{t,1}| is drawn (p_{t,1} is signed, and GD past its stability edge flips its sign every step).
Each trajectory is drawn up to its escape (the first logged point whose loss exceeds the escape
threshold); the numbers in each panel are the medians over runs of r/|p| at that point, as each
sweep's result.json records them.
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plot_common import metric, metric_note, parse_args, read_csv, read_json, save_figure  # noqa: E402

COLORS = {"sgd": "tab:red", "gd": "tab:blue"}


def load_escape(run, sweeps):
    """Trajectories and records of the named sweeps (one per optimizer) of one run."""
    rows, summary = [], {}
    for name in sweeps:
        esc = os.path.join(run["dir"], "escapes", name)
        record = read_json(os.path.join(esc, "result.json"))
        summary[record["request"]["optimizer"]] = record
        rows += read_csv(os.path.join(esc, "trajectories.csv"))
    ks = sorted({int(c[2:]) for c in rows[0] if c.startswith("p_")}) if rows else []
    trajs = {}  # (optimizer, run) -> list of rows, by step
    for r in rows:
        trajs.setdefault((r["optimizer"], int(r["run"])), []).append(r)
    for t in trajs.values():
        t.sort(key=lambda r: int(r["step"]))
    return ks, trajs, summary


def up_to_escape(points, threshold):
    """The points of one trajectory up to and including its first escaped one."""
    out = []
    for r in points:
        loss = float(r["loss"]) if r["loss"] not in ("", "nan") else float("nan")
        if r[f"p_{1}"] in ("", "nan"):
            break
        out.append(r)
        if not loss <= threshold:
            break
    return out


def mean_curve(curves):
    """Mean over runs at each step index while at least half of the runs are still going."""
    length = sorted(len(c) for c in curves)[len(curves) // 2] if curves else 0
    mean = []
    for j in range(length):
        vals = [c[j] for c in curves if len(c) > j]
        mean.append((sum(v[0] for v in vals) / len(vals), sum(v[1] for v in vals) / len(vals)))
    return mean


def main():
    a, runs = parse_args(__doc__)
    loaded = [(run, *load_escape(run, a.escapes or ["gd", "sgd"])) for run in runs]
    ncols = max(len(ks) for _, ks, _, _ in loaded)
    fig, axes = plt.subplots(len(runs), ncols, figsize=(3.6 * ncols, 3.5 * len(runs)),
                             squeeze=False)
    for row, (run, ks, trajs, summary) in enumerate(loaded):
        spec = run["summary"]
        for col in range(ncols):
            ax = axes[row][col]
            if col >= len(ks):
                ax.axis("off")
                continue
            k = ks[col]
            for opt in ("sgd", "gd"):
                if opt not in summary:
                    continue
                threshold = summary[opt]["escape_criterion"]["threshold"]
                curves = []
                for (o, _), pts in sorted(trajs.items()):
                    if o != opt:
                        continue
                    pts = up_to_escape(pts, threshold)
                    c = [(abs(float(r[f"p_{k}"])), float(r[f"r_{k}"])) for r in pts]
                    if not c:
                        continue
                    curves.append(c)
                    if opt == "sgd":
                        ax.plot([v[0] for v in c], [v[1] for v in c], color=COLORS[opt], lw=0.5,
                                alpha=0.35)
                m = mean_curve(curves)
                if m:
                    label = f"{opt.upper()} (lr {summary[opt]['lr']:.3g}"
                    label += f", mean of {len(curves)})" if opt == "sgd" else ")"
                    ax.plot([v[0] for v in m], [v[1] for v in m], color=COLORS[opt], lw=2.2,
                            label=label)
            lim = max(ax.get_xlim()[1], ax.get_ylim()[1])
            ax.plot([0, lim], [0, lim], color="0.6", lw=0.7, ls=":")
            ax.set_xlim(0, None)
            ax.set_ylim(0, None)
            ax.set_xlabel(r"$|p_{t,1}|$" if k == 1 else f"$p_{{t,{k}}}$")
            ax.set_ylabel(f"$r_{{t,{k}}}$")
            # The sweep's own record holds the median r/|p| at escape per k (computed with the runs).
            text = ", ".join(
                f"{o.upper()} {rec['median_r_over_p_at_escape'][rec['request']['ks'].index(k)]:.3g}"
                for o, rec in summary.items() if k in rec["request"]["ks"])
            ax.set_title(f"{run['label']}, k = {k}\nmedian r/|p| at escape: {text}", fontsize=8)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.legend(fontsize=7, loc="upper left")
                crit = next(iter(summary.values()))["escape_criterion"]
                ax.text(0.98, 0.03,
                        f"p = {spec['p']:,}\nsrk(G$^2$) = {metric(spec, 'srk_G2')} "
                        f"({metric_note(spec)})\n"
                        f"escape: L > {crit['escape_factor']:g} L(θ*)",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.3")
    save_figure(fig, a, "Figure 6", "escape from θ* along sharp (p) and flat (r) directions")


if __name__ == "__main__":
    main()
