#!/bin/bash
# Issue 21 on the GPU machine: predict_benchmark.py, RTMDet-s, per backend, batch size and dtype.
# Usage: bash benchmarks/predict_device_runs.sh OUT_DIR [backends] [dtypes] [batch sizes] [extra flags]
# (keras wheels installed on PYTHONPATH first). Torch with `--jit-compile` compiles every step whole
# (inductor): one run per batch size, so each writes its results before the next compiles.
set -u
out=$1; backends=${2:-jax torch}; dtypes=${3:-float32,mixed_bfloat16}; batches=${4:-1 16 64}; extra=${5:-}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for backend in $backends; do
  for batch in $batches; do
    KERAS_BACKEND=$backend timeout 540 python3 benchmarks/predict_benchmark.py --presets rtmdet_s_coco --batch-sizes $batch \
      --dtypes $dtypes --iters 20 --warmup 3 $extra --json $out/predict_gpu_${backend}_s_b${batch}.json 2>&1 | grep -E "^rtmdet|Error"
  done
done
