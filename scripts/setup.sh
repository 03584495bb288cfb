#!/usr/bin/env bash
# Installs what is missing (Debian packages; for --cuda also PyTorch's LibTorch in a virtual
# environment) and builds noisegeom. Idempotent: a second run only rebuilds what changed.
#   scripts/setup.sh          CPU build into build/ (binary: build/noisegeom)
#   scripts/setup.sh --cuda   CUDA build into build-cuda/ against LibTorch 2.11 from the torch wheel
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }

cuda=0
[ "${1:-}" = "--cuda" ] && cuda=1

pkgs=(cmake ninja-build g++ git pkg-config ccache libtorch-dev libspectra-dev libyaml-cpp-dev libfmt-dev
      libgtest-dev libgmock-dev libeigen3-dev nlohmann-json3-dev libgloo-dev
      libcli11-dev libssl-dev libopenblas-dev python3-torch python3-matplotlib
      python3-numpy python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

jobs=${NOISEGEOM_JOBS:-$(nproc)}
# Paths relative to the checkout let the compiler cache serve fresh clones (CI) too.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
if [ "$cuda" -eq 0 ]; then
  build=${NOISEGEOM_BUILD_DIR:-build}
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j "$jobs"
  log "built $build/noisegeom ($("$build"/noisegeom --version))"
  exit 0
fi

# CUDA build: LibTorch 2.11 as PyTorch ships it, with the machine's CUDA toolkit. The environment
# lives outside the checkout so that fresh clones (CI) reuse it instead of fetching 4 GB again.
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || { log "nvcc not found: cannot make the CUDA build"; exit 1; }
venv=${NOISEGEOM_VENV:-$HOME/.cache/noisegeom/venv-cuda}
torch_spec=${NOISEGEOM_TORCH:-torch==2.11.*}
if ! "$venv/bin/python" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.11") else 1)' 2>/dev/null; then
  log "installing $torch_spec into $venv (once; several GB)"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q "$torch_spec" numpy
fi
torch_prefix=$("$venv/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
build=${NOISEGEOM_BUILD_DIR:-build-cuda}
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
  >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$jobs"
log "built $build/noisegeom ($("$build"/noisegeom --version))"
