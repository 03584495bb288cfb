#!/usr/bin/env bash
# Training steps per second: `noisegeom train` against the same loop in PyTorch for Python
# (Debian's python3-torch, the same LibTorch 1.13 and OpenBLAS underneath), same model, samples,
# batch, steps and thread count, on this machine. Prints both rates and their ratio (C++/Python).
#   bench/train_vs_pytorch.sh [--model cnn|resnet] [--depth 20] [--steps 1500] [--threads 2]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
model=cnn depth=20 steps=1500 threads=2 samples=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --depth) depth=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
source "$root/bench/common.sh"
"$bin" data check "$data" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/bench.yaml" <<YAML
name: bench
seed: 0
device: cpu
threads: $threads
model: {name: $model, depth: $([ "$model" = resnet ] && echo "$depth" || echo 0)}
data: {source: cifar10, dir: "$data", classes: [0, 1], max_samples: $samples}
train: {lr: 0.1, batch_size: 32, max_steps: $steps, eval_every: $steps, target_loss: 0,
        checkpoint_every: 1000000}
YAML
export OMP_NUM_THREADS=$threads
"$bin" train "$work/bench.yaml" --out "$work/run" --quiet
# The C++ rate: steps between the step-0 and final evaluations, plus the final evaluation.
cpp=$(tail -n 1 "$work/run/train_log.csv" | awk -F, '{print $NF}')
bench_versions /usr/bin/python3
py=$(/usr/bin/python3 "$root/bench/train_pytorch.py" --run "$work/run" --data-dir "$data" \
      --model "$model" --depth "$depth" --steps "$steps" --threads "$threads" |
     sed -n 's/^steps_per_second=\([0-9.]*\).*/\1/p')
/usr/bin/python3 - "$model" "$depth" "$steps" "$threads" "$cpp" "$py" <<'PY'
import sys
model, depth, steps, threads, cpp, py = sys.argv[1:]
name = model if model != "resnet" else f"Fixup ResNet-{depth}"
print(f"train steps/s, {name}, batch 32, {steps} steps, {threads} threads: "
      f"noisegeom {float(cpp):.1f}  PyTorch(Python) {float(py):.1f}  ratio {float(cpp)/float(py):.2f}")
PY
