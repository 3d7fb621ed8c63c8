#!/usr/bin/env bash
# Side-by-side speed comparison, alternating the project's benchmark with the
# PyTorch reference in one sitting on one machine (absolute figures drift on
# shared machines; ratios within one sitting are what docs/performance.md quotes).
# Usage: TORCH_PY=/path/to/torch-venv/bin/python bash benchmarks/compare.sh [ROUNDS]
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TORCH_PY=${TORCH_PY:-python3}
ROUNDS=${1:-3}
export TF_CPP_MIN_LOG_LEVEL=2
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  $TORCH_PY benchmarks/torch_reference.py --n 3 --steps 60 --batch 128 | tail -1
  $PY -m scripts.benchmark --model resnet --n 3 --batch_size 128 --steps 60 | tail -1
  $TORCH_PY benchmarks/torch_reference.py --n 3 --eval | tail -1
done
echo "== levers (one run each)"
echo "jit_compile:"; $PY -m scripts.benchmark --n 3 --steps 60 --jit_compile | tail -1
echo "oneDNN off:"; TF_ENABLE_ONEDNN_OPTS=0 $PY -m scripts.benchmark --n 3 --steps 60 | tail -1
echo "tutorial keras_reference:"; $PY ../shared/bench/keras_reference.py --steps 60 2>/dev/null | tail -1
