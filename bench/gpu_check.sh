#!/usr/bin/env bash
# The GPU checks of the scaling-out work, as one run on a machine with a GPU:
#   1. train.py trainer=gpu on MNIST-5k (teacher, PET, SNN measured on the GPU), timed;
#   2. bench/simulate.py on VGG-16 at batch 64: one SNN step over one QANN forward, for
#      the eager and the compiled backend, and the peak GPU memory of a T = 32 simulation;
#   3. evaluate.py on the demo's SNN with snn.backend=compiled: the same snn_eval.json.
# Results go to $OUT (or bench/results/gpu). On a machine without hydra-core, omegaconf,
# antlr4-python3-runtime or mlxtend (and no internet), put their wheels in .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
start=$(date +%s)
run=$(mktemp -d)
python3 train.py trainer=gpu trainer.enable_progress_bar=false hydra.run.dir="$run" 2>&1 | tail -5
echo "train.py trainer=gpu: $(( $(date +%s) - start )) s" | tee "$OUT/train_seconds.txt"
cp "$run/snn_eval.json" "$OUT/snn_eval.json"
python3 bench/simulate.py --device cuda --models vgg16 --batch 64 --backends eager compiled \
  --out "$OUT/simulate.json"
start=$(date +%s)
python3 evaluate.py snn.path="$run/snn.pt" trainer=gpu snn.backend=compiled \
  out_dir="$OUT/eval_compiled" 2>&1 | tail -3
echo "evaluate.py trainer=gpu snn.backend=compiled: $(( $(date +%s) - start )) s" \
  | tee -a "$OUT/train_seconds.txt"
