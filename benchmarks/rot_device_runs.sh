#!/bin/bash
# RTMDet-R on the GPU machine (issue 6): parity tests, inference and training benchmarks.
# Usage: bash benchmarks/rot_device_runs.sh jax|torch OUT_DIR [parity,inference,train]
# (keras wheels installed on PYTHONPATH first)
set -u
backend=$1; out=$2; parts=${3:-parity,inference,train}
export KERAS_BACKEND=$backend
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# fp32 parity needs true fp32 matmuls: no TF32 in cuBLAS/cuDNN, highest XLA dot precision.
[[ $parts == *parity* ]] && NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest timeout 200 python3 -m pytest -q -p no:cacheprovider \
  tests/models/test_rtmdet_rotated_parity.py tests/ops/test_rotated_boxes.py tests/ops/test_rotated_nms.py 2>&1 | tail -3
if [ "$backend" = jax ]; then paths=jit; else paths=compiled; fi
# Random weights score ~0.01: threshold 0.001 sends the worst case, all 2000 candidates, to the rotated NMS.
[[ $parts == *inference* ]] && timeout 300 python3 benchmarks/inference_benchmark.py --preset rtmdet_r_s_dota --image-size 1024 \
  --with-postprocess --score-threshold 0.001 --batch-sizes 1,16 --dtypes float32,mixed_bfloat16 --paths $paths \
  --iters 20 --warmup 3 --json $out/inference_h200_rot_s_$backend.json 2>&1 | grep -v "^->" | tail -12
[[ $parts == *train* ]] && for dtype in float32 mixed_bfloat16; do
  timeout 150 python3 benchmarks/train_benchmark.py --preset rtmdet_r_s_dota --image-size 1024 --batch-size 8 --gts 50 --dtype $dtype \
    --steps 10 --warmup 3 --json $out/train_h200_rot_s_${backend}_$dtype.json 2>&1 | grep -E '"(first_step_s|median_step_ms|images_per_s|peak_memory_gib|loss_bbox)"'
done
