#!/bin/bash
# RTMDet-Ins on the GPU machine (issue 5): parity tests, inference and training benchmarks.
# Usage: bash benchmarks/ins_device_runs.sh jax|torch OUT_DIR [parity,inference,train]
# (keras wheels installed on PYTHONPATH first)
set -u
backend=$1; out=$2; parts=${3:-parity,inference,train}
export KERAS_BACKEND=$backend
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# fp32 parity needs true fp32 matmuls: no TF32 in cuBLAS/cuDNN, highest XLA dot precision.
[[ $parts == *parity* ]] && NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest timeout 200 python3 -m pytest -q -p no:cacheprovider \
  tests/models/test_rtmdet_ins_parity.py tests/training/test_mask_loss.py 2>&1 | tail -3
if [ "$backend" = jax ]; then paths=jit; else paths=compiled; fi
[[ $parts == *inference* ]] && timeout 330 python3 benchmarks/inference_benchmark.py --preset rtmdet_ins_s_coco --with-postprocess \
  --score-threshold 0.001 --raw-size 480x640 --batch-sizes 1,32 --dtypes float32,mixed_bfloat16 --paths $paths \
  --iters 20 --warmup 3 --json $out/inference_h200_ins_s_$backend.json 2>&1 | grep -v "^->" | tail -16
[[ $parts == *train* ]] && for dtype in float32 mixed_bfloat16; do
  timeout 150 python3 benchmarks/train_benchmark.py --preset rtmdet_ins_s_coco --batch-size 32 --dtype $dtype \
    --steps 10 --warmup 3 --json $out/train_h200_ins_s_${backend}_$dtype.json 2>&1 | grep -E '"(first_step_s|median_step_ms|images_per_s|peak_memory_gib|loss_mask)"'
done
