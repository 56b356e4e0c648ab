#!/bin/bash
# Issue 21 on the GPU machine: predict_benchmark.py for JAX and torch, RTMDet-s, fp32 and bf16.
# Usage: bash benchmarks/predict_device_runs.sh OUT_DIR [backends] (keras wheels installed on PYTHONPATH first)
set -u
out=$1; backends=${2:-jax torch}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for backend in $backends; do
  KERAS_BACKEND=$backend timeout 280 python3 benchmarks/predict_benchmark.py --presets rtmdet_s_coco --batch-sizes 1,16,64 \
    --dtypes float32,mixed_bfloat16 --iters 20 --warmup 3 --json $out/predict_gpu_${backend}_s.json 2>&1 | grep -E "^rtmdet|Error"
done
