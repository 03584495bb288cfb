#!/usr/bin/env bash
# Everything worth seeing on a CUDA GPU within GPU_CHECK_BUDGET seconds (default 420), ending with a
# table, stages in order of importance:
#   1. the test suite on the CUDA build;
#   2. per-sample rows of 1,000 images batched against the one-sample loop (CNN, ResNet-8: the one
#      acceptance line of issue 10 that needs a GPU);
#   3. training steps/s at batch 32 for ResNet-38, VGG-13 and VGG-19: noisegeom with CUDA graphs
#      (train.cuda_graphs, the default) and without, against the same loop in PyTorch for Python
#      (bench/train_pytorch.py), eager and torch.compile(mode="reduce-overhead"), on the same GPU
#      and the same samples;
#   4. SGD escape steps/s, 50 runs on the ResNet-38 run of stage 3: batched replicas with CUDA
#      graphs (the default), without graphs, and one run at a time (--replicas 1);
#   5. matvecs/s of the exact operator G v (ResNet-38, bench_gv);
#   6. as much of the paper-scale Figure 5 as the rest of the budget allows (reproduce --budget),
#      continuing what an earlier call left in GPU_CHECK_PAPER_DIR.
# GPU_CHECK_STAGES picks some of them by name (default all: ctest,rows,train,escape,gv,paper), e.g.
# GPU_CHECK_STAGES=rows for issue 10's line alone in about a minute after the build.
#
# On the GPU machine (see ../shared/gpu/README.md):
#   bash .device/device-build.sh && NOISEGEOM_DATA=$PWD/.device/cifar-10-batches-bin scripts/gpu-check.sh
# or, after scripts/setup.sh --cuda: NOISEGEOM_BUILD=build-cuda scripts/gpu-check.sh
# Settings (environment): GPU_CHECK_BUDGET (seconds), GPU_CHECK_STEPS (timed training steps per
# model, default 600), GPU_CHECK_COMPILE=0 (no torch.compile rows), GPU_CHECK_QUICK=1 (also
# Figures 5 and 6 at the quick scale), GPU_CHECK_PAPER_DIR (default $NOISEGEOM_BUILD/paper: kept
# between calls on one machine, and copied to $OUT/paper-fig5 so that a later machine can be
# given it back), GPU_CHECK_PYTHON (a Python with PyTorch for CUDA), and NOISEGEOM_TRAIN_VARIANTS:
# the other noisegeom rows, "LABEL=--set KEY=VALUE ...;LABEL2=..." (default: graphs off, i.e.
# "no_graphs=--set train.cuda_graphs=false").
# Exit status: 1 when there is no GPU or no CUDA build, else 0 (each stage's status is in the table).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
build=${NOISEGEOM_BUILD:-$root/build-gpu}
out=${OUT:-/tmp/gpu-check}  # what comes back: gpu-check.log, the table, paper-scale runs
work=${NOISEGEOM_GPU_WORK:-/tmp/gpu-check-work}
paper=${GPU_CHECK_PAPER_DIR:-$build/paper}
budget=${GPU_CHECK_BUDGET:-420}
steps=${GPU_CHECK_STEPS:-600}
venv_py=${NOISEGEOM_VENV:-$HOME/.cache/noisegeom/venv-cuda}/bin/python
py=${GPU_CHECK_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$venv_py" ]; then py=$venv_py; else py=$(command -v python3); fi
fi
die() { echo "gpu-check: $*" >&2; exit 1; }

# Without a GPU, or with a CPU build, nothing here means anything: say so and stop.
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  die "no NVIDIA GPU here (nvidia-smi finds none); run this on a CUDA machine"
fi
[ -x "$build/noisegeom" ] ||
  die "$build/noisegeom is missing: build it (bash .device/device-build.sh, or scripts/setup.sh --cuda and NOISEGEOM_BUILD=build-cuda)"
version=$("$build/noisegeom" --version)
grep -q "CUDA build" <<<"$version" || die "$build/noisegeom is a CPU build ($version)"
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
  die "$py has no PyTorch that sees the GPU (set GPU_CHECK_PYTHON)"
mkdir -p "$out" "$work" "$paper"
logs=$work/logs
mkdir -p "$logs"
# Plots need matplotlib, which the machine's PyTorch environment has.
export NOISEGEOM_PYTHON=${NOISEGEOM_PYTHON:-$(command -v python3)}

# The kit carries labels 0 and 1 of all five training files by default (Figure 5's exact data);
# with --batch1 it carries data_batch_1.bin only, and batches 2-5 repeat it here (timings hold).
data="$work/cifar-10-batches-bin"
if [ ! -f "$data/data_batch_5.bin" ]; then
  src=${NOISEGEOM_DATA:?set NOISEGEOM_DATA to a CIFAR-10 directory}
  mkdir -p "$data"
  cp "$src"/data_batch_1.bin "$src"/batches.meta.txt "$data"/
  for k in 2 3 4 5; do
    if [ -s "$src/data_batch_$k.bin" ]; then cp "$src/data_batch_$k.bin" "$data/"
    else ln -sf data_batch_1.bin "$data/data_batch_$k.bin"; fi
  done
fi
export NOISEGEOM_DATA=$data

want() {  # want NAME: whether GPU_CHECK_STAGES names stage NAME
  [[ ",${GPU_CHECK_STAGES:-ctest,rows,train,escape,gv,paper}," == *",$1,"* ]]
}
stages=()   # "name rc seconds" per stage
results=()  # lines of the closing table
stage() {  # stage NAME LIMIT_S COMMAND...: runs it within LIMIT_S and what is left of the budget
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    stages+=("$(printf '%-22s skipped (budget spent)' "$name")")
    return 1
  fi
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*"
  # SIGTERM first: noisegeom checkpoints on it; a job that cannot stop gets killed 20 s later.
  timeout -k 20 "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  tail -n 8 "$logs/$name.log"
  stages+=("$(printf '%-22s rc=%-4s %5ss' "$name" "$rc" "$((SECONDS - t0))")")
  return "$rc"
}

gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)
torch_version=$("$py" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')
echo "gpu-check: $gpu | $version | Python PyTorch $torch_version | budget ${budget}s"

# 1. The suite, one intra-op thread per test (a test per core, each with a thread per core,
# oversubscribes the cores tenfold).
want ctest && stage ctest 150 env OMP_NUM_THREADS=1 ctest --test-dir "$build" -j "$(nproc)" --output-on-failure \
  --timeout 140
if want ctest; then
  tests=$(grep -h "tests passed" "$logs/ctest.log" 2>/dev/null | tail -n 1)
  results+=("test suite (CUDA build): ${tests:-see $logs/ctest.log}")
fi

# 2. Per-sample rows of 1,000 images (issue 10's goal: batched at least 10x the one-sample
# loop), float32, the loop timed on 100 samples and scaled.
for m in cnn resnet; do
  want rows || break
  stage "rows_$m" 90 "$build/bench_gv" rows --model "$m" --depth 8 --n 1000 --loop-n 100 \
    --dtype float32 --device cuda --data-dir "$data" || true
  # bench_gv prints "batched: 0.123s on 1 threads   loop: 4.567s on 1 threads (...)   ratio
  # loop / batched = 37.1".
  line=$(sed -n 's/^ *batched: \([0-9.]*s\)[^:]*loop: \([0-9.]*s\).*= \([0-9.]*\)$/batched \1, loop \2: \3x/p' \
    "$logs/rows_$m.log" 2>/dev/null)
  results+=("per-sample rows, $m (ResNet-8 for resnet), 1,000 images, float32: ${line:-see $logs/rows_$m.log}")
done

# 3. Training speed. Each side times the second half of the steps plus one full-loss evaluation
# (noisegeom: the train_log.csv row at the last step; PyTorch: --warmup, then the timed loop), so
# start-up, cuDNN's first calls and torch.compile's compilation are not counted.
declare -A models=(
  [resnet38]="{name: resnet, depth: 38, width: 16}"
  [vgg13]="{name: vgg, depth: 13, width: 16, head_width: 128}"
  [vgg19]="{name: vgg, depth: 19, width: 64, head_width: 128}"
)
half=$((steps / 2))
train_config() {  # train_config MODEL FILE
  cat >"$2" <<YAML
name: speed_$1
seed: 0
device: cuda
model: ${models[$1]}
data: {source: cifar10, classes: [0, 1], max_samples: 0}
train: {lr: 0.1, batch_size: 32, loss: mse, max_steps: $steps, eval_every: $half, eval_batch: 2000,
        target_loss: 0, divergence_factor: 1.0e30, checkpoint_every: 1000000}
YAML
}
ng_rate() {  # the steps_per_second column of the last train_log.csv row
  tail -n 1 "$1/train_log.csv" 2>/dev/null | awk -F, '{print $NF}'
}
py_rate() {  # py_rate RUN LOG [ARGS]: bench/train_pytorch.py's steps/s on the GPU
  local run=$1 log=$2
  shift 2
  (cd "$root/bench" && timeout -k 20 "$((budget - SECONDS > 15 ? budget - SECONDS : 15))" \
    "$py" train_pytorch.py --run "$run" --data-dir "$data" --model run --device cuda \
    --steps "$half" "$@") >"$log" 2>&1
  sed -n 's/^steps_per_second=\([0-9.]*\).*/\1/p' "$log"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }'; }
IFS=';' read -r -a variants <<<"${NOISEGEOM_TRAIN_VARIANTS-no_graphs=--set train.cuda_graphs=false}"
speed_rows=()
for m in resnet38 vgg13 vgg19; do
  want train || break
  cfg="$work/speed_$m.yaml"
  train_config "$m" "$cfg"
  rm -rf "$work/speed_$m"
  stage "train_$m" 120 "$build/noisegeom" train "$cfg" --out "$work/speed_$m" || true
  ng=$(ng_rate "$work/speed_$m")
  extra=""
  for v in "${variants[@]}"; do
    [ -n "$v" ] || continue
    label=${v%%=*}
    read -r -a args <<<"${v#*=}"
    rm -rf "$work/speed_${m}_$label"
    stage "train_${m}_$label" 120 "$build/noisegeom" train "$cfg" --out "$work/speed_${m}_$label" \
      "${args[@]}" || true
    extra+=" $label $(ng_rate "$work/speed_${m}_$label")"
  done
  eager="" compiled=""
  if [ -f "$work/speed_$m/samples.csv" ] && [ $((budget - SECONDS)) -gt 30 ]; then
    eager=$(py_rate "$work/speed_$m" "$logs/pytorch_eager_$m.log" --warmup "$half")
  fi
  speed_rows+=("$m|${ng:--}|${eager:--}|$extra")
done
# torch.compile last: its compilation takes the longest, and the other numbers matter more.
if want train && [ "${GPU_CHECK_COMPILE:-1}" = 1 ]; then
  for k in "${!speed_rows[@]}"; do
    IFS='|' read -r m ng eager extra <<<"${speed_rows[$k]}"
    compiled=""
    if [ -f "$work/speed_$m/samples.csv" ] && [ $((budget - SECONDS)) -gt 60 ]; then
      # 2 epochs of 313 steps: both batch shapes are compiled and recorded before the timing.
      compiled=$(py_rate "$work/speed_$m" "$logs/pytorch_compile_$m.log" \
        --compile reduce-overhead --warmup 640)
    fi
    speed_rows[k]="$m|$ng|$eager|$extra|${compiled:--}"
  done
fi
if want train; then
  results+=("training steps/s, batch 32, $half timed steps + one evaluation (10,000 images);")
  results+=("noisegeom with CUDA graphs, the variants in brackets:")
  results+=("$(printf '  %-9s %10s %14s %16s %9s %11s' model noisegeom pytorch-eager pytorch-compile \
    ng/eager ng/compile)")
fi
for row in "${speed_rows[@]}"; do
  IFS='|' read -r m ng eager extra compiled <<<"$row"
  results+=("$(printf '  %-9s %10s %14s %16s %9s %11s%s' "$m" "$ng" "$eager" "${compiled:--}" \
    "$(ratio "$ng" "$eager")" "$(ratio "$ng" "${compiled:-0}")" "${extra:+  (noisegeom$extra)}")")
done

# 4. Escapes: 50 SGD runs from the ResNet-38 run's end (its spectrum is computed first), batched
# with graphs (the default), batched without graphs, and one run at a time.
run=$work/speed_resnet38
escape_rate() {  # escape_rate NAME: "N runs, S steps in Ts: R steps/s" of RUN/escapes/NAME
  python3 - "$run/escapes/$1" <<'PY' 2>/dev/null
import csv, json, sys
d = sys.argv[1]
r = json.load(open(f"{d}/result.json"))
steps = sum(int(row["steps"]) for row in csv.DictReader(open(f"{d}/summary.csv")))
print(f"{r['runs']} runs, {steps} steps in {r['sweep_wall_seconds']:.1f}s: "
      f"{steps / r['sweep_wall_seconds']:.0f} steps/s")
PY
}
if want escape && [ -f "$run/theta.pt" ]; then
  for v in "speed|" "speed_nographs|--cuda-graphs off" "speed_single|--replicas 1"; do
    name=${v%%|*}
    read -r -a args <<<"${v#*|}"
    rm -rf "$run/escapes/$name"
    stage "escape_50_$name" 120 "$build/noisegeom" escape "$run" --optimizer sgd --name "$name" \
      --runs 50 --steps 200 --lr 0.05 --ks 1,5 --log-every 50 --batch 32 "${args[@]}" || true
    line=$(escape_rate "$name")
    results+=("SGD escapes on ResNet-38 (batch 32, lr 0.05${args[*]:+, ${args[*]}}): ${line:-failed, see $logs/escape_50_$name.log}")
  done
fi

# 5. The exact operator: one G v over n samples, and its cost in training passes.
want gv && stage gv_resnet38 90 "$build/bench_gv" ratio --model resnet --depth 38 --batch 256 --n 2048 \
  --reps 5 --device cuda --data-dir "$data" || true
# bench_gv prints "exact G v (METHOD) over n: 0.1234s   ratio G v / training pass = 1.40".
gv=$(awk '/exact G v/ {
  t = ""; for (i = 2; i <= NF; ++i) if ($(i - 1) == "n:") t = $i
  sub("s$", "", t); match($0, /\([^)]*\)/); method = substr($0, RSTART + 1, RLENGTH - 2)
  gsub(/ /, "", method)
  if (t > 0) printf "%s%s %.1f matvecs/s (%s training passes)", sep, method, 1 / t, $NF; sep = "; " }' \
  "$logs/gv_resnet38.log" 2>/dev/null)
want gv && results+=("exact G v, ResNet-38, n = 2,048, batch 256: ${gv:-see $logs/gv_resnet38.log}")

if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  stage fig5_quick 100 "$build/noisegeom" reproduce fig5 --scale quick --out "$work/repro" --quiet || true
  stage fig6_quick 130 "$build/noisegeom" reproduce fig6 --scale quick --out "$work/repro" --quiet || true
  cp "$work"/repro/figures/*.png "$out"/ 2>/dev/null || true
fi

# 6. Figure 5 at the paper's scale, in pieces: reproduce stops at its budget with exit status 75
# after checkpointing, and the next call continues from there.
left=$((budget - SECONDS - 30))
if want paper && [ "$left" -ge 30 ]; then
  stage fig5_paper $((left + 25)) "$build/noisegeom" reproduce fig5 --scale paper --out "$paper" \
    --budget "${left}s" || true
fi
fig5=$(python3 - "$paper" <<'PY' 2>/dev/null
import json, os, sys
parts = []
for name in ("fig5_resnet38", "fig5_vgg13"):
    m = os.path.join(sys.argv[1], "runs", name, "manifest.json")
    if not os.path.exists(m):
        parts.append(f"{name} not started")
        continue
    j = json.load(open(m))
    parts.append(f"{name} {j['status']} at step {j['steps']} (loss {j['final_loss']:.3g}, "
                 f"{j['wall_seconds'] / 60:.1f} min of training)")
done = os.path.exists(os.path.join(sys.argv[1], "figures", "fig5.png"))
print("; ".join(parts) + ("; figure drawn" if done else ""))
PY
)
want paper && results+=("Figure 5, paper scale ($paper): ${fig5:-nothing yet}")
mkdir -p "$out/paper-fig5"
cp -r "$paper"/. "$out/paper-fig5"/ 2>/dev/null || true
cp "$paper"/figures/*.png "$out"/ 2>/dev/null || true

for f in "$logs"/*.log; do echo "===== $f"; cat "$f"; done >"$out/gpu-check.log"
{
  echo
  echo "=== gpu-check on $gpu ($version; PyTorch $torch_version), $((SECONDS))s of ${budget}s"
  printf '%s\n' "${stages[@]}"
  echo
  printf '%s\n' "${results[@]}"
} | tee "$out/gpu-check-table.txt"
