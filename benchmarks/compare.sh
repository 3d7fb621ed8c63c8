#!/usr/bin/env bash
# Side-by-side speed comparison, alternating the project's benchmark with the
# PyTorch reference in one sitting on one machine (absolute figures drift on
# shared machines; ratios within one sitting are what docs/performance.md quotes),
# then every lever and the other models, one run each.
# Usage: TORCH_PY=/path/to/torch-venv/bin/python bash benchmarks/compare.sh [ROUNDS]
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TORCH_PY=${TORCH_PY:-python3}
ROUNDS=${1:-3}
export TF_CPP_MIN_LOG_LEVEL=2
bench() { $PY -m scripts.benchmark "$@" | tail -1; }
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  $TORCH_PY benchmarks/torch_reference.py --n 3 --steps 60 --batch 128 | tail -1
  bench --model resnet --n 3 --batch_size 128 --steps 60
  $TORCH_PY benchmarks/torch_reference.py --n 3 --eval | tail -1
done
echo "== levers (one run each, ResNet-20, batch 128)"
echo "baseline (fused BatchNorm, float32):"; bench --n 3 --steps 60
echo "fused_bn off (Keras' own BatchNorm ops):"; bench --n 3 --steps 60 --nofused_bn
echo "mixed_precision (bfloat16 on CPU):"; bench --n 3 --steps 60 --mixed_precision
echo "steps_per_execution 4:"; bench --n 3 --steps 62 --warmup 10 --steps_per_execution 4
echo "jit_compile:"; bench --n 3 --steps 60 --jit_compile
echo "oneDNN off:"; TF_ENABLE_ONEDNN_OPTS=0 bench --n 3 --steps 60
echo "tutorial keras_reference:"; $PY ../shared/bench/keras_reference.py --steps 60 2>/dev/null | tail -1
echo "== other models (float32, then mixed_precision)"
for m in plain colorizer; do
  echo "$m:"; bench --model "$m" --n 3 --steps 60
  echo "$m mixed_precision:"; bench --model "$m" --n 3 --steps 60 --mixed_precision
done
echo "transfer:"; bench --model transfer --steps 20 --warmup 5 --eval_batch_size 250
echo "transfer mixed_precision:"; bench --model transfer --steps 20 --warmup 5 --eval_batch_size 250 --mixed_precision
