#!/usr/bin/env python
"""Box AP, size and CPU latency of a detector's deployment artefacts: ONNX Runtime fp32 / int8,
OpenVINO fp32 / fp16 / int8, LiteRT fp32 / fp16 / int8.

Every artefact is written by `keras_rtmdet.export.export` end to end (uint8
images in, NMS in the graph) at batch 1 and the model's own `image_size`
(the served size). Each validation image is letterboxed into that size on the
host (`calibration.fit_to_input`: keep-ratio resize, 114 bottom/right, the
graph's own letterbox then being the identity) and the boxes divided by the
resize scale: the detections are in the original image's pixels, scored by
pycocotools against the source's ground truth. `keras predict` (the Keras
model on the original images) is the reference row.

Latency: the median of `--iters` calls on one served image after `--warmup`,
batch 1, `--threads` CPU threads (ONNX Runtime intra-op threads, OpenVINO
`INFERENCE_NUM_THREADS`, LiteRT `num_threads`). OpenVINO fp32 is compiled
with `INFERENCE_PRECISION_HINT=f32` (its metadata's compile config); fp16 and
int8 with the plugin's default compute precision (bf16 on CPUs with bf16
units).

`--random PRESET` times a preset architecture with random weights at its own
size instead (speed only, no AP): the demo model's 160² is small enough that
fixed per-call costs weigh on its latencies.

Examples:
    KERAS_BACKEND=tensorflow python benchmarks/int8_export.py --preset /tmp/demo_det/best \\
        --json benchmarks/results/int8_cpu2_demo_det.json
    KERAS_BACKEND=tensorflow python benchmarks/int8_export.py --random rtmdet_tiny_coco \\
        --json benchmarks/results/int8_cpu2_tiny640_random.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROWS = (
    ("onnx", "fp32"),
    ("onnx", "int8"),
    ("openvino", "fp32"),
    ("openvino", "fp16"),
    ("openvino", "int8"),
    ("litert", "fp32"),
    ("litert", "fp16"),
    ("litert", "int8"),
)
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "litert": ".tflite"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        default="/tmp/demo_det/best",
        help="a trained preset directory (or name)",
    )
    source.add_argument(
        "--random",
        metavar="PRESET",
        help="time this preset's architecture, random weights, no AP",
    )
    p.add_argument(
        "--coco-json",
        help="validation annotations (default: the demo's synthetic validation set)",
    )
    p.add_argument("--image-dir", help="images of --coco-json")
    p.add_argument(
        "--calibration",
        default="demo",
        help="INT8 calibration images: 'demo' (the demo's training images), or any `export` calibration source",
    )
    p.add_argument("--calibration-count", type=int, default=200)
    p.add_argument(
        "--rows",
        default=",".join(f"{f}:{p}" for f, p in ROWS),
        help="format:precision,...",
    )
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--out-dir", help="keep the artefacts here (default: a temporary folder)"
    )
    p.add_argument("--json", help="write results here")
    return p.parse_args(argv)


def demo_sources():
    """(train, validation) of `rtmdet demo --task det` (256 / 32 generated images, 120-160 px)."""
    from keras_rtmdet_cli.demo import demo_sources as sources

    return sources(task="det", num_images=256, side=160, seed=0)


def load_runner(fmt, precision, path, threads):
    """A callable: (1, H, W, 3) uint8 → {output name: array}, for the artefact at `path`."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        return lambda images: dict(zip(names, session.run(None, {"images": images})))
    if fmt == "openvino":
        import openvino as ov

        from keras_rtmdet.export.metadata import read_metadata

        config = dict(
            read_metadata(path).get("openvino_compile_config", {}),
            INFERENCE_NUM_THREADS=threads,
        )
        compiled = ov.Core().compile_model(path, "CPU", config)
        request = compiled.create_infer_request()

        def run(images):
            results = request.infer({0: images})
            return {o.get_any_name(): np.asarray(results[o]) for o in compiled.outputs}

        return run
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    runner = interpreter.get_signature_runner()
    return lambda images: runner(images=images)


def timed(run, image, iters, warmup):
    for _ in range(warmup):
        run(image)
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - started)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times)}


def artefact_size_mb(fmt, path):
    files = [path, path[: -len(".xml")] + ".bin"] if fmt == "openvino" else [path]
    return sum(os.path.getsize(f) for f in files) / 2**20


def evaluate(run, source, input_size):
    """COCO box stats of `run` on every image of `source`, letterboxed into `input_size` at batch 1."""
    from keras_rtmdet.evaluation.coco_metrics import coco_evaluate, detections_to_coco
    from keras_rtmdet.export.calibration import fit_to_input

    results = []
    for image_id in source.image_ids:
        image = np.asarray(source.load_image(image_id))
        scale = min(input_size[0] / image.shape[0], input_size[1] / image.shape[1])
        out = run(fit_to_input(image, input_size)[None])
        n = int(np.asarray(out["num_detections"]).reshape(-1)[0])
        boxes = np.asarray(out["boxes"])[:, :n] / scale
        boxes = np.clip(boxes, 0, [image.shape[1], image.shape[0]] * 2)
        detections = {
            "boxes": boxes,
            "scores": np.asarray(out["scores"])[:, :n],
            "labels": np.asarray(out["labels"])[:, :n],
        }
        results.extend(detections_to_coco([image_id], detections, source.category_ids))
    stats = coco_evaluate(source.coco, results, image_ids=source.image_ids)
    return {"AP": float(stats["AP"]), "AP50": float(stats["AP50"])}


def load_model(args):
    from keras_rtmdet import RTMDet

    if args.random:
        return RTMDet.from_preset(args.random, load_weights=False)
    return RTMDet.from_preset(args.preset)


def validation_source(args):
    if args.random:
        return None
    if args.coco_json:
        from keras_rtmdet.data.coco_json import CocoJsonSource

        return CocoJsonSource(args.coco_json, args.image_dir)
    return demo_sources()[1]


def calibration_source(args):
    if args.calibration != "demo":
        return args.calibration
    return "synthetic" if args.random else demo_sources()[0]


def benchmark_row(model, fmt, precision, folder, args, source, image):
    from keras_rtmdet.export.export import export

    path = os.path.join(folder, f"{fmt}_{precision}{SUFFIX[fmt]}")
    row = {"format": fmt, "precision": precision}
    started = time.perf_counter()
    calibration = {}
    if precision == "int8":
        calibration = {
            "calibration": calibration_source(args),
            "calibration_count": args.calibration_count,
        }
    try:
        export(
            model,
            path,
            format=fmt,
            precision=precision,
            batch_size=1,
            verbose=False,
            **calibration,
        )
        row["export_s"] = time.perf_counter() - started
        row["size_mb"] = artefact_size_mb(fmt, path)
        run = load_runner(fmt, precision, path, args.threads)
        if source is not None:
            row.update(evaluate(run, source, tuple(model.image_size)))
        row.update(timed(run, image, args.iters, args.warmup))
    # A format that cannot be written or run here is reported in its row, not fatal.
    except Exception as error:  # noqa: BLE001
        row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
    return row


def keras_row(model, source):
    from keras_rtmdet.evaluation.coco_metrics import evaluate_coco

    stats = evaluate_coco(model, source, batch_size=8, verbose=0, print_table=False)
    return {
        "format": "keras predict",
        "precision": "fp32",
        "AP": float(stats["AP"]),
        "AP50": float(stats["AP50"]),
    }


def markdown(rows):
    lines = [
        "| format | precision | box AP | AP50 | size MB | latency ms median (min) | vs ORT fp32 (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = next(
        (
            r["median_ms"]
            for r in rows
            if r["format"] == "onnx" and r["precision"] == "fp32" and "median_ms" in r
        ),
        None,
    )
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['format']} | {r['precision']} | not written: {r['error'][:120]} | | | | |"
            )
            continue
        ap = f"{r['AP']:.3f}" if "AP" in r else "–"
        ap50 = f"{r['AP50']:.3f}" if "AP50" in r else "–"
        size = f"{r['size_mb']:.2f}" if "size_mb" in r else "–"
        latency = (
            f"{r['median_ms']:.1f} ({r['min_ms']:.1f})" if "median_ms" in r else "–"
        )
        ratio = f"{base / r['median_ms']:.2f}×" if base and "median_ms" in r else "–"
        lines.append(
            f"| {r['format']} | {r['precision']} | {ap} | {ap50} | {size} | {latency} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv=None):
    import keras

    args = parse_args(argv)
    model = load_model(args)
    source = validation_source(args)
    image = np.random.default_rng(0).integers(
        0, 256, (1, *model.image_size, 3), dtype=np.uint8
    )
    if source is not None:
        from keras_rtmdet.export.calibration import fit_to_input

        image = fit_to_input(
            np.asarray(source.load_image(source.image_ids[0])), tuple(model.image_size)
        )[None]
    rows = [keras_row(model, source)] if source is not None else []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out_dir or scratch
        os.makedirs(folder, exist_ok=True)
        for spec in args.rows.split(","):
            fmt, precision = spec.split(":")
            rows.append(
                benchmark_row(model, fmt, precision, folder, args, source, image)
            )
            print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows)
    print(table)
    result = {
        "model": args.random or args.preset,
        "random_weights": bool(args.random),
        "served_size": list(model.image_size),
        "validation": None
        if source is None
        else (args.coco_json or "demo synthetic validation (32 images)"),
        "validation_images": None if source is None else len(source.image_ids),
        "calibration": args.calibration,
        "calibration_count": args.calibration_count,
        "threads": args.threads,
        "iters": args.iters,
        "warmup": args.warmup,
        "backend": keras.config.backend(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "rows": rows,
        "markdown": table,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
