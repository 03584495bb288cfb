#!/usr/bin/env bash
# The main job at the quick scale: installs what is missing, builds, and reproduces Figures 5 and
# 6 on the CPU. Figure 5: trains a small Fixup ResNet and a small VGG on 1,000 CIFAR-10 images of
# labels {0,1} to a training loss below 1e-4, computes the top-20 eigenpairs of G and Sigma at
# theta* and the alignment alpha_k / lambda_k, and plots figures/fig5.png. Figure 6: trains the
# paper's 4-layer CNN and FNN the same way, and runs 50 SGD escapes and one GD escape from each
# theta* (learning rates searched so that every run escapes), tracked along the top-20
# eigenvectors of G, into figures/fig6.png. Running it again reuses what is finished and resumes
# what was interrupted.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
data=$(build/noisegeom data check >/dev/null 2>&1 && echo ok || true)
if [ -z "$data" ] && [ -z "${NOISEGEOM_DATA:-}" ]; then
  data/download_cifar10.sh
fi
build/noisegeom reproduce fig5 --scale quick --out . "$@"
build/noisegeom reproduce fig6 --scale quick --out . "$@"
echo "figures: figures/fig5.png, figures/fig6.png; run directories: runs/quick_fig5_resnet," \
     "runs/quick_fig5_vgg (spectra/default in each), runs/quick_cnn, runs/quick_fig6_fnn" \
     "(spectra/default and escapes/gd, escapes/sgd in each); see one with" \
     "build/noisegeom show runs/quick_cnn"
