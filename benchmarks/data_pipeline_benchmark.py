#!/usr/bin/env python
"""Images/s of the RTMDet training input pipelines (keras_rtmdet.data.pipeline) on the CPU.

Synthetic samples: 640x480 grey images with 10 coloured rectangles (boxes,
optionally masks), decoded once and cached in memory, so only the
augmentations are timed (no JPEG decoding, no file reads). Each stage is run
for `--batches` batches after `--warmup` untimed ones; images/s = images /
seconds of the timed part.

Examples:
    python benchmarks/data_pipeline_benchmark.py --batches 20 --json out.json
    python benchmarks/data_pipeline_benchmark.py --masks --batch-size 8 --batches 5
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_rtmdet.data.pipeline import train_pipeline  # noqa: E402
from keras_rtmdet.data.source_dataset import samples_dataset  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-size", default="s", choices=("tiny", "s", "m", "l", "x"))
    p.add_argument("--image-size", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=10, help="timed batches per stage")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first (tracing, pool filling)")
    p.add_argument("--num-samples", type=int, default=64, help="distinct synthetic samples (repeated)")
    p.add_argument("--masks", action="store_true", help="with instance masks (RTMDet-Ins targets)")
    p.add_argument("--stages", default="1,2")
    p.add_argument("--json", help="write the results to this file")
    return p.parse_args(argv)


def synthetic_samples(count, with_masks, height=480, width=640, boxes_per_image=10, seed=0):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        image = np.full((height, width, 3), 128, np.uint8)
        x1 = rng.integers(0, width - 80, boxes_per_image)
        y1 = rng.integers(0, height - 80, boxes_per_image)
        x2, y2 = x1 + rng.integers(16, 80, boxes_per_image), y1 + rng.integers(16, 80, boxes_per_image)
        masks = np.zeros((boxes_per_image, height, width), np.uint8)
        for j in range(boxes_per_image):
            image[y1[j] : y2[j], x1[j] : x2[j]] = rng.integers(0, 256, 3)
            masks[j, y1[j] : y2[j], x1[j] : x2[j]] = 1
        sample = {
            "image": image,
            "boxes": np.stack([x1, y1, x2, y2], -1).astype(np.float32),
            "labels": rng.integers(0, 80, boxes_per_image).astype(np.int32),
            "image_id": np.int64(i),
        }
        if with_masks:
            sample["masks"] = masks
        samples.append(sample)
    return samples


def as_dataset(samples):
    return samples_dataset(samples).cache().repeat()


def time_stage(samples, stage, args):
    ds = train_pipeline(
        samples, args.model_size, stage, args.image_size, args.batch_size, seed=0, shuffle_buffer=args.num_samples
    )
    iterator = iter(ds)
    for _ in range(args.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        images, _ = next(iterator)
    images.numpy()
    seconds = time.perf_counter() - start
    return {"stage": stage, "images": args.batches * args.batch_size, "seconds": seconds,
            "images_per_s": args.batches * args.batch_size / seconds}


def main(argv=None):
    args = parse_args(argv)
    samples = as_dataset(synthetic_samples(args.num_samples, args.masks))
    results = {
        "model_size": args.model_size, "image_size": args.image_size, "batch_size": args.batch_size,
        "masks": args.masks, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "tensorflow": tf.__version__, "stages": [],
    }
    for stage in (int(s) for s in args.stages.split(",")):
        result = time_stage(samples, stage, args)
        results["stages"].append(result)
        print(f"stage {stage}: {result['images_per_s']:.1f} images/s "
              f"({result['images']} images in {result['seconds']:.1f} s, {os.cpu_count()} CPUs)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
