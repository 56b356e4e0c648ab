"""Training throughput of RTMDet: the whole step (forward, assigner, losses, backward, AdamW).

    KERAS_BACKEND=jax python benchmarks/train_benchmark.py --preset rtmdet_s_coco --batch-size 32
    KERAS_BACKEND=jax python benchmarks/train_benchmark.py --devices 2 --batch-size 64     (data-parallel)
    KERAS_BACKEND=torch torchrun --nproc-per-node 2 benchmarks/train_benchmark.py --batch-size 64

Data-parallel (`--devices` on JAX / TensorFlow, torchrun on PyTorch): `--batch-size` is the global
batch, each device computing its share; images/s counts the global batch. Scaling efficiency of N
devices = images/s(N) / (N · images/s(1)) at the same per-device batch.

Random weights and synthetic images with `--gts` random boxes each (Ins
presets: box-shaped masks at stride 4, as the pipeline emits them; rotated
presets: the boxes at random angles); reports
images/s (median step time after warm-up; each step ends with the loss back
on the host, which synchronises the device) and peak device memory.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_rtmdet import DenseDetector  # noqa: E402
from keras_rtmdet.distribute import DataParallel  # noqa: E402
from keras_rtmdet.distribute import process_count  # noqa: E402
from keras_rtmdet.distribute import process_rank  # noqa: E402
from keras_rtmdet.distribute.replicas import data_parallel_size  # noqa: E402
from keras_rtmdet.training.optimizer import rtmdet_optimizer  # noqa: E402


def synthetic_batch(batch, size, gts, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    centres = rng.uniform(0.1 * size, 0.9 * size, (batch, gts, 2))
    wh = rng.uniform(0.03 * size, 0.4 * size, (batch, gts, 2))
    boxes = np.clip(np.concatenate([centres - wh / 2, centres + wh / 2], -1), 0, size).astype("float32")
    labels = rng.integers(0, 80, (batch, gts)).astype("int32")
    return images, {"boxes": boxes, "labels": labels}


def with_box_masks(targets, size, stride=4):
    """Ins targets as the training pipeline gives them: each box filled, sampled at [2::4, 2::4], plus centres."""
    boxes = targets["boxes"]
    grid = np.arange(stride // 2, size, stride, dtype=np.float32)
    inside_x = (grid >= boxes[..., 0:1]) & (grid < boxes[..., 2:3])
    inside_y = (grid >= boxes[..., 1:2]) & (grid < boxes[..., 3:4])
    masks = (inside_y[..., :, None] & inside_x[..., None, :]).astype(np.uint8)
    centers = ((boxes[..., :2] + boxes[..., 2:]) / 2).astype(np.float32)
    return dict(targets, masks=masks, mask_centers=centers)


def as_rotated(targets, num_classes, seed=0):
    """RTMDet-R targets: each box as an rbox (its centre and sides) at a random angle."""
    rng = np.random.default_rng(seed)
    boxes = targets["boxes"]
    centres, wh = (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]
    angles = rng.uniform(-np.pi / 2, np.pi / 2, boxes.shape[:-1] + (1,))
    rboxes = np.concatenate([centres, wh, angles], -1).astype("float32")
    return {"boxes": rboxes, "labels": targets["labels"] % num_classes}


def peak_memory_gib():
    backend = keras.config.backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**30
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**30
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="rtmdet_s_coco")
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gts", type=int, default=20, help="GT boxes per image")
    parser.add_argument("--dtype", default="float32", help="float32 or mixed_bfloat16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--devices", help="data-parallel over N local devices or 'all' (JAX, TensorFlow)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    if args.devices is None and "WORLD_SIZE" not in os.environ:
        return run(args)
    devices = None if args.devices in (None, "all") else int(args.devices)
    with DataParallel(devices=devices):
        return run(args)


def run(args):
    keras.config.set_dtype_policy(args.dtype)
    replicas, processes, rank = data_parallel_size(), process_count(), process_rank()
    if args.batch_size % replicas:
        raise SystemExit(f"--batch-size {args.batch_size} does not split over {replicas} replicas")
    model = DenseDetector.from_preset(args.preset, load_weights=False, image_size=(args.image_size,) * 2)
    model.compile(optimizer=rtmdet_optimizer(model, 300, 500, args.batch_size))
    local = args.batch_size // processes
    x, y = synthetic_batch(local, args.image_size, args.gts, seed=rank)
    if "loss_mask" in model.loss_names:
        y = with_box_masks(y, args.image_size)
    if model.bounding_box_format == "xywha":
        y = as_rotated(y, model.num_classes)
    start = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - start
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        logs = model.train_on_batch(x, y, return_dict=True)
        float(logs["loss"])
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {
        "backend": keras.config.backend(),
        "preset": args.preset,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "data_parallel_replicas": replicas,
        "batch_per_replica": args.batch_size // replicas,
        "gts_per_image": args.gts,
        "dtype": args.dtype,
        "first_step_s": round(first, 2),
        "median_step_ms": round(median * 1e3, 2),
        "images_per_s": round(args.batch_size / median, 1),
        "peak_memory_gib": peak_memory_gib(),
        "loss": {k: float(v) for k, v in logs.items()},
    }
    if rank != 0:
        return
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
