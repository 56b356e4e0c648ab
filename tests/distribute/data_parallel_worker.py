"""Training runs of a tiny RTMDet, on one device and data-parallel; writes their losses and weights.

    python data_parallel_worker.py single|parallel|both OUT_DIR [--models det,ins] [--recipe]
    torchrun --nproc-per-node 2 data_parallel_worker.py parallel OUT_DIR [--models det,ins] [--recipe]

For each model kind, `single` writes OUT_DIR/<kind>-single.npz and `parallel` OUT_DIR/<kind>-parallel.npz
(`both`: the two in one process; JAX and TensorFlow). `--recipe` then trains with `train_rtmdet` (EMA,
backups, COCO evaluation, logs) data-parallel in OUT_DIR/recipe and writes each process' epoch losses to
OUT_DIR/recipe/history-<rank>.json. Everything a backend checks runs in one launch (two on torch: the
one-device reference, then the torchrun processes), so that the interpreter, the backend and the process
group start once.

`parallel` splits every global batch of GLOBAL_BATCH images over REPLICAS replicas (two virtual CPU devices
on JAX and TensorFlow, two gloo processes on torch) through `keras_rtmdet.distribute.DataParallel`; with
the same seed, data and SGD steps it must end with `single`'s losses and weights. The two halves of each
batch hold different numbers of objects, so a per-replica loss normaliser or per-replica BatchNorm
statistics would show.
"""

import argparse
import os
import sys

REPLICAS, GLOBAL_BATCH, STEPS, SIZE = 2, 4, 2, 64


def configure_devices(mode):
    """Virtual CPU devices, before the backend starts."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if mode == "parallel" and backend == "jax":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={REPLICAS}"
    if mode == "parallel" and backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)


def training_data():
    """GLOBAL_BATCH · STEPS images of SIZE² with 1 object in the first half of each batch, 3 in the second."""
    import numpy as np

    rng = np.random.default_rng(0)
    count = GLOBAL_BATCH * STEPS
    images = rng.uniform(0, 255, (count, SIZE, SIZE, 3)).astype("float32")
    boxes = np.zeros((count, 3, 4), "float32")
    labels = np.full((count, 3), -1, "int32")
    for i in range(count):
        objects = 1 if i % GLOBAL_BATCH < GLOBAL_BATCH // 2 else 3
        for j in range(objects):
            x0, y0 = rng.uniform(2, 30, 2)
            w, h = rng.uniform(12, 30, 2)
            boxes[i, j] = [x0, y0, min(x0 + w, SIZE - 1), min(y0 + h, SIZE - 1)]
            labels[i, j] = rng.integers(0, 3)
            images[i, int(y0):int(y0 + h), int(x0):int(x0 + w)] = 40.0 * (labels[i, j] + 1)
    return images, {"boxes": boxes, "labels": labels}


def shard(images, targets, rank, processes):
    """This process' rows: its contiguous slice of every global batch (what each replica gets on JAX/TF)."""
    import numpy as np

    local = GLOBAL_BATCH // processes
    rows = np.concatenate([np.arange(s * GLOBAL_BATCH + rank * local, s * GLOBAL_BATCH + (rank + 1) * local)
                           for s in range(STEPS)])
    return images[rows], {k: v[rows] for k, v in targets.items()}, local


def build_model(kind):
    import keras

    from keras_rtmdet import RTMDet

    from keras_rtmdet import RTMDetIns

    keras.utils.set_random_seed(0)
    model_class = RTMDetIns if kind == "ins" else RTMDet
    # exp_on_reg (RTMDet-Ins always has it): the random head's first boxes overlap the objects, so the loss
    # normaliser is above its floor of 1.
    arch = (0.167, 0.125, 1) if kind == "ins" else (0.167, 0.125, 1, True)
    model = model_class.from_arch(*arch, num_classes=3, image_size=(SIZE, SIZE))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05))
    return model


def add_masks(targets):
    import numpy as np

    boxes = targets["boxes"]
    masks = np.zeros(boxes.shape[:2] + (SIZE, SIZE), "float32")
    for i, j in zip(*np.nonzero(targets["labels"] >= 0)):
        x0, y0, x1, y1 = boxes[i, j].astype(int)
        masks[i, j, y0:y1, x0:x1] = 1.0
    return {**targets, "masks": masks}


class StepLosses:
    """Each step's running loss logs (what the progress bar shows)."""

    def __new__(cls):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.steps = []

            def on_train_batch_end(self, batch, logs=None):
                self.steps.append({k: float(v) for k, v in logs.items()})

        return Recorder()


def run_recipe(run_dir):
    import json

    import keras

    from keras_rtmdet import RTMDet
    from keras_rtmdet.data.synthetic import SyntheticShapesSource
    from keras_rtmdet.distribute import DataParallel
    from keras_rtmdet.distribute import process_rank
    from keras_rtmdet.training.train_recipe import train_rtmdet

    train = SyntheticShapesSource(2 * GLOBAL_BATCH, image_size=(SIZE, SIZE), num_classes=3, seed=0)
    val = SyntheticShapesSource(2, image_size=(SIZE, SIZE), num_classes=3, seed=1)
    keras.backend.clear_session()
    with DataParallel():
        model = RTMDet.from_arch(0.167, 0.125, 1, True, num_classes=3, image_size=(SIZE, SIZE))
        history = train_rtmdet(
            model, train, run_dir, epochs=1, batch_size=GLOBAL_BATCH, val_source=val, model_size="tiny",
            stage2_epochs=0, warmup_steps=1, seed=0, verbose=0,
        )
        with open(os.path.join(run_dir, f"history-{process_rank()}.json"), "w") as f:
            json.dump(history.history, f)


def train_once(mode, out, kind):
    """`mode` "single" or "parallel": one fit of STEPS global batches; the chief writes `out`."""
    import contextlib

    import keras
    import numpy as np

    from keras_rtmdet.distribute import DataParallel

    from keras_rtmdet.distribute import process_count

    from keras_rtmdet.distribute import process_rank

    keras.backend.clear_session()  # the same weight paths in both runs of one process
    images, targets = training_data()
    if kind == "ins":
        targets = add_masks(targets)
    block = DataParallel() if mode == "parallel" else contextlib.nullcontext()
    with block:
        replicas = getattr(block, "num_replicas", 1)
        if mode == "parallel" and replicas != REPLICAS:
            sys.exit(f"expected {REPLICAS} replicas, DataParallel has {replicas}")
        rank = process_rank()
        images, targets, batch = shard(images, targets, rank, process_count())
        model = build_model(kind)
        initial = {f"init:{v.path}": keras.ops.convert_to_numpy(v.value) for v in model.weights}
        recorder = StepLosses()
        model.fit(images, targets, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
        if rank == 0:
            weights = {f"w:{v.path}": keras.ops.convert_to_numpy(v.value) for v in model.weights}
            logs = {f"log:{k}": np.array([step[k] for step in recorder.steps]) for k in recorder.steps[0]}
            np.savez(out, replicas=replicas, **initial, **weights, **logs)


def main():
    import contextlib

    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("single", "parallel", "both"))
    parser.add_argument("out_dir", help="where <kind>-<mode>.npz (and recipe/) are written")
    parser.add_argument("--models", default="det", help="comma-separated kinds: det, ins")
    parser.add_argument("--recipe", action="store_true", help="then train_rtmdet's recipe data-parallel")
    args = parser.parse_args()
    configure_devices("single" if args.mode == "single" else "parallel")
    kinds = args.models.split(",")
    modes = ("single", "parallel") if args.mode == "both" else (args.mode,)
    # torch: join torchrun's process group once for every run below (each run's own block then keeps it).
    from keras_rtmdet.distribute import DataParallel

    torchrun = os.environ.get("KERAS_BACKEND") == "torch" and "WORLD_SIZE" in os.environ
    with DataParallel() if torchrun else contextlib.nullcontext():
        for mode in modes:
            for kind in kinds:
                train_once(mode, os.path.join(args.out_dir, f"{kind}-{mode}.npz"), kind)
        if args.recipe:
            run_recipe(os.path.join(args.out_dir, "recipe"))


if __name__ == "__main__":
    main()
