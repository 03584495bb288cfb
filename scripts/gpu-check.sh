#!/usr/bin/env bash
# Everything worth seeing on a CUDA GPU, in GPU_CHECK_BUDGET seconds (default 7 minutes), ending with a table:
# the test suite on the CUDA build, the G v / training-pass ratio on the GPU, Figures 5 and 6 at
# the quick scale, and training speed of the paper's Figure 5 models.
#
# On the GPU machine (see ../shared/gpu/README.md):
#   bash .device/device-build.sh && NOISEGEOM_DATA=$PWD/.device/cifar-10-batches-bin scripts/gpu-check.sh
# Each stage has its own time limit, so one slow stage cannot eat the others' time.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${NOISEGEOM_BUILD:-$root/build-gpu}
out=${OUT:-/tmp/gpu-check}  # what comes back: gpu-check.log, the figures, escape summaries
work=${NOISEGEOM_GPU_WORK:-/tmp/gpu-check-work}
logs=$work/logs
mkdir -p "$out" "$work" "$logs"
# Plots need matplotlib, which the machine's PyTorch environment has.
export NOISEGEOM_PYTHON=${NOISEGEOM_PYTHON:-$(command -v python3)}

# The kit carries one real training batch (10,000 images) to stay under the transfer limit; the
# reader wants all five, so batches 2-5 repeat batch 1. Timings are unaffected; the figures here
# check the pipeline on the GPU, not the science (that is the CPU reproduction's job).
data="$work/cifar-10-batches-bin"
if [ ! -f "$data/data_batch_5.bin" ]; then
  src=${NOISEGEOM_DATA:?set NOISEGEOM_DATA to a CIFAR-10 directory}
  mkdir -p "$data"
  cp "$src"/data_batch_1.bin "$src"/batches.meta.txt "$data"/
  for k in 2 3 4 5; do
    [ -s "$src/data_batch_$k.bin" ] && cp "$src/data_batch_$k.bin" "$data/" ||
      ln -sf data_batch_1.bin "$data/data_batch_$k.bin"
  done
fi
export NOISEGEOM_DATA=$data

# The whole check ends within GPU_CHECK_BUDGET seconds (default 420): stages run in order of
# importance, each within its own limit and what is left of the budget.
budget=${GPU_CHECK_BUDGET:-420}
table=()
stage() {  # stage NAME LIMIT_S COMMAND...: runs it with a time limit, logs to $logs/NAME.log
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    table+=("$(printf '%-16s skipped (budget spent)' "$name")")
    return
  fi
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$logs/$name.log"
  table+=("$(printf '%-16s rc=%-4s %5ss' "$name" "$rc" "$((SECONDS - t0))")")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$build/noisegeom" --version

# One intra-op thread per test: one test per core, each with a thread per core, oversubscribes
# the cores tenfold.
stage ctest 110 env OMP_NUM_THREADS=1 ctest --test-dir "$build" -j "$(nproc)" --output-on-failure \
  --timeout 100
stage gv_ratio 45 bash -c "for m in cnn resnet; do for b in 32 256; do
  '$build/bench_gv' ratio --model \$m --depth 20 --batch \$b --n 2048 --reps 5 --device cuda \
    --data-dir '$data'; done; done"
stage fig5_quick 100 "$build/noisegeom" reproduce fig5 --scale quick --out "$work/repro" --quiet
stage fig6_quick 130 "$build/noisegeom" reproduce fig6 --scale quick --out "$work/repro" --quiet
# Paper scale: SGD steps per second of the Figure 5 models on the GPU (3,000 steps at most; the
# whole training is longer than this check).
for exp in fig5_resnet38 fig5_vgg13; do
  stage "$exp" 35 "$build/noisegeom" train "experiments/$exp.yaml" --out "$work/$exp" \
    --set train.max_steps=3000 --set train.eval_every=1000
done

cp "$work"/repro/figures/*.png "$out"/ 2>/dev/null || true
for r in "$work"/repro/runs/*/; do
  for e in "$r"/escapes/*/result.json; do
    [ -f "$e" ] && { echo "== $e"; cat "$e"; } >>"$out/escape_summaries.txt"
  done
done
for f in "$logs"/*.log; do echo "===== $f"; cat "$f"; done >"$out/gpu-check.log"
echo
echo "=== gpu-check summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null))"
printf '%s\n' "${table[@]}"
cd "$logs"
grep -h "ratio G v\|^Fixup\|^CNN" gv_ratio.log 2>/dev/null | sed 's/^ */  /'
grep -h "tests passed\|tests failed\|Failed\|\*\*\*" ctest.log 2>/dev/null | tail -n 12
grep -h "^  " fig5_quick.log fig6_quick.log 2>/dev/null
for exp in fig5_resnet38 fig5_vgg13; do
  grep -h "steps/s\|converged\|max_steps" "$exp.log" 2>/dev/null | tail -n 2
done
