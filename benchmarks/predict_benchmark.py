#!/usr/bin/env python
"""`model.predict` on raw images beside the compiled graph it runs, per backend, dtype and batch size.

For each preset, dtype policy and batch size B, on B raw `--raw-size` uint8 images (one size, as a camera
stream gives them):

- `predict`: `model.predict(images, batch_size=B)`, all of it: checks, the host side, the step, numpy out;
- `step (letterbox on device)`: `model.inference_step(letterboxed=True)` on the raw uint8 batch — the
  compiled graph `predict` runs (resize + pad, network, decode, NMS, rescale), without the host side;
- `forward+postprocess`: the same step on a batch letterboxed beforehand (`letterboxed=False`);
- `forward`: the network alone, compiled the same way (`compile_step`).

Each timed run ends with the outputs on the host (`keras.ops.convert_to_numpy` of a small output: a device
synchronisation). Median over `--iters` runs after `--warmup`; the first call (compilation) is reported on
its own. `predict / forward+postprocess` is the overhead users pay over the graph (issue 21's target:
≤ 1.5 at batch 1). Weights are random (`load_weights=False`): speed does not depend on them except through
the candidates reaching NMS; `--score-threshold` (default the model's) sets how many.

On torch the step is eager Keras (`compile_step`'s fallback) unless `--jit-compile`: then every step is
exported and compiled whole (inductor), once per batch size and stage.

MMDetection's `inference_detector` on the same machine: `benchmarks/mmdet_predict_reference.py`, run in the
reference's virtual environment.

`--batch-stages '1:predict;32:forward'` times other stages per batch size in one run (the README preset
tables' columns: `preset_speed_device_runs.sh`, `preset_speed_cpu.sh`). Each row also records
`detections_per_image` when `predict` is timed, and `--json` is rewritten after every row.

Examples:
    KERAS_BACKEND=jax python benchmarks/predict_benchmark.py --presets rtmdet_tiny_coco,rtmdet_s_coco \
        --batch-sizes 1 --dtypes float32 --json benchmarks/results/predict_cpu2_jax.json
    KERAS_BACKEND=jax python benchmarks/predict_benchmark.py --presets rtmdet_r_s_dota --raw-size 1024x1024 \
        --batch-stages '1:predict;32:forward' --dtypes mixed_bfloat16
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="rtmdet_tiny_coco,rtmdet_s_coco")
    p.add_argument("--batch-sizes", default="1,16,64")
    p.add_argument("--dtypes", default="float32", help="Keras dtype policies, comma-separated")
    p.add_argument("--raw-size", default="480x640", help="HxW of the raw images")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--score-threshold", type=float, default=None)
    p.add_argument("--stages", default="predict,step,forward+postprocess,forward")
    p.add_argument(
        "--batch-stages",
        help="stages per batch size, e.g. '1:predict;32:forward' (replaces --batch-sizes and --stages)",
    )
    p.add_argument("--unfolded", action="store_true", help="BatchNorm not folded into the convs (the default folds)")
    p.add_argument("--jit-compile", action="store_true", help="model.jit_compile = True (torch: compiled steps)")
    p.add_argument("--torch-compile-mode", help="torch.compile mode of compiled torch steps (default: the package's)")
    p.add_argument("--json", help="write the results here (rewritten after every row)")
    return p.parse_args(argv)


def device_name():
    """The accelerator the backend runs on, else the CPU model."""
    import keras

    backend = keras.config.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return device.device_kind
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    except Exception:  # a name is only metadata
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def with_host_arrays(stages):
    """`step` is timed on device inputs and on host arrays."""
    if "step" in stages:
        stages.insert(stages.index("step") + 1, "step (host arrays)")
    return stages


def timed(fn, iters, warmup):
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"first_call_s": first, "median_ms": 1e3 * statistics.median(runs), "min_ms": 1e3 * min(runs)}


def stage_functions(model, images, settings):
    """{stage: callable} of one batch of raw images."""
    import keras
    from keras import ops

    from keras_rtmdet.models.compiled_step import compile_step

    prep = model.preprocessor(list(images), pixel_dtype="uint8")
    prepared = {"images": prep["images"], "scale_factors": prep["scale_factors"]}
    raw = {"images": images}
    on_device = {key: ops.convert_to_tensor(value) for key, value in prepared.items()}
    raw_on_device = {"images": ops.convert_to_tensor(images)}
    forward = compile_step(model, lambda batch, _: model(ops.cast(batch["images"], "float32"), training=False))
    letterboxed_step = model.inference_step(letterboxed=True)
    step = model.inference_step(letterboxed=False)
    thresholds = step.thresholds(model.runtime_thresholds(settings))

    def host(out, key):
        return keras.ops.convert_to_numpy(out[key][:1])

    return {
        "predict": lambda: model.predict(images, batch_size=len(images), verbose=0, **settings),
        "step": lambda: host(letterboxed_step(raw_on_device, thresholds), "num_detections"),
        "step (host arrays)": lambda: host(letterboxed_step(raw, thresholds), "num_detections"),
        "forward+postprocess": lambda: host(step(on_device, thresholds), "num_detections"),
        "forward": lambda: host(forward(on_device, None), "cls_logits"),
    }


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np

    from keras_rtmdet import DenseDetector
    from keras_rtmdet.layers.batch_norm_folding import batch_norm_folding

    if args.torch_compile_mode:
        from keras_rtmdet.models import compiled_step

        compiled_step.TORCH_COMPILE_MODE = args.torch_compile_mode
    height, width = (int(v) for v in args.raw_size.lower().split("x"))
    if args.batch_stages:
        batch_stages = [item.split(":") for item in args.batch_stages.split(";")]
    else:
        batch_stages = [(b, args.stages) for b in args.batch_sizes.split(",")]
    batch_stages = [(int(b), with_host_arrays(stages.split(","))) for b, stages in batch_stages]
    results = []
    for dtype in args.dtypes.split(","):
        keras.config.set_dtype_policy(dtype)
        for preset in args.presets.split(","):
            settings = {} if args.score_threshold is None else {"score_threshold": args.score_threshold}
            model = DenseDetector.from_preset(preset, load_weights=False)
            if args.jit_compile:
                model.jit_compile = True
            for batch, stages in batch_stages:
                images = np.random.default_rng(0).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
                functions = stage_functions(model, images, settings)
                row = {"preset": preset, "dtype": dtype, "batch": batch, "batch_norm_folded": not args.unfolded}
                with batch_norm_folding(not args.unfolded):
                    for stage in stages:
                        row[stage] = timed(functions[stage], args.iters, args.warmup)
                        row[stage]["images_per_s"] = 1e3 * batch / row[stage]["median_ms"]
                    if "predict" in stages:
                        counts = model.predict(images, batch_size=batch, verbose=0, **settings)["num_detections"]
                        row["detections_per_image"] = float(np.mean(keras.ops.convert_to_numpy(counts)))
                if "predict" in row and "forward+postprocess" in row:
                    row["predict_over_graph"] = row["predict"]["median_ms"] / row["forward+postprocess"]["median_ms"]
                results.append(row)
                write_report(args, height, width, results)
                cells = "  ".join(f"{s} {row[s]['median_ms']:.1f} ms" for s in stages)
                ratio = row.get("predict_over_graph")
                print(f"{preset} {dtype} b{batch}: {cells}" + (f"  predict/graph {ratio:.2f}" if ratio else ""))
                sys.stdout.flush()
    return write_report(args, height, width, results)


def write_report(args, height, width, results):
    import keras

    report = {
        "backend": keras.config.backend(),
        "keras_version": keras.__version__,
        "device": device_name(),
        "jit_compile": args.jit_compile,
        "torch_compile_mode": args.torch_compile_mode,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "raw_size": [height, width],
        "iters": args.iters,
        "warmup": args.warmup,
        "score_threshold": args.score_threshold,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
