#!/usr/bin/env bash
# The exact spectrum of a trained run: `noisegeom spectrum --estimator exact` (top-k of G and
# Sigma, alpha_k, mu, |G|_F, srk(G), srk(G^2), all exact, float64) against the same computation in
# PyTorch for Python with torch.func (vmap(jacrev) per-sample Jacobians, Gram matrices, eigh:
# bench/exact_spectrum_torchfunc.py) on the same samples, parameters, dtype and thread count.
# Prints both times (from the samples in memory to every number), their ratio and the largest
# relative differences of the numbers.
#   bench/exact_vs_torchfunc.sh [--run runs/quick_cnn] [--k 20] [--threads 2] [--dtype float64]
# The run defaults to runs/quick_cnn (trained first with experiments/quick_cnn.yaml when missing).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run=$root/runs/quick_cnn k=20 threads=2 dtype=float64
while [ $# -gt 0 ]; do
  case "$1" in
    --run) run=$2; shift 2 ;;
    --k) k=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
# The Python side runs from bench/: a relative run directory must not change meaning there.
run=$(realpath -m "$run")
source "$root/bench/common.sh"
source "$root/bench/python_env.sh"
"$bin" data check "$data" >/dev/null
bench_python numpy
export OMP_NUM_THREADS=$threads
bench_versions "$py"
if [ ! -f "$run/theta.pt" ]; then
  "$bin" train "$root/experiments/quick_cnn.yaml" --out "$run" --data-dir "$data"
fi

name=bench-exact-$$
trap 'rm -rf "$run/spectra/$name"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" spectrum "$run" --name "$name" --estimator exact --dtype "$dtype" --k "$k" \
  --matrices G,Sigma --data-dir "$data"
(cd "$root/bench" && "$py" exact_spectrum_torchfunc.py --run "$run" --data-dir "$data" --k "$k" \
  --threads "$threads" --dtype "$dtype") | tee "$run/spectra/$name/theirs.txt"
/usr/bin/python3 - "$run/spectra/$name" "$threads" <<'PY'
import csv, json, re, sys
d, threads = sys.argv[1], sys.argv[2]
s = json.load(open(f"{d}/summary.json"))
t = {}
for line in open(f"{d}/theirs.txt"):
    for m in re.finditer(r"theirs_(\w+)=([^\s]+)", line):
        t[m.group(1)] = m.group(2)
eig = {}
for r in csv.DictReader(open(f"{d}/eigenvalues.csv")):
    eig.setdefault(r["matrix"], []).append(float(r["eigenvalue"]))
alpha = [float(r["alpha"]) for r in csv.DictReader(open(f"{d}/alignment.csv"))]
def rel(ours, theirs):
    return max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))
tg = [float(v) for v in t["G"].split(",")]
ts = [float(v) for v in t["Sigma"].split(",")]
ta = [float(v) for v in t["alpha"].split(",")]
so, st = s["seconds"], float(t["seconds"])
print(f"exact spectrum (top-{s['k']} of G and Sigma, metrics {s['metrics_method']}), n = {s['samples']}, "
      f"p = {s['p']}, {s['dtype']}, {threads} threads: noisegeom {so:.2f}s "
      f"(solver {s['solver']}, storage {s['spectra']['G'].get('storage', '?')})  torch.func {st:.2f}s  "
      f"ratio torch.func/noisegeom {st / so:.2f}")
print(f"  max rel. difference: G eigenvalues {rel(eig['G'], tg):.1e}, Sigma {rel(eig['Sigma'], ts):.1e}, "
      f"alpha {rel(alpha, ta):.1e}, mu {abs(s['mu'] - float(t['mu'])) / float(t['mu']):.1e}, "
      f"srk(G^2) {abs(s['srk_G2'] - float(t['srk_G2'])) / float(t['srk_G2']):.1e}")
print(f"  max residual: noisegeom {s['max_residual']:.1e}  torch.func {float(t['max_residual']):.1e}")
PY
