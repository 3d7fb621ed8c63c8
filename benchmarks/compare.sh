#!/usr/bin/env bash
# Side-by-side speed comparison, alternating the project's benchmark with the
# PyTorch reference in one sitting on one machine (absolute figures drift on
# shared machines; ratios within one sitting are what docs/performance.md quotes),
# then every lever and the other models, one run each, then the memory slope.
# Usage: TORCH_PY=/path/to/torch-venv/bin/python bash benchmarks/compare.sh \
#            [--isa avx2|native] [ROUNDS]
#
# --isa avx2 measures an AVX2-only CPU's behaviour on a newer one: oneDNN (in
# TensorFlow and in PyTorch) is capped at AVX2 kernels, PyTorch's own kernels
# at AVX2, and the project sees an AVX2 CPU's flags (RESNET_KERAS_CPU_FLAGS,
# resnet_keras/cpu.py), so it refuses bfloat16 as it would there. TensorFlow
# decides its oneDNN default from the real CPU, so each round runs the
# project twice: "tf-default" with oneDNN off, as TensorFlow 2.21 leaves an
# AVX2 CPU, and "our-default" with it on, as scripts/common.py sets it.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TORCH_PY=${TORCH_PY:-python3}
ISA=native
ROUNDS=3
ARGS=("$@")  # as given, for the record below
while [ $# -gt 0 ]; do
  case "$1" in
    --isa) ISA=${2:-}; shift 2 ;;
    --isa=*) ISA=${1#--isa=}; shift ;;
    *) ROUNDS=$1; shift ;;
  esac
done
case "$ISA" in
  native) ;;
  avx2)
    export ONEDNN_MAX_CPU_ISA=AVX2
    # /proc/cpuinfo flags of a plain AVX2 CPU (Haswell to Comet Lake, Zen 1-3).
    export RESNET_KERAS_CPU_FLAGS="fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx f16c fma bmi1 bmi2
      avx2"
    ;;
  *) echo "error: --isa must be avx2 or native; got '$ISA'" >&2; exit 2 ;;
esac
export TF_CPP_MIN_LOG_LEVEL=2
# The sitting's record first (command, commit, versions, CPU flags, kernel
# variables), so a log kept in results/bench/ says what made its figures.
$PY - "$0" "${ARGS[@]}" <<'PYEOF'
import json, sys
import keras, numpy, tensorflow  # noqa: F401 (their versions go into the record)
from resnet_keras.run import provenance
record = provenance.invocation()
record["argv"] = ["bash", *sys.argv[1:]]
print("== record " + json.dumps(record))
PYEOF
echo "== torch $($TORCH_PY -c 'import torch; print(torch.__version__)')"
echo "== isa $ISA${ONEDNN_MAX_CPU_ISA:+ (ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA)}"
bench() { $PY -m scripts.benchmark "$@" | tail -1; }
torch_ref() {
  if [ "$ISA" = avx2 ]; then
    ATEN_CPU_CAPABILITY=avx2 $TORCH_PY benchmarks/torch_reference.py "$@" | tail -1
  else
    $TORCH_PY benchmarks/torch_reference.py "$@" | tail -1
  fi
}
# TensorFlow as it runs without the project's scripts/common.py: its own
# oneDNN default, which on an AVX2 CPU is off.
tf_default() {
  if [ "$ISA" = avx2 ]; then TF_ENABLE_ONEDNN_OPTS=0 "$@"; else "$@"; fi
}
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  torch_ref --n 3 --steps 60 --batch 128
  r20=(--model resnet --n 3 --batch_size 128 --steps 60)
  if [ "$ISA" = avx2 ]; then
    echo "tf-default:  $(TF_ENABLE_ONEDNN_OPTS=0 bench "${r20[@]}")"
    echo "our-default: $(TF_ENABLE_ONEDNN_OPTS=1 bench "${r20[@]}")"
  else
    bench "${r20[@]}"
  fi
  torch_ref --n 3 --eval
done
echo "== levers (one run each, ResNet-20, batch 128)"
echo "baseline (fused BatchNorm, float32):"; bench --n 3 --steps 60
echo "fused_bn off (Keras' own BatchNorm ops):"; bench --n 3 --steps 60 --nofused_bn
echo "mixed_precision (bfloat16 where the CPU computes it, else float32):"
bench --n 3 --steps 60 --mixed_precision
echo "steps_per_execution 4:"; bench --n 3 --steps 62 --warmup 10 --steps_per_execution 4
echo "jit_compile:"; bench --n 3 --steps 60 --jit_compile
echo "oneDNN off:"; TF_ENABLE_ONEDNN_OPTS=0 bench --n 3 --steps 60
echo "tutorial keras_reference:"
tf_default $PY ../shared/bench/keras_reference.py --steps 60 2>/dev/null | tail -1
echo "== other models (float32, then mixed_precision)"
for m in plain colorizer; do
  echo "$m:"; bench --model "$m" --n 3 --steps 60
  echo "$m mixed_precision:"; bench --model "$m" --n 3 --steps 60 --mixed_precision
done
echo "transfer:"; bench --model transfer --steps 20 --warmup 5 --eval_batch_size 250
echo "transfer mixed_precision:"; bench --model transfer --steps 20 --warmup 5 --eval_batch_size 250 --mixed_precision
# The memory target: what each image of the batch adds to the training peak,
# (peak RSS at batch 256 - peak RSS at batch 64) / 192, which leaves out the
# fixed cost of importing the framework. Both sides hold their random inputs
# (batch x steps images), the same bytes on each side.
echo "== memory slope (ResNet-20, float32, batch 64 and 256, 20 steps)"
rss() { sed -n 's/.*peak_rss_mb=\([0-9]*\).*/\1/p'; }
slope() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 192 }'; }
p64=$(bench --n 3 --batch_size 64 --steps 20 --warmup 5 | rss)
p256=$(bench --n 3 --batch_size 256 --steps 20 --warmup 5 | rss)
t64=$(torch_ref --n 3 --batch 64 --steps 20 | rss)
t256=$(torch_ref --n 3 --batch 256 --steps 20 | rss)
echo "project: peak_rss_mb 64=$p64 256=$p256 slope_mb_per_image=$(slope "$p64" "$p256")"
echo "torch:   peak_rss_mb 64=$t64 256=$t256 slope_mb_per_image=$(slope "$t64" "$t256")"
