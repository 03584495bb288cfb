#!/usr/bin/env bash
# The main job at the quick scale: installs what is missing, builds, and reproduces Figure 5 on the
# CPU: trains a small Fixup ResNet and a small VGG on 1,000 CIFAR-10 images of labels {0,1} to a
# training loss below 1e-4, computes the top-20 eigenpairs of G and Sigma at theta* and the
# alignment alpha_k / lambda_k, and plots figures/fig5.png. Running it again reuses the finished
# runs and spectra and resumes an interrupted training run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
data=$(build/noisegeom data check >/dev/null 2>&1 && echo ok || true)
if [ -z "$data" ] && [ -z "${NOISEGEOM_DATA:-}" ]; then
  data/download_cifar10.sh
fi
build/noisegeom reproduce fig5 --scale quick --out . "$@"
echo "figure: figures/fig5.png; run directories: runs/quick_fig5_resnet, runs/quick_fig5_vgg" \
     "(spectrum/ in each)"
