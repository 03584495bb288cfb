# Sourced by the bench scripts whose Python peer needs PyTorch 2 (curvlinops, torch.func):
# `bench_python PKG...` sets `py` to the Python of ~/.cache/noisegeom/venv-bench (or
# $NOISEGEOM_BENCH_VENV), creating it and pip-installing the missing packages there
# (bench_versions in bench/common.sh prints the versions). The benchmarks' environment is their
# own: the CUDA build's venv-cuda is only ever read (its torch is reused through a .pth file
# instead of fetching several GB again), and every install is constrained to the torch already
# there, so a peer can neither upgrade nor replace it.
bench_python() {
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/noisegeom
  local venv=${NOISEGEOM_BENCH_VENV:-$cache/venv-bench}
  local cuda_venv=${NOISEGEOM_VENV:-$cache/venv-cuda}
  if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip >/dev/null
  fi
  py=$venv/bin/python
  if ! "$py" -c 'import torch' 2>/dev/null; then
    local site cuda_site
    site=$("$py" -c 'import site; print(site.getsitepackages()[0])')
    cuda_site=$("$cuda_venv/bin/python" -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
    if [ -n "$cuda_site" ] && "$cuda_venv/bin/python" -c 'import torch' 2>/dev/null; then
      echo "$cuda_site" > "$site/noisegeom-venv-cuda.pth"
    else
      "$venv/bin/pip" install --quiet "torch==2.11.*" numpy
    fi
  fi
  local constraints
  constraints=$(mktemp)
  # Without the local label (2.11.0, not 2.11.0+cu130): the index has no "+cu130" to match, and
  # the torch already importable satisfies the plain version.
  "$py" -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' > "$constraints"
  local missing=()
  local pkg mod
  for pkg in "$@"; do
    mod=${pkg%%=*}; mod=${mod%%[<>]*}
    case "$mod" in
      curvlinops-for-pytorch) mod=curvlinops ;;
      scikit-learn) mod=sklearn ;;
    esac
    "$py" -c "import ${mod//-/_}" 2>/dev/null || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]} into $venv (torch pinned: $(cat "$constraints"))" >&2
    "$venv/bin/pip" install --quiet -c "$constraints" "${missing[@]}"
  fi
  rm -f "$constraints"
}
