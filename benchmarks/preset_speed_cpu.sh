#!/bin/bash
# README preset tables, CPU column (issue 22): `model.predict` at batch 1 on this machine's CPU, TensorFlow
# backend, float32, every det / Ins / rotated size (random weights; det / Ins on 480x640 raw images, rotated on
# 1024x1024), median of ITERS (default 5) after WARMUP (default 1) runs; the first call (tracing) is reported
# apart. Run it on a quiet machine: it times the CPU. SIZES="tiny s" restricts the sizes (a smoke test:
# ITERS=1 WARMUP=0 SIZES=tiny bash benchmarks/preset_speed_cpu.sh /tmp/out det).
# Usage: bash benchmarks/preset_speed_cpu.sh [OUT_DIR (default benchmarks/results)] [families (default "det ins rot")]
# Writes OUT_DIR/preset_speed_cpu_tf_<family>.json (rewritten after every preset);
# then `python benchmarks/preset_speed_table.py` prints the README columns.
set -u
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}; families=${2:-det ins rot}
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
sizes() { local p=$1 s=$2 list=""; for z in $3; do list+=${list:+,}${p}_${z}_$s; done; echo "$list"; }
mkdir -p "$out"
for family in $families; do
  case $family in
    det) presets=$(sizes rtmdet coco "${SIZES:-tiny s m l x}"); raw=480x640 ;;
    ins) presets=$(sizes rtmdet_ins coco "${SIZES:-tiny s m l x}"); raw=480x640 ;;
    rot) presets=$(sizes rtmdet_r dota "${SIZES:-tiny s m l}"); raw=1024x1024 ;;
    *) echo "unknown family $family"; continue ;;
  esac
  KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 $python benchmarks/predict_benchmark.py --presets $presets \
    --raw-size $raw --batch-stages "1:predict" --dtypes float32 --iters ${ITERS:-5} --warmup ${WARMUP:-1} \
    --json "$out/preset_speed_cpu_tf_$family.json" 2>&1 | grep -E "^rtmdet|Error"
done
