#!/bin/bash
# README preset tables, GPU columns (issue 22): predict_benchmark.py on every det / Ins / rotated size,
# `model.predict` at batch 1 (median ms) and the network's forward at batch 32 (images/s).
# Usage: bash benchmarks/preset_speed_device_runs.sh OUT_DIR [families] [backend] [dtype]
#   families: any of det ins rot ins100 (default "det ins rot"); ins100 = Ins predict at batch 1 with
#   score_threshold 0.001, so that every image keeps 100 detections and masks (random weights otherwise
#   keep none at the default 0.05). Defaults: jax, mixed_bfloat16. Random weights (load_weights=False).
# (keras wheels installed on PYTHONPATH first). Writes OUT_DIR/preset_speed_<gpu>_<backend>_<dtype>_<family>.json,
# rewritten after every preset, so a run cut short by TIMEOUT (s per family, default 520) keeps what it measured.
set -u
out=$1; families=${2:-det ins rot}; backend=${3:-jax}; dtype=${4:-mixed_bfloat16}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "$gpu"
tag=$(echo "$gpu" | grep -oiE '[A-Z][0-9]{2,3}' | head -1 | tr 'A-Z' 'a-z'); tag=${tag:-gpu}
short=$(echo "$dtype" | sed 's/mixed_bfloat16/bf16/; s/float32/fp32/')
sizes() { local p=$1 s=$2 list=""; for z in $3; do list+=${list:+,}${p}_${z}_$s; done; echo "$list"; }
for family in $families; do
  case $family in
    det) presets=$(sizes rtmdet coco "tiny s m l x"); raw=480x640; stages="1:predict;32:forward"; extra="" ;;
    ins) presets=$(sizes rtmdet_ins coco "tiny s m l x"); raw=480x640; stages="1:predict;32:forward"; extra="" ;;
    ins100) presets=$(sizes rtmdet_ins coco "tiny s m l x"); raw=480x640; stages="1:predict"; extra="--score-threshold 0.001" ;;
    rot) presets=$(sizes rtmdet_r dota "tiny s m l"); raw=1024x1024; stages="1:predict;32:forward"; extra="" ;;
    *) echo "unknown family $family"; continue ;;
  esac
  KERAS_BACKEND=$backend timeout ${TIMEOUT:-520} python3 benchmarks/predict_benchmark.py --presets $presets \
    --raw-size $raw --batch-stages "$stages" --dtypes $dtype --iters 20 --warmup 3 $extra \
    --json $out/preset_speed_${tag}_${backend}_${short}_${family}.json 2>&1 | grep -E "^rtmdet|Error"
done
