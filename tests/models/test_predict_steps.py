"""`predict`'s compiled steps: per-call thresholds are inputs (never a recompilation), static settings get a
step of their own once, the letterbox runs on the device or the host with the same detections, and a
compiled step equals its eager `keras.ops` fallback.

On the model of the `det_mini_linear` fixture (random mmdet weights: no ties among its scores).
"""

import keras
import numpy as np
import pytest

from keras_rtmdet.models import compiled_step
from keras_rtmdet.models.compiled_step import COMPILING_BACKENDS
from keras_rtmdet.models.compiled_step import compile_step
from keras_rtmdet.utils.detection_matching import match_detections
from tests.test_case import CountedPostprocess
from tests.test_case import load_fixture
from tests.test_case import reference_model
from tests.test_case import to_numpy

PER_CALL = [
    {"score_threshold": 0.2},
    {"score_threshold": 0.3, "iou_threshold": 0.3},
    {"max_detections": 7},
    {"min_bbox_size": 40.0, "iou_threshold": 0.9},
]


@pytest.fixture(scope="module")
def case():
    fx = load_fixture("det_mini_linear")
    model = reference_model(fx)
    images = [fx["inputs"]["pipe_raw_image_0"], fx["inputs"]["pipe_raw_image_1"]]
    return model, images


def eager_detections(model, images, **settings):
    """What `predict` must give: the host letterbox, then `detect` (eager) with the settings set on the model."""
    prep = model.preprocessor(images, input_channel_order="bgr", output_channel_order="bgr")
    out = model.detect(prep["images"], prep["scale_factors"], **settings)
    out = {key: to_numpy(value) for key, value in out.items()}
    wanted = settings.get("max_detections", model.max_detections)
    return {key: value if key == "num_detections" else value[:, :wanted] for key, value in out.items()}


def assert_close_detections(actual, expected):
    """The same detections from two graphs (compiled / eager, two letterbox places), in any order among
    near-equal scores: each image's detections paired one to one, at most one unpaired on either side at the
    lowest kept score (a near-tie there may fall on either side of the `max_detections` cut)."""
    assert set(actual) == set(expected)
    for b, count in enumerate(expected["num_detections"]):
        n = int(actual["num_detections"][b])
        assert abs(n - int(count)) <= 1
        result = match_detections(
            *(tuple(out[key][b, :k] for key in ("boxes", "scores", "labels")) for out, k in ((actual, n), (expected, int(count)))),
            score_floors=[float(expected["scores"][b, : int(count)].min())] if count else [],
        )
        assert not result["unexplained_ours"] and not result["unexplained_reference"], f"image {b}"


def test_per_call_thresholds_never_recompile_and_leave_the_model_unchanged(case):
    model, images = case
    before = model.postprocess_config()
    with CountedPostprocess(model) as counter:
        outputs = [model.predict(images, channel_order="bgr", letterbox="host", verbose=0, **s) for s in PER_CALL]
    for out, settings in zip(outputs, PER_CALL, strict=True):
        assert_close_detections(out, eager_detections(model, images, **settings))
    compiling = keras.config.backend() in COMPILING_BACKENDS
    # One trace at most (none when an earlier test compiled the step); an eager step runs per call.
    assert counter.runs <= 1 if compiling else counter.runs == len(PER_CALL)
    assert model.postprocess_config() == before


def test_static_settings_compile_their_own_step_once(case):
    model, images = case
    with CountedPostprocess(model) as counter:
        for _ in range(2):
            few = model.predict(images, channel_order="bgr", letterbox="host", verbose=0, nms_pre=20)
        many = model.predict(images, channel_order="bgr", letterbox="host", verbose=0, max_detections=400)
        model.predict(images, channel_order="bgr", letterbox="host", verbose=0)
    assert_close_detections(few, eager_detections(model, images, nms_pre=20))
    assert many["scores"].shape == (2, 400)
    assert_close_detections(many, eager_detections(model, images, max_detections=400))
    if keras.config.backend() in COMPILING_BACKENDS:
        assert counter.runs <= 3


def test_device_and_host_letterbox_give_the_same_detections(case):
    model, images = case
    same_size = [images[0], images[0][::-1].copy(), images[0][:, ::-1].copy()]
    device = model.predict(same_size, batch_size=2, channel_order="rgb", letterbox="device", verbose=0)
    host = model.predict(same_size, batch_size=2, channel_order="rgb", letterbox="host", verbose=0)
    assert device["boxes"].shape == (3, model.max_detections, 4)
    assert_close_detections(device, host)


def test_device_letterbox_refuses_images_of_several_sizes(case):
    model, images = case
    with pytest.raises(ValueError, match="letterbox='device' needs images of one size per call; got 2 sizes"):
        model.predict(images, letterbox="device", verbose=0)
    with pytest.raises(ValueError, match="letterbox must be one of"):
        model.predict(images, letterbox="gpu", verbose=0)


def test_compiled_step_equals_its_eager_fallback(case):
    model, images = case
    prep = model.preprocessor(images, input_channel_order="bgr", output_channel_order="bgr")

    def step(batch, thresholds):
        outputs = model(batch["images"], training=False)
        return model.postprocess(outputs, model.image_size, batch["scale_factors"], thresholds)

    thresholds = {"score_threshold": 0.1, "iou_threshold": 0.5, "min_bbox_size": 0.0, "max_detections": 50}
    batch = {"images": prep["images"], "scale_factors": prep["scale_factors"]}
    compiled, eager = compile_step(model, step), compile_step(model, step, backend="eager")
    compiled = compiled(batch, compiled.thresholds(thresholds))
    eager = eager(batch, eager.thresholds(thresholds))
    assert int(to_numpy(eager["num_detections"]).min()) > 0
    assert_close_detections({k: to_numpy(v) for k, v in compiled.items()}, {k: to_numpy(v) for k, v in eager.items()})


@pytest.fixture
def torch_compiled(case, monkeypatch):
    """The case's model with `jit_compile=True`: torch steps exported whole (checked with the `eager` compiler, fast)."""
    model, images = case
    monkeypatch.setattr(compiled_step, "TORCH_COMPILER", "eager")
    model.jit_compile = True
    model.__dict__.pop("_inference_steps", None)
    yield model, images
    model.jit_compile = False
    model.__dict__.pop("_inference_steps", None)


@pytest.mark.backends("torch")
def test_torch_whole_step_is_exported_once_equals_the_eager_step_and_follows_the_weights(torch_compiled):
    model, images = torch_compiled
    with CountedPostprocess(model) as counter:
        outputs = [model.predict(images, channel_order="bgr", letterbox="host", verbose=0, **s) for s in PER_CALL]
    for out, settings in zip(outputs, PER_CALL, strict=True):
        assert_close_detections(out, eager_detections(model, images, **settings))
    assert counter.runs == 1  # one export, whatever the thresholds
    bias = next(v for v in model.weights if "rtm_cls" in v.path and v.path.endswith("bias"))
    saved = to_numpy(bias)
    try:
        bias.assign(saved + 3.0)
        after = model.predict(images, channel_order="bgr", letterbox="host", verbose=0, **PER_CALL[0])
        assert_close_detections(after, eager_detections(model, images, **PER_CALL[0]))
    finally:
        bias.assign(saved)
    assert after["num_detections"].sum() > outputs[0]["num_detections"].sum()


def test_a_dataset_runs_the_same_step_batch_by_batch(case):
    import tensorflow as tf

    model, images = case
    prep = model.preprocessor(images + images[:1], input_channel_order="bgr", output_channel_order="bgr")
    batches = {"images": prep["images"], "scale_factors": prep["scale_factors"]}
    dataset = tf.data.Dataset.from_tensor_slices(batches).batch(2)  # a short last batch
    with CountedPostprocess(model) as counter:
        outputs = [model.predict(dataset, verbose=0, **settings) for settings in PER_CALL[:2]]
    for out, settings in zip(outputs, PER_CALL, strict=False):
        assert out["boxes"].shape[0] == 3
        assert_close_detections(out, eager_detections(model, images + images[:1], **settings))
    if keras.config.backend() in COMPILING_BACKENDS:
        assert counter.runs <= 1  # both calls, the short batch too: one compiled shape


def _boxes_overlap(boxes, threshold):
    """Whether two of the xyxy `boxes` overlap with IoU above `threshold`."""
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], -1)
    iou = inter / (area[:, None] + area[None] - inter)
    return bool((np.triu(iou, 1) > threshold).any())


def test_classes_and_agnostic_nms_are_inputs_of_the_step(case):
    model, images = case
    settings = {"score_threshold": 0.05, "iou_threshold": 0.3}
    with CountedPostprocess(model) as counter:
        every = model.predict(images, channel_order="bgr", letterbox="host", verbose=0, **settings)
        labels = sorted(set(every["labels"][0, : every["num_detections"][0]].tolist()))
        some = model.predict(images, channel_order="bgr", letterbox="host", verbose=0, classes=labels[:2], **settings)
        agnostic = model.predict(images, channel_order="bgr", letterbox="host", verbose=0, agnostic_nms=True, **settings)
    if keras.config.backend() in COMPILING_BACKENDS:
        assert counter.runs <= 1
    assert len(labels) > 2
    # Class-aware NMS is per class: the chosen classes' detections are all the model finds of them.
    for b in range(len(images)):
        chosen = np.isin(every["labels"][b], labels[:2])
        expected = {key: every[key][b : b + 1, chosen] for key in ("boxes", "scores", "labels")}
        expected["num_detections"] = np.array([chosen.sum()])
        got = {key: some[key][b : b + 1] for key in ("boxes", "scores", "labels", "num_detections")}
        assert_close_detections(got, expected)
    first = lambda out: out["boxes"][0, : out["num_detections"][0]]  # noqa: E731
    assert _boxes_overlap(first(every), 0.3) and not _boxes_overlap(first(agnostic), 0.3)
    assert agnostic["num_detections"][0] < every["num_detections"][0]


def test_bad_classes_and_agnostic_nms_are_refused(case):
    model, images = case
    for classes, message in ((["unicorn"], "Unknown class 'unicorn'"), ([99], r"class indices in \[0, 80\)"), ([], "empty")):
        with pytest.raises(ValueError, match=message):
            model.predict(images, verbose=0, classes=classes)
    with pytest.raises(ValueError, match="agnostic_nms must be True or False"):
        model.predict(images, verbose=0, agnostic_nms="yes")


def test_predict_reads_image_files(case, tmp_path):
    import cv2

    model, images = case
    for n, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{n}.png"), image)  # the fixture's images are BGR, as cv2 writes them
    from_files = model.predict(str(tmp_path / "*.png"), verbose=0)
    assert_close_detections(from_files, model.predict(images, channel_order="bgr", verbose=0))
    with pytest.raises(ValueError, match="read as RGB"):
        model.predict(str(tmp_path), channel_order="bgr", verbose=0)
