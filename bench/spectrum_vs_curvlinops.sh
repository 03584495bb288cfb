#!/usr/bin/env bash
# Top-k eigenpairs of G at theta*: noisegeom (exact estimator, forward-mode Jv, Spectra Lanczos)
# against curvlinops (GGNLinearOperator + scipy eigsh), same run, samples, model, thread count,
# dtype and tolerance, on this machine. Prints both times, their ratio, both top eigenvalues and
# both max residuals |Au - lambda u|/|lambda|.
#   bench/spectrum_vs_curvlinops.sh [--model cnn|resnet] [--depth 20] [--width 16] [--n 2000]
#                                   [--k 20] [--threads 2] [--tol 1e-5] [--dtype float32]
#                                   [--run RUN_DIR]
# The model is first trained to theta* (loss < 1e-4, lr 0.1, batch 32) on n CIFAR-10 images of
# labels {0,1}; the run is kept in ~/.cache/noisegeom/bench-runs and reused (resumed if cut).
# --run takes an existing run directory instead (a cnn or resnet run, e.g.
# runs/quick_fig5_resnet from `reproduce fig5 --scale quick`), using its first n samples.
# Python side: ~/.cache/noisegeom/venv-bench (bench/python_env.sh: its own environment, torch
# pinned), with curvlinops-for-pytorch and scipy pip-installed there when missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
model=cnn depth=20 width=16 n=2000 k=20 threads=2 tol=1e-5 dtype=float32 run=
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --depth) depth=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --k) k=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --tol) tol=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --run) run=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
source "$root/bench/common.sh"
"$bin" data check "$data" >/dev/null

cache=${XDG_CACHE_HOME:-$HOME/.cache}/noisegeom
source "$root/bench/python_env.sh"
bench_python curvlinops-for-pytorch scipy numpy
bench_versions "$py"

# theta*: the model trained to a training loss below 1e-4 on the n images.
if [ -z "$run" ]; then
tag=$model$([ "$model" = resnet ] && echo "$depth-w$width" || true)-n$n
run=$cache/bench-runs/$tag
mkdir -p "$cache/bench-runs"
cfg=$cache/bench-runs/$tag.yaml
cat > "$cfg" <<YAML
name: $tag
seed: 0
device: cpu
threads: $threads
model: {name: $model, depth: $([ "$model" = resnet ] && echo "$depth" || echo 0), width: $([ "$model" = resnet ] && echo "$width" || echo 0)}
data: {source: cifar10, dir: "$data", classes: [0, 1], max_samples: $n}
train: {lr: 0.1, batch_size: 32, target_loss: 1.0e-4, max_steps: 200000, eval_every: 500,
        checkpoint_every: 2000}
YAML
status=$(sed -n 's/.*"status": "\([a-z_]*\)".*/\1/p' "$run/manifest.json" 2>/dev/null || true)
if [ "$status" != converged ]; then
  resume=()
  [ -f "$run/config.yaml" ] && resume=(--resume)
  "$build/noisegeom" train "$cfg" --out "$run" "${resume[@]}"
fi
fi
model=$(sed -n '/^model:/,/^[a-z]/s/^  name: "\{0,1\}\([a-z_]*\)"\{0,1\}$/\1/p' "$run/config.yaml")
depth=$(sed -n '/^model:/,/^[a-z]/s/^  depth: \([0-9]*\)$/\1/p' "$run/config.yaml")
[ "$depth" = 0 ] && depth=20

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=$threads
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Ours twice: with an explicit |Au - lambda u| product per pair (the spectrum command's default),
# and with the residuals of the Lanczos relation plus one explicit check (as eigsh reports them).
"$build/bench_gv" topk --run "$run" --k "$k" --n "$n" --tol "$tol" --dtype "$dtype" \
  --threads "$threads" --residuals explicit --dump "$work/data.pt" | tee "$work/ours.txt"
"$build/bench_gv" topk --run "$run" --k "$k" --n "$n" --tol "$tol" --dtype "$dtype" \
  --threads "$threads" --residuals krylov | tee "$work/ours_krylov.txt"
"$py" "$root/bench/curvlinops_topk.py" --run "$run" --data "$work/data.pt" \
  --k "$k" --tol "$tol" --dtype "$dtype" --threads "$threads" | tee "$work/theirs.txt"
/usr/bin/python3 - "$work/ours.txt" "$work/theirs.txt" "$model" "$depth" "$n" "$k" "$threads" \
  "$work/ours_krylov.txt" <<'PY'
import re, sys
def kv(path):
    d = {}
    for line in open(path):
        for m in re.finditer(r"(\w+)=([^\s]+)", line):
            d[m.group(1)] = m.group(2)
    return d
o, t = kv(sys.argv[1]), kv(sys.argv[2])
model, depth, n, k, threads = sys.argv[3:8]
ok = kv(sys.argv[8])
name = "CNN" if model == "cnn" else f"Fixup ResNet-{depth}"
ol = [float(v) for v in o["ours_eigenvalues"].split(",")]
tl = [float(v) for v in t["theirs_eigenvalues"].split(",")]
dev = max(abs(a - b) / abs(b) for a, b in zip(ol, tl))
so, st = float(o["ours_seconds"]), float(t["theirs_seconds"])
print(f"top-{k} of G, {name} at theta*, n = {n}, {threads} threads: "
      f"noisegeom {so:.1f}s ({o['matvecs']} matvecs)  curvlinops {st:.1f}s ({t['matvecs']} matvecs)  "
      f"ratio curvlinops/noisegeom {st / so:.2f}")
sk = float(ok["ours_seconds"])
print(f"  with Krylov residuals (+1 explicit check): noisegeom {sk:.1f}s ({ok['matvecs']} matvecs, "
      f"max residual {float(ok['ours_max_residual']):.2e})  ratio curvlinops/noisegeom {st / sk:.2f}")
print(f"  lambda_1: noisegeom {ol[0]:.8g}  curvlinops {tl[0]:.8g}  (max rel. difference over k: {dev:.2e})")
print(f"  max residual: noisegeom {float(o['ours_max_residual']):.2e}  curvlinops {float(t['theirs_max_residual']):.2e}")
PY
