# Sourced by the bench scripts: sets `build` ($NOISEGEOM_BUILD, else build/; noisegeom and
# bench_gv are built there first when missing), `bin` (its noisegeom) and `data` (the CIFAR-10
# directory; `"$bin" data check "$data"` where it is required).
root=${root:?set root before sourcing bench/common.sh}
build=${NOISEGEOM_BUILD:-$root/build}
if [ ! -x "$build/bench_gv" ] || [ ! -x "$build/noisegeom" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" --target noisegeom bench_gv -j"$(nproc)"
fi
bin=$build/noisegeom
data=${NOISEGEOM_DATA:-$root/data/cifar-10-batches-bin}

# Both sides' versions, printed by every benchmark before its numbers: `bench_versions PYTHON`.
bench_versions() {
  echo "C++ side: $("$bin" --version), OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
  echo "Python side: $("$1" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__} from {torch.__file__.rsplit(chr(47), 2)[0]}")')"
}
