#!/usr/bin/env python
"""Latency of exported detectors (SavedModel, ONNX Runtime) beside the Keras model, on raw uint8 images.

For a preset architecture (random weights: the speed does not depend on them
except through the candidates reaching NMS, so the score threshold is the
preset's), on the current Keras backend:

* `keras predict`: `model.predict(images)` end to end (cv2 letterbox on the
  host, the backend's compiled predict step, NMS, numpy outputs);
* `keras serving graph`: the exported end-to-end function run by Keras
  (TensorFlow: `tf.function`; JAX: `jax.jit`; torch: eager), i.e. the same
  graph as the artefacts, before export;
* `saved_model e2e` / `saved_model raw` (TensorFlow backend): the signatures
  of `tf.saved_model.load`;
* `onnxruntime e2e` / `onnxruntime raw`: the ONNX exports of this backend in
  ONNX Runtime, on every provider asked for (`--providers`; CUDA on a GPU).

Latency is the median of `--iters` timed calls after `--warmup`; the ratio
column is Keras predict's median over the row's. Writes a JSON with every
number and the machine it ran on.

Example:
    KERAS_BACKEND=tensorflow python benchmarks/export_benchmark.py --preset rtmdet_tiny_coco \\
        --json benchmarks/results/export_cpu2_tensorflow_tiny.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="rtmdet_tiny_coco")
    p.add_argument("--input-size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"), help="served images")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--providers", default="CPUExecutionProvider", help="comma-separated ONNX Runtime providers")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    p.add_argument("--skip", default="", help="comma-separated rows to skip (e.g. 'keras serving graph')")
    p.add_argument("--no-onnx", action="store_true", help="time the Keras (and SavedModel) rows only")
    p.add_argument("--onnx-dir", help="time the ONNX files here (raw.onnx, end_to_end.onnx) instead of exporting")
    p.add_argument("--save-onnx", help="write the exported ONNX files to this directory")
    p.add_argument("--json", help="write results here")
    return p.parse_args(argv)


def timed(fn, iters, warmup):
    started = time.perf_counter()
    fn()
    first = time.perf_counter() - started
    for _ in range(max(warmup - 1, 0)):
        fn()
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "first_call_s": first}


def serving_function(model, input_size):
    """The end-to-end serving graph as a compiled callable of this backend (what the exports hold)."""
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        from keras_rtmdet.export.saved_model import ServingFunctions

        return tf.function(ServingFunctions(model, input_size).end_to_end, reduce_retracing=True)
    from keras_rtmdet.export.serving_graph import ServingGraph

    candidates = ServingGraph(model, "candidates", input_size)
    finish = ServingGraph(model, "detections", input_size)

    def end_to_end(images):
        found = dict(zip(candidates.output_names, candidates(images)))
        found["keep"] = model.suppress(
            found["candidate_boxes"], found["candidate_scores"], found["candidate_labels"], found["candidate_valid"]
        )
        return finish([found[name] for name in finish.input_names])

    if backend == "jax":
        import jax

        return jax.jit(end_to_end)
    import torch

    def eager(images):
        with torch.no_grad():
            return end_to_end(keras.ops.convert_to_tensor(images))

    return eager


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np

    from keras_rtmdet import DenseDetector
    from keras_rtmdet.export.onnx_export import onnx_models

    backend = keras.config.backend()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    model = DenseDetector.from_preset(args.preset, load_weights=False)
    size = tuple(args.input_size)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size, *size, 3), dtype=np.uint8)
    rows = {}

    def add(name, fn):
        if name in skip:
            return
        try:
            rows[name] = timed(fn, args.iters, args.warmup)
        except Exception as error:  # one path missing (no cv2, no provider) must not lose the others
            print(f"{name:28s} failed: {type(error).__name__}: {error}", flush=True)
            return
        print(f"{name:28s} {rows[name]['median_ms']:9.2f} ms  (first call {rows[name]['first_call_s']:.1f} s)", flush=True)

    add("keras predict", lambda: model.predict(images, batch_size=args.batch_size, verbose=0))
    serve = serving_function(model, size)
    add("keras serving graph", lambda: [keras.ops.convert_to_numpy(x) for x in keras.tree.flatten(serve(images))])
    if backend == "tensorflow":
        import tensorflow as tf

        from keras_rtmdet.export.saved_model import export_saved_model

        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            export_saved_model(model, folder, size)
            export_s = time.perf_counter() - started
            loaded = tf.saved_model.load(folder)
            tensor = tf.constant(images)
            for signature in ("serving_default", "raw"):
                fn = loaded.signatures[signature]
                label = "e2e" if signature == "serving_default" else "raw"
                add(f"saved_model {label}", lambda fn=fn: [v.numpy() for v in fn(images=tensor).values()])
            rows.setdefault("saved_model e2e", {})["export_s"] = export_s
    import onnxruntime as ort

    started = time.perf_counter()
    if args.no_onnx:
        protos, onnx_export_s = {}, None
    elif args.onnx_dir:
        import onnx

        files = {"raw": "raw.onnx", "end_to_end": "end_to_end.onnx"}
        protos = {k: onnx.load(os.path.join(args.onnx_dir, f)) for k, f in files.items()
                  if os.path.exists(os.path.join(args.onnx_dir, f))}
        onnx_export_s = None
    else:
        batch = args.batch_size if backend == "torch" else None
        protos = onnx_models(model, input_size=size, batch_size=batch)
        onnx_export_s = time.perf_counter() - started
    if args.save_onnx:
        import onnx

        os.makedirs(args.save_onnx, exist_ok=True)
        for variant, proto in protos.items():
            onnx.save(proto, os.path.join(args.save_onnx, f"{variant}.onnx"))
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    available = ort.get_available_providers()
    for provider in [p.strip() for p in args.providers.split(",")]:
        if provider not in available:
            print(f"{provider} not available (have {available})")
            continue
        for variant, proto in protos.items():
            session = ort.InferenceSession(proto.SerializeToString(), options, providers=[provider])
            label = "e2e" if variant == "end_to_end" else "raw"
            add(f"onnxruntime {label} {provider.replace('ExecutionProvider', '')}",
                lambda session=session: session.run(None, {"images": images}))
    reference = rows.get("keras predict", {}).get("median_ms")
    print(f"\n{'path':28s} {'median ms':>10s} {'ratio vs predict':>17s}")
    for name, row in rows.items():
        if "median_ms" in row:
            ratio = reference / row["median_ms"] if reference else float("nan")
            row["speedup_vs_keras_predict"] = ratio
            print(f"{name:28s} {row['median_ms']:10.2f} {ratio:16.2f}x")
    result = {
        "preset": args.preset,
        "backend": backend,
        "input_size": list(size),
        "batch_size": args.batch_size,
        "onnx_export_s": onnx_export_s,
        "onnxruntime": ort.__version__,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
