#!/usr/bin/env bash
# Cost of one exact G v over n samples (forward-mode Jv + one VJP per batch; and the
# double-backward R-op) divided by the cost of one forward+backward training pass over the same
# n samples, for the CNN and a Fixup ResNet-20 at batch 32 and 256 (goal: <= 2).
#   bench/gv_vs_training.sh [--n 1024] [--threads 2] [--reps 5]
# Uses real CIFAR-10 {0,1} when $NOISEGEOM_DATA or data/cifar-10-batches-bin holds it, else
# Gaussian images (the cost does not depend on the pixel values).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n=1024 threads=2 reps=5
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
source "$root/bench/common.sh"
export OMP_NUM_THREADS=$threads
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for model in cnn resnet; do
  for batch in 32 256; do
    "$build/bench_gv" ratio --model "$model" --depth 20 --batch "$batch" --n "$n" \
      --threads "$threads" --reps "$reps" --data-dir "$data"
  done
done
