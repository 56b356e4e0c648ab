"""Shared helpers for the test suite (keras-hub's `TestCase`, as plain functions for pytest's fixtures).

A variant's task test is a module fixture (a `TaskCase`: the tiny model, its training batch and raw
images) plus one-line tests, each calling one `run_*_test` helper below.
"""

import contextlib
import functools
import http.server
import json
import os
import threading

import cv2
import keras
import numpy as np

from keras_rtmdet import RTMDet
from keras_rtmdet import RTMDetIns
from keras_rtmdet import RTMDetRotated
from keras_rtmdet.models import reference_fixture
from keras_rtmdet.utils.coco_classes import COCO_CLASSES
from keras_rtmdet.utils.detection_matching import match_detections

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# The tiny detector's input side and the generated images' size.
SIZE = 64
# RTMDet-tiny's depth at an eighth of its width (32 neck channels): the smallest layout the configs scale to.
TINY_ARCH = {"deepen_factor": 0.167, "widen_factor": 0.125, "neck_num_csp_blocks": 1}


class CountedPostprocess:
    """Counts the runs of `model.postprocess`: once per trace of a compiled step, once per call of an eager one."""

    def __init__(self, model):
        self.model, self.runs = model, 0
        self.original = model.postprocess

    def __enter__(self):
        def counted(*args, **kwargs):
            self.runs += 1
            return self.original(*args, **kwargs)

        self.model.postprocess = counted
        return self

    def __exit__(self, *exc):
        del self.model.postprocess


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


def write_moving_square_video(path, frames=10, height=48, width=64, fps=10.0):
    """A `frames`-frame MJPG video (.avi) of a red square moving right on grey; returns the RGB frames written."""
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), f"this OpenCV cannot write MJPG to {path}"
    written = []
    for i in range(frames):
        frame = np.full((height, width, 3), 90, np.uint8)
        frame[10:26, 4 + 4 * i : 20 + 4 * i] = (230, 30, 30)
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
        written.append(frame)
    writer.release()
    return written


@contextlib.contextmanager
def serving(folder):
    """`folder`'s files over HTTP from a local server in a thread (no network needed); yields its base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass  # one line per request on stderr otherwise

    handler = functools.partial(QuietHandler, directory=os.fspath(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tiny_model(task=RTMDet, exp_on_reg=False, num_classes=3, image_size=(SIZE, SIZE), seed=1, **settings):
    """`task` (RTMDet, RTMDetIns or RTMDetRotated) at `TINY_ARCH`, its variables drawn after `set_random_seed(seed)`.

    `exp_on_reg`: the m/l/x box branch (RTMDetIns has only that one and ignores it); `seed=None` draws from
    the generator as the caller left it; `settings` go to the constructor (thresholds, class names, ...).
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return task.from_arch(**TINY_ARCH, exp_on_reg=exp_on_reg, num_classes=num_classes, image_size=image_size, **settings)


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


# The task of a fixture's or dump's meta.json `kind`.
REFERENCE_TASKS = {"det": RTMDet, "ins": RTMDetIns, "rot": RTMDetRotated}


def reference_model(reference, **settings):
    """The model a reference fixture (`load_fixture`) or dump records, its checkpoint loaded.

    Architecture, input size and post-processing (the reference's `test_cfg`) from its meta.json, BGR
    input as the reference's, COCO's class names for an 80-class head; `settings` override any of them.
    """
    meta = reference["meta"]
    arch, size = meta["arch"], meta["arch"]["input_size"]
    kwargs = {
        "num_classes": arch["num_classes"],
        "class_names": COCO_CLASSES if arch["num_classes"] == len(COCO_CLASSES) else None,
        "image_size": (size, size),
        "input_channel_order": "bgr",
        # Called through its module: pytest would collect a `test_*` name in this file as a test.
        **reference_fixture.test_cfg_settings(meta["test_cfg"]),
        **settings,
    }
    model = REFERENCE_TASKS[meta["kind"]].from_arch(
        deepen_factor=arch["deepen_factor"],
        widen_factor=arch["widen_factor"],
        neck_num_csp_blocks=arch["num_csp_blocks"],
        exp_on_reg=arch["exp_on_reg"],
        **kwargs,
    )
    model.load_checkpoint(reference["checkpoint"])
    return model


def assert_reference_detections(fx, out, prefix, max_det, score_thr):
    """Every detection of image b in `out` and of the fixture's `{prefix}img{b}_*` explained by the other side.

    A reference list cut at `max_det` drops candidates scoring below its last one: those count as explained.
    """
    preds = fx["preds"]
    for b in range(2):
        n = int(out["num_detections"][b])
        ref_scores = preds[f"{prefix}img{b}_scores"]
        floors = [score_thr] + ([float(ref_scores.min())] if len(ref_scores) == max_det else [])
        result = match_detections(
            (out["boxes"][b, :n], out["scores"][b, :n], out["labels"][b, :n]),
            (preds[f"{prefix}img{b}_bboxes"], ref_scores, preds[f"{prefix}img{b}_labels"]),
            score_floors=floors,
        )
        bad_ours, bad_ref = result["unexplained_ours"], result["unexplained_reference"]
        assert not bad_ours and not bad_ref, (
            f"{prefix}img{b}: {len(bad_ours)} of our {n} and {len(bad_ref)} of "
            f"{len(ref_scores)} reference detections unmatched"
        )
        assert result["matched"] >= len(ref_scores) - 2
        assert np.all(out["labels"][b, n:] == -1) and np.all(out["scores"][b, n:] == -1)


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


# --- task tests: a variant's tiny model from build to `.keras` file and preset ---

# A fresh head scores every class near its prior (0.01) and the linear box branch gives near-point boxes:
# a lower threshold and a negative minimum box size let a random model detect, so that the round trips
# compare detections, not padding (RTMDetIns' and -R's default 0.05 would leave none). Few detections
# and NMS candidates keep the outputs and the rotated NMS small.
TASK_SETTINGS = {"score_threshold": 0.001, "min_bbox_size": -1, "max_detections": 20, "max_candidates": 256}


def raw_images(seed=0):
    """Two uint8 images, one wider and one taller than the model's input: `predict` letterboxes each."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((48, 80, 3), (72, 40, 3))]


class TaskCase:
    """One variant's task test: its tiny model, built once and never compiled, a training batch's images and
    raw images to detect in.

    A module-scoped fixture returns one (keras-hub's `setUp`); its tests are one-line calls of the
    `run_*_test` helpers, which share the model, its `predictions` and its `detections`.
    """

    def __init__(self, task, exp_on_reg=False, **settings):
        self.model = tiny_model(task, exp_on_reg, **{**TASK_SETTINGS, **settings})
        self.x, _ = shapes_batch(2)
        self.images = raw_images()
        self._predictions = None
        self._detections = None

    @property
    def predictions(self):
        """`model.predict(images)`, computed once."""
        if self._predictions is None:
            self._predictions = self.model.predict(self.images, verbose=0)
        return self._predictions

    @property
    def detections(self):
        """`detections_of(model)`, computed once: what every round trip must give again."""
        if self._detections is None:
            self._detections = self.detections_of(self.model)
            assert np.all(self._detections["num_detections"] > 0), "nothing detected: the round trips would compare padding"
        return self._detections

    def detections_of(self, model):
        """`model`'s detections in `images`: its own letterbox, then `detect`, the post-processing that
        `predict` compiles, run eagerly (a `predict` per restored model would compile it again: 3-9 s
        each on TensorFlow and JAX)."""
        batch = model.preprocessor(self.images, input_channel_order="rgb", output_channel_order=model.input_channel_order)
        detections = model.detect(batch["images"], scale_factors=batch["scale_factors"])
        return {key: to_numpy(value) for key, value in detections.items()}


def run_build_test(case):
    """The eager forward of the training batch: the variant's outputs, one row per prior."""
    model, batch = case.model, len(case.x)
    priors = int(model.priors(case.x.shape[1:3]).shape[0])
    shapes = {"cls_logits": (batch, priors, model.num_classes), "bbox_preds": (batch, priors, 4)}
    if model.variant.box_format == "xywha":
        shapes["angle_preds"] = (batch, priors, 1)
    if model.variant.predicts_masks:
        stride = model.strides[0]
        shapes["kernel_preds"] = (batch, priors, model.head.num_gen_params)
        shapes["mask_feat"] = (batch, SIZE // stride, SIZE // stride, model.head.mask_head.num_prototypes)
    outputs = model(case.x)
    assert {key: tuple(value.shape) for key, value in outputs.items()} == shapes
    assert all(np.all(np.isfinite(to_numpy(value))) for value in outputs.values())


def run_fit_step_test(model, x, y=None, **fit_kwargs):
    """One `fit` epoch of a compiled `model`: finite loss terms adding up to the loss; every convolution
    kernel of the backbone and neck moved, and some variable of the head. Arrays go in as one batch; a
    dataset needs `steps_per_epoch`."""
    if isinstance(x, np.ndarray):
        fit_kwargs.setdefault("batch_size", len(x))
    # Every loss term reaches every kernel of the backbone and neck. Not every other variable moves: the
    # first step of a warmup changes BatchNorm's γ = 1 by less than float32 resolves, and the head's box
    # branch of a level without positive priors gets no gradient (the box loss counts positives only).
    kernels = [v for v in model.backbone.trainable_variables + model.neck.trainable_variables if len(v.shape) == 4]
    watched = kernels + model.head.trainable_variables
    before = variable_values(watched)
    history = model.fit(x, y, epochs=1, verbose=0, **fit_kwargs).history
    terms = {key: values[-1] for key, values in history.items() if key.startswith("loss_")}
    assert terms and np.all(np.isfinite([history["loss"][-1], *terms.values()])), history
    np.testing.assert_allclose(history["loss"][-1], sum(terms.values()), rtol=1e-4)
    moved = [not np.array_equal(to_numpy(v), value) for v, value in zip(watched, before)]
    assert all(moved[: len(kernels)]), [v.path for v, m in zip(kernels, moved) if not m]
    assert any(moved[len(kernels) :]), "no head variable moved"
    return history


def run_predict_test(case):
    """`predict` on raw uint8 images: the variant's outputs, best first, padded with -1 after `num_detections`
    (RTMDetIns: masks at the largest image's size, empty past each image and past its count)."""
    model, out = case.model, case.predictions
    batch, slots = len(case.images), model.max_detections
    shapes = {
        "boxes": (batch, slots, 5 if model.variant.box_format == "xywha" else 4),
        "scores": (batch, slots),
        "labels": (batch, slots),
        "num_detections": (batch,),
    }
    if model.variant.predicts_masks:
        height, width = (max(image.shape[axis] for image in case.images) for axis in (0, 1))
        shapes["masks"] = (batch, slots, height, width)
    assert {key: value.shape for key, value in out.items()} == shapes
    assert np.all(out["num_detections"] > 0), "nothing detected: the checks below would see padding only"
    for b, n in enumerate(out["num_detections"]):
        assert np.all(np.diff(out["scores"][b, :n]) <= 0)
        assert np.all((out["labels"][b, :n] >= 0) & (out["labels"][b, :n] < model.num_classes))
        for key in ("boxes", "scores", "labels"):
            assert np.all(out[key][b, n:] == -1), key
        if "masks" in out:
            height, width = case.images[b].shape[:2]
            masks = out["masks"][b]
            assert masks.dtype == bool and not masks[n:].any() and not masks[:, height:].any()
            assert not masks[:, :, width:].any()


def assert_same_detections(actual, expected):
    """Equal detections: integers exactly, boxes, scores (and RTMDetIns' mask logits) to float32 rounding."""
    assert set(actual) == set(expected)
    for key, value in expected.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(actual[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(actual[key], value, err_msg=key)


def run_config_round_trip_test(case):
    """`from_config(get_config())`: the same config (through JSON) and, given the weights, the same outputs
    and detections."""
    clone = run_serialization_test(case.model)
    clone.set_weights(case.model.get_weights())
    outputs = clone(case.x)
    for key, value in case.model(case.x).items():
        np.testing.assert_allclose(to_numpy(outputs[key]), to_numpy(value), rtol=1e-5, atol=1e-5, err_msg=key)
    assert_same_detections(case.detections_of(clone), case.detections)


def assert_restored(restored, case):
    """`restored` is the task's model again: its class, its config, its detections."""
    assert type(restored) is type(case.model)
    assert json.dumps(restored.get_config(), sort_keys=True) == json.dumps(case.model.get_config(), sort_keys=True)
    assert_same_detections(case.detections_of(restored), case.detections)


def run_keras_saving_test(case, folder):
    """`model.save(".keras")`, then `keras.saving.load_model`: the same model, the same detections."""
    path = os.path.join(folder, "model.keras")
    case.model.save(path)
    assert_restored(keras.saving.load_model(path), case)


def run_preset_saving_test(case, folder):
    """`save_to_preset(dir)`, then the variant's `from_preset(dir)`: the same model, the same detections."""
    preset = os.path.join(folder, "preset")
    case.model.save_to_preset(preset)
    assert_restored(type(case.model).from_preset(preset), case)
