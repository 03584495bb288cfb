"""Readers shared by the plot scripts: they use only a run directory's CSV and JSON files.

A run directory holds named analyses: RUN/spectra/NAME/ (eigenvalues.csv, alignment.csv,
summary.json) and RUN/escapes/NAME/ (trajectories.csv, result.json)."""
import argparse
import csv
import json
import os
import textwrap


def parse_args(description, load_spectra=True):
    """The arguments reproduce passes. With load_spectra=False (figures drawn from their
    --summary and their runs' own files) each run is only {"label", "dir"}."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", required=True, help="PNG file to write")
    ap.add_argument("--scale", default="", help="quick or paper (shown in the title)")
    ap.add_argument("--summary", default="",
                    help="the figure's numbers, OUT/figures/FIGURE.json, written by reproduce")
    ap.add_argument("--spectrum", default="default",
                    help="the spectrum to plot: RUN_DIR/spectra/NAME (default: default)")
    ap.add_argument("--escapes", default="",
                    help="comma-separated escape sweeps: RUN_DIR/escapes/NAME for each")
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR",
                    help="a run directory with the named spectrum, and its label")
    a = ap.parse_args()
    a.escapes = [e for e in a.escapes.split(",") if e]
    runs = []
    for item in a.runs:
        if "=" not in item:
            ap.error(f"expected LABEL=RUN_DIR, got {item!r}")
        label, path = item.split("=", 1)
        runs.append(load_run(label, path, a.spectrum) if load_spectra
                    else {"label": label, "dir": path})
    a.summary = read_json(a.summary) if a.summary else {}
    return a, runs


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_run(label, run_dir, spectrum="default"):
    spec = os.path.join(run_dir, "spectra", spectrum)
    align = read_csv(os.path.join(spec, "alignment.csv"))
    eig = read_csv(os.path.join(spec, "eigenvalues.csv"))
    run = {
        "label": label,
        "dir": run_dir,
        "summary": read_json(os.path.join(spec, "summary.json")),
        "k": [int(r["k"]) for r in align],
        "lambda": [float(r["lambda"]) for r in align],
        "alpha": [float(r["alpha"]) for r in align],
        "g": [float(r["g"]) for r in align],
        "spectra": {},
    }
    for r in eig:
        run["spectra"].setdefault(r["matrix"], []).append(float(r["eigenvalue"]))
    manifest = os.path.join(run_dir, "manifest.json")
    run["manifest"] = read_json(manifest) if os.path.exists(manifest) else {}
    return run


def metric(summary, key, fmt=".3g"):
    """A spectrum's number as the figures show it: "1.88" when exact (from the per-sample rows or
    the Gram matrix), "1.65 ± 0.23" when a Hutchinson estimate (its standard error beside it)."""
    value = summary.get(key)
    if value is None:
        return "n/a"
    se = summary.get(key + "_se", 0) or 0
    if summary.get("metrics_method") == "hutchinson" and se > 0:
        return f"{value:{fmt}} ± {se:.2g}"
    return f"{value:{fmt}}"


def metric_note(summary):
    """Where the numbers from metric() come from, for a figure's footnote."""
    if summary.get("metrics_method") == "hutchinson":
        return f"Hutchinson, {summary.get('hutchinson_probes', '?')} probes, ± 1 s.e."
    return "exact"


def l1_normalised(values):
    total = sum(abs(v) for v in values)
    return [v / total for v in values] if total > 0 else values


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def describe(run):
    """One line: model, parameter count, samples, loss."""
    s, m = run["summary"], run["manifest"]
    model = "\n".join(textwrap.wrap(m.get("model", run["label"]), 48))
    return (f"{model}\np = {s['p']:,}, {s['estimator']} on {s['samples']} of {s['n_train']} "
            f"samples\nL = {s['loss']:.3g}, {s['dtype']}")


def save_figure(fig, args, figure, subject, fontsize=12):
    """Titles the figure "Figure N (scale): subject", lays it out and writes args.out."""
    scale = f" ({args.scale} scale)" if args.scale else ""
    fig.suptitle(f"{figure}{scale}: {subject}", fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")
