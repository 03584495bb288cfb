#!/usr/bin/env bash
# Builds noisegeom (installing what is missing) and runs the whole test suite: the CPU build, then
# the CUDA build (compiled and linked against LibTorch 2.11; its tests run on the CPU) when nvcc is
# available. CI runs exactly this.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

scripts/setup.sh
echo "== tests: CPU build (LibTorch $(sed -n 's/^#define TORCH_VERSION_MAJOR //p' /usr/include/torch/csrc/api/include/torch/version.h 2>/dev/null).x) =="
ctest --test-dir build --output-on-failure -j "$(nproc)"

command -v nvcc >/dev/null || [ ! -x /usr/local/cuda/bin/nvcc ] || export PATH=/usr/local/cuda/bin:$PATH
if command -v nvcc >/dev/null; then
  scripts/setup.sh --cuda
  echo "== tests: CUDA build (LibTorch 2.11, run on the CPU: no GPU here) =="
  ctest --test-dir build-cuda --output-on-failure -j "$(nproc)"
else
  echo "== CUDA build SKIPPED: nvcc not found (install the CUDA toolkit to build the CUDA path) =="
fi
