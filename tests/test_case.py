"""Shared helpers for the test suite (the keras-hub `TestCase` idea, as functions)."""

import json
import os

import keras
import numpy as np

from keras_rtmdet import RTMDet

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# The tiny detector's input side and the generated images' size.
SIZE = 64


def shapes_batch(num_images=4, seed=0):
    """Coloured rectangles on a grey background; class = colour."""
    rng = np.random.default_rng(seed)
    images = np.full((num_images, SIZE, SIZE, 3), 40, np.float32)
    boxes = np.full((num_images, 3, 4), -1, np.float32)
    labels = np.full((num_images, 3), -1, np.int32)
    colours = [[255, 60, 60], [60, 255, 60], [60, 60, 255]]
    for i in range(num_images):
        for j in range(2):
            # One object per half of the image, so that none hides another.
            # At least 20 px: four or more stride-8 priors fall inside every
            # box. With only one, a prior whose initial box comes out inverted
            # has IoU 0, hence a zero soft label and zero box-loss weight (as in
            # the reference), and that object may never be learnt.
            w, h = rng.integers(20, SIZE // 2 - 2), rng.integers(20, 30)
            x0, y0 = j * SIZE // 2 + rng.integers(0, SIZE // 2 - w), rng.integers(0, SIZE - h)
            c = int(rng.integers(0, 3))
            images[i, y0 : y0 + h, x0 : x0 + w] = colours[c]
            boxes[i, j] = [x0, y0, x0 + w, y0 + h]
            labels[i, j] = c
    return images, {"boxes": boxes, "labels": labels}


def tiny_model(**kwargs):
    """RTMDet-tiny's layout at widen 0.125 (linear head), 3 classes, SIZE², seeded."""
    keras.utils.set_random_seed(1)
    return RTMDet.from_arch(0.167, 0.125, 1, False, num_classes=3, image_size=(SIZE, SIZE), **kwargs)


def iou_matrix(a, b):
    """IoU of every xyxy box of `a` (N, 4) with every box of `b` (M, 4): (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


# Dense-array tolerance of the reference fixtures (fixtures/README.md).
DENSE_REL_TOL = 2e-4


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def variable_values(variables):
    """The values of `variables` as numpy arrays, to set them back with `assign_values`."""
    return [to_numpy(v.value) for v in variables]


def assign_values(variables, values):
    """Sets every variable back to its value in `values` (from `variable_values`)."""
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def trainable_parameter_count(model):
    """Trainable scalars of `model`, each shared variable once (as the reference counts)."""
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def build_shapes_only(build):
    """`build()` with every variable created by shape only, never initialised.

    The model is the real one (same layers, variables, shapes and trainable
    flags), so `trainable_parameter_count` counts it as before, without
    drawing up to 100M random values (on JAX: compiling every initializer).
    Its variables have no values: only for counting. They are taken off
    Keras' list of variables to initialise later, which would fill them.
    """
    from keras.src.backend.common import global_state

    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            return build()
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def one_batch_forever(x, y):
    """`(x, y)` as one batch, repeated: `fit(it, steps_per_epoch=1, epochs=N)` takes N steps on it.

    The steps of `fit(x, y, batch_size=len(x), epochs=N)` (less the reshuffle of the batch's rows each
    epoch), one epoch each as before; but Keras keeps this iterator for all epochs, where numpy arrays
    get a new one every epoch (~0.1-0.2 s on TensorFlow, for each of N epochs).
    """
    import tensorflow as tf

    return tf.data.Dataset.from_tensors((x, y)).repeat()


class AtStep(keras.callbacks.Callback):
    """Runs `action(model)` once, when training step (`epoch`, `batch`), both 0-based, begins or ends (`when`)."""

    def __init__(self, epoch, batch, action, when="begin"):
        super().__init__()
        self.at, self.action, self.when, self.epoch = (epoch, batch), action, when, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _step(self, batch, when):
        if (self.epoch, batch) == self.at and when == self.when:
            self.action(self.model)

    def on_train_batch_begin(self, batch, logs=None):
        self._step(batch, "begin")

    def on_train_batch_end(self, batch, logs=None):
        self._step(batch, "end")


def load_fixture(name):
    """The arrays and meta.json of a reference fixture folder: a name under tests/fixtures, or a path."""
    folder = os.path.join(FIXTURES, name)
    data = {"path": folder}
    for part in ("inputs", "features", "head", "preds"):
        data[part] = dict(np.load(os.path.join(folder, f"{part}.npz")))
    with open(os.path.join(folder, "meta.json")) as f:
        data["meta"] = json.load(f)
    data["checkpoint"] = os.path.join(folder, "checkpoint.pth")
    return data


def nchw_to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def dense_relative_error(actual, reference_nchw, name):
    """max|Δ| / max|ref| of an NHWC result against an NCHW (or flat) reference array."""
    ref = nchw_to_nhwc(reference_nchw) if reference_nchw.ndim == 4 else reference_nchw
    actual = to_numpy(actual)
    assert actual.shape == ref.shape, f"{name}: shape {actual.shape} != {ref.shape}"
    return float(np.abs(actual - ref).max() / np.abs(ref).max())


def assert_dense_close(actual, reference_nchw, name):
    """max|Δ| ≤ 2e-4 · max|ref|, the fixtures' dense-array tolerance."""
    err = dense_relative_error(actual, reference_nchw, name)
    assert err <= DENSE_REL_TOL, f"{name}: relative error {err:.3g} > {DENSE_REL_TOL}"
    return err


def run_serialization_test(obj):
    """`get_config` → `from_config` gives an equal config, and survives JSON."""
    config = obj.get_config()
    clone = type(obj).from_config(config)
    assert json.loads(json.dumps(clone.get_config())) == json.loads(json.dumps(config))
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(revived) is type(obj)
    return clone
