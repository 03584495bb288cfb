#!/usr/bin/env bash
# The main job at the quick scale: installs what is missing, builds, and trains the paper's CNN on
# 1,000 CIFAR-10 images of labels {0,1} to a training loss below 1e-4 on the CPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
data=$(build/noisegeom data check >/dev/null 2>&1 && echo ok || true)
if [ -z "$data" ] && [ -z "${NOISEGEOM_DATA:-}" ]; then
  data/download_cifar10.sh
fi
resume=()
[ -f runs/quick_cnn/config.yaml ] && resume=(--resume)  # a second demo run continues, loses nothing
build/noisegeom train experiments/quick_cnn.yaml --out runs/quick_cnn "${resume[@]}" "$@"
echo "run directory: runs/quick_cnn (manifest.json, train_log.csv, theta.pt)"
