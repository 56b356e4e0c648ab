#!/usr/bin/env python
"""Time and memory of the pairwise rotated IoU at the sizes training and inference call it.

Cases: the RTMDet-R assigner's IoU of every prior with every ground truth
(batch 8, 1024² → 21,504 priors, 50 boxes per image) and the rotated NMS's
IoU of 2,000 candidates with each other. The compiled path is the backend's
(`jax.jit`, `tf.function(jit_compile=True)`); torch runs eagerly, as in
training. Each timing is the median of `--iters` synchronised runs after a
warm-up; on CUDA the peak memory above the inputs is reported too.
`--implementation module:function` or `path/to/file.py:function` times
another implementation (e.g. an older copy of `rotated_iou`) on the same
inputs.

    KERAS_BACKEND=torch python benchmarks/rotated_iou_benchmark.py --json out.json
"""

import argparse
import importlib
import importlib.util
import json
import statistics
import sys
import time

import numpy as np

CASES = {"assigner b8 21504x50": (8, 21504, 50), "nms 2000x2000": (1, 2000, 2000)}


def random_rboxes(rng, batch, count, size):
    centers = rng.uniform(0, size, (batch, count, 2))
    sizes = rng.uniform(4, 200, (batch, count, 2))
    return np.concatenate([centers, sizes, rng.uniform(-np.pi / 2, np.pi / 2, (batch, count, 1))], -1).astype("float32")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--implementation", default="keras_rtmdet.ops.rotated_boxes:rotated_iou")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import keras

    module, name = args.implementation.split(":")
    if module.endswith(".py"):
        spec = importlib.util.spec_from_file_location("rotated_iou_implementation", module)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
    else:
        sys.path.insert(0, ".")
        loaded = importlib.import_module(module)
    iou = getattr(loaded, name)
    backend = keras.config.backend()
    sync, memory = (lambda x: keras.ops.convert_to_numpy(keras.ops.sum(x))), (lambda: None)
    if backend == "jax":
        import jax

        iou, sync = jax.jit(iou), (lambda x: x.block_until_ready())
    elif backend == "tensorflow":
        import tensorflow as tf

        iou = tf.function(iou, jit_compile=True)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            sync = lambda x: torch.cuda.synchronize()  # noqa: E731
            memory = lambda: torch.cuda.max_memory_allocated() / 2**30  # noqa: E731
    rng = np.random.default_rng(0)
    results = {"backend": backend, "implementation": args.implementation, "cases": {}}
    for case, (batch, rows, cols) in CASES.items():
        a = keras.ops.convert_to_tensor(random_rboxes(rng, batch, rows, 1024))
        b = keras.ops.convert_to_tensor(random_rboxes(rng, batch, cols, 1024))
        if backend == "torch" and memory() is not None:
            torch.cuda.reset_peak_memory_stats()
        base = memory()
        start = time.perf_counter()
        sync(iou(a, b))
        first = time.perf_counter() - start
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            sync(iou(a, b))
            times.append(time.perf_counter() - start)
        peak = memory()
        results["cases"][case] = {
            "pairs": batch * rows * cols,
            "first_call_s": round(first, 3),
            "median_ms": round(1e3 * statistics.median(times), 2),
            "peak_gib_above_inputs": None if peak is None else round(peak - base, 2),
        }
        print(case, results["cases"][case], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
