#!/usr/bin/env bash
# Escape steps per second: `noisegeom escape --optimizer sgd` (N runs, concurrent workers on
# model replicas) against the same loop in PyTorch for Python (bench/escape_pytorch.py: the same
# model at the same theta*, samples, lr, batch, steps, logging of loss and p_k/r_k), on this
# machine with the same thread count. Prints both rates and their ratio (C++/Python).
#   bench/escape_vs_pytorch.sh [--run RUN_DIR] [--runs 8] [--steps 200] [--lr 0.05]
#                              [--log-every 10] [--threads 2]
# RUN_DIR needs theta.pt and spectra/default/ (e.g. runs/quick_cnn after `reproduce fig6 --scale
# quick`); without --run the CNN of experiments/quick_cnn.yaml is trained and its spectrum
# computed once into ~/.cache/noisegeom/bench-runs/escape-cnn. The lr is below the escape
# threshold by default so that both sides do the same finite work.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run= runs=8 steps=200 lr=0.05 log_every=10 threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --run) run=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --lr) lr=$2; shift 2 ;;
    --log-every) log_every=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
source "$root/bench/common.sh"
"$bin" data check "$data" >/dev/null
export OMP_NUM_THREADS=$threads
if [ -z "$run" ]; then
  run=${XDG_CACHE_HOME:-$HOME/.cache}/noisegeom/bench-runs/escape-cnn
  if [ ! -f "$run/theta.pt" ]; then
    "$bin" train "$root/experiments/quick_cnn.yaml" --out "$run" --data-dir "$data" --quiet \
      $([ -f "$run/config.yaml" ] && echo --resume)
  fi
  [ -f "$run/spectra/default/eigenvectors.pt" ] ||
    "$bin" spectrum "$run" --k 20 --matrices G --estimator exact --dtype float32 --probes 20 \
      --data-dir "$data" --quiet
fi
for f in theta.pt config.yaml samples.csv spectra/default/eigenvectors.pt spectra/default/summary.json; do
  [ -f "$run/$f" ] || { echo "escape_vs_pytorch: $run/$f: missing" >&2; exit 1; }
done
# Our sweep writes RUN_DIR/escapes/sgd/: it runs on a copy so the run itself is left as it was.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/run/spectra/default"
cp "$run"/{theta.pt,config.yaml,samples.csv,manifest.json} "$work/run/" 2>/dev/null || true
cp "$run"/spectra/default/* "$work/run/spectra/default/"
"$bin" escape "$work/run" --optimizer sgd --runs "$runs" --steps "$steps" --lr "$lr" \
  --log-every "$log_every" --data-dir "$data" --quiet
cpp=$(/usr/bin/python3 -c 'import json,sys; s=json.load(open(sys.argv[1]));
print(s["runs"] * int(sys.argv[2]) / s["sweep_wall_seconds"])' "$work/run/escapes/sgd/result.json" \
  "$steps")
bench_versions /usr/bin/python3
py=$(cd "$root/bench" && /usr/bin/python3 escape_pytorch.py --run "$work/run" --data-dir "$data" \
      --runs "$runs" --steps "$steps" --lr "$lr" --log-every "$log_every" --threads "$threads" |
     sed -n 's/^steps_per_second=\([0-9.]*\).*/\1/p')
/usr/bin/python3 - "$runs" "$steps" "$threads" "$cpp" "$py" <<'PY'
import sys
runs, steps, threads, cpp, py = sys.argv[1:]
print(f"escape SGD steps/s, {runs} runs x {steps} steps, {threads} threads: "
      f"noisegeom {float(cpp):.1f}  PyTorch(Python) {float(py):.1f}  "
      f"ratio {float(cpp) / float(py):.2f}")
PY
