#!/usr/bin/env bash
# Training on a GPU with the prebuilt CUDA `petseg` (the GPU machine needs no Rust):
# the same seeded run on the CPU in f32 and on cuda:0 in f32 and bf16, losses compared.
#
# Build the binary on a machine with the PyPI CUDA toolchain (no GPU needed):
#   bash tools/cuda-check.sh                   # -> target-cuda/release/petseg (61 MB)
#   gzip -kf target-cuda/release/petseg        # -> petseg.gz (16 MB), easier to carry
# Run on the GPU machine, from the repository root (with the device `run` tool of
# this project: carry the binary, e.g. carry=["target-cuda/release/petseg.gz"]):
#   bash crates/petseg-train/scripts/gpu-train-check.sh target-cuda/release/petseg.gz [WORK_DIR]
# (a plain, uncompressed binary works too).
#
# What it does (about 2-4 minutes on an H200 machine with 16 cores, most of it the CPU run):
#  1. `petseg demo --quick` on the CPU: a synthetic cohort with a split (WORK_DIR/demo/data)
#     and the demo's run config, as the base of the runs below.
#  2. The same run (seed 2026, small SegResNet, 4 epochs x 1 step of 2 patches of 32^3, so
#     epoch e's loss is step e's loss; validation by sliding window after epoch 4) three
#     times: cpu/f32, cuda:0/f32, cuda:0/bf16.
#  3. Checks: every run finishes with finite losses; first-step loss (same weights, same
#     batch, only the arithmetic differs) within 1e-4 relative of the CPU's for CUDA f32 and
#     within 2e-2 for bf16 (the measured CPU bf16-vs-f32 difference is 6e-5, the forward
#     pass's bf16 rounding bound ~1e-2); later steps within 10% (they diverge as rounding
#     differences go through AdamW); validation DSC within 0.05 of the CPU's.
#  4. `petseg demo --quick --device cuda:0 --precision bf16` end to end (training,
#     prediction with flip TTA, evaluation on the GPU).
#  5. Timing: study-size SegResNet, 2 steps of 2 patches of 96^3, f32 and bf16 on cuda:0
#     (seconds per epoch from the log; CPU reference in crates/petseg-train/README.md).
# Exit status: 0 = all checks pass; 1 = a check or a run failed; 2 = missing libraries.
# GPU_DEVICE (default cuda:0) picks another GPU; GPU_DEVICE=cpu dry-runs the script's logic
# with a CPU build (every "GPU" run then runs on the CPU).
set -uo pipefail
bin=${1:-target-cuda/release/petseg}
work=${2:-$(mktemp -d /tmp/petseg-gpu-train.XXXXXX)}
[ -f "$bin" ] || { echo "no petseg binary at $bin (pass its path as the first argument)"; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
mkdir -p "$work" && cd "$work" || exit 2
if [ "${bin%.gz}" != "$bin" ]; then
  gzip -dc "$bin" > petseg && chmod +x petseg || exit 2
  bin=$work/petseg
fi
[ -x "$bin" ] || { echo "$bin is not executable"; exit 2; }

# CUDA 13 libraries: the toolkit, the driver's folder, pip's nvidia wheels.
dirs=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64
      /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64)
if command -v python3 >/dev/null 2>&1; then
  for s in $(python3 -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
    for d in "$s"/nvidia/*/lib; do [ -d "$d" ] && dirs+=("$d"); done
  done
fi
ld=""
for d in "${dirs[@]}"; do [ -d "$d" ] && case ":$ld:" in *":$d:"*) ;; *) ld="$ld:$d" ;; esac; done
export LD_LIBRARY_PATH="${ld#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
if ldd "$bin" | grep "not found"; then
  echo "missing shared libraries (above): add their folder to LD_LIBRARY_PATH and rerun"
  exit 2
fi
echo "work folder: $work"

fail=0
check() { # description, awk condition on a b (numbers)
  if awk -v a="$2" -v b="$3" "BEGIN { exit !($4) }"; then echo "ok   $1 ($2 vs $3)"
  else echo "FAIL $1 ($2 vs $3)"; fail=1; fi
}
col() { # log.csv, epoch (0-based), column: 2 = train_loss, 4 = val_dsc, 5 = seconds
  awk -F, -v e="$2" -v c="$3" 'NR > 1 && $1 == e { print $c }' "$1"
}

echo "== 1. cohort and base config (petseg demo --quick on the CPU)"
"$bin" demo --quick --out demo > demo.log 2>&1 || { cat demo.log; echo "FAIL cpu demo"; exit 1; }
base=demo/run/config.toml

echo "== 2. the same run on cpu/f32, ${GPU_DEVICE:-cuda:0}/f32, ${GPU_DEVICE:-cuda:0}/bf16"
gpu=${GPU_DEVICE:-cuda:0}
for tag in cpu:f32 gpu:f32 gpu:bf16; do
  dev=${tag%:*}; prec=${tag##*:}; dir=run-$dev-$prec
  [ "$dev" = gpu ] && dev=$gpu
  if "$bin" train --plain --config "$base" --run-dir "$dir" --device "$dev" --precision "$prec" \
       --epochs 4 --val-every 4 --set schedule.steps_per_epoch=1 > "$dir.log" 2>&1; then
    echo "ok   train $dev $prec: losses $(awk -F, 'NR > 1 { printf "%s ", $2 }' "$dir/log.csv")" \
         "val DSC $(col "$dir/log.csv" 3 4), s/epoch $(col "$dir/log.csv" 1 5)"
  else
    tail -20 "$dir.log"; echo "FAIL train $dev $prec"; fail=1
  fi
done
cpu=run-cpu-f32/log.csv
for run in run-gpu-f32 run-gpu-bf16; do
  [ -f "$run/log.csv" ] || continue
  case $run in *f32) tol=1e-4 ;; *) tol=2e-2 ;; esac
  for e in 0 1 2 3; do
    a=$(col "$run/log.csv" $e 2); b=$(col "$cpu" $e 2)
    check "$run loss finite, epoch $e" "$a" "$b" 'a == a + 0 && a < 1e30 && a > -1e30'
  done
  check "$run first-step loss within $tol of the CPU's" "$(col "$run/log.csv" 0 2)" "$(col "$cpu" 0 2)" \
        "(a - b) / b <= $tol && (b - a) / b <= $tol"
  for e in 1 2 3; do
    check "$run loss epoch $e within 10% of the CPU's" "$(col "$run/log.csv" $e 2)" "$(col "$cpu" $e 2)" \
          '(a - b) / b <= 0.1 && (b - a) / b <= 0.1'
  done
  check "$run validation DSC within 0.05 of the CPU's" "$(col "$run/log.csv" 3 4)" "$(col "$cpu" 3 4)" \
        'a - b <= 0.05 && b - a <= 0.05'
done

echo "== 3. petseg demo --quick on $gpu in bf16 (train, predict, evaluate)"
if "$bin" demo --quick --out demo-gpu --device "$gpu" --precision bf16 > demo-gpu.log 2>&1; then
  echo "ok   demo on $gpu bf16: $(grep 'Mean DSC' demo-gpu/report.md)"
else
  tail -20 demo-gpu.log; echo "FAIL demo on $gpu bf16"; fail=1
fi

echo "== 4. timing: study SegResNet, 2 steps of 2 patches of 96^3 per epoch, $gpu"
for prec in f32 bf16; do
  dir=time-$prec
  if "$bin" train --plain --config "$base" --run-dir "$dir" --device "$gpu" --precision "$prec" \
       --model segresnet --patch-size 96 --batch-size 2 --epochs 2 --val-every 0 \
       --set schedule.steps_per_epoch=2 > "$dir.log" 2>&1; then
    echo "ok   $prec: seconds per epoch of 2 steps: first $(col "$dir/log.csv" 0 5), second $(col "$dir/log.csv" 1 5)"
  else
    tail -20 "$dir.log"; echo "FAIL timing run $prec"; fail=1
  fi
done

echo "== result: $([ $fail = 0 ] && echo PASS || echo FAIL) (logs and runs in $work)"
exit $fail
