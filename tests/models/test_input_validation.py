"""Settings and pixels are checked where they enter: each bad value is refused, named, and changes nothing."""

import math

import numpy as np
import pytest

from keras_rtmdet import RTMDet
from keras_rtmdet import RTMDetIns
from keras_rtmdet import RTMDetRotated
from keras_rtmdet.models.rtmdet.rtmdet_head import RTMDetSepBNHead
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_head import RTMDetInsSepBNHead
from keras_rtmdet.models.rtmdet_rotated.rotated_rtmdet_head import RotatedRTMDetSepBNHead
from keras_rtmdet.utils.input_checks import check_image_size
from keras_rtmdet.utils.input_checks import check_pixels
from tests.test_case import SIZE
from tests.test_case import TINY_ARCH
from tests.test_case import tiny_model

NAN = math.nan


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def uint8_image(seed=0, height=48, width=40):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def unit_float_image(seed=0):
    """Pixels scaled to [0, 1], the mistake the default range refuses."""
    return np.random.default_rng(seed).uniform(0, 1, (48, 40, 3)).astype(np.float32)


# --- the shared checks, on plain values (no model) ---

IMAGE_SIZES = [
    (100, ["multiple of 32 (the largest stride)", "96 or 128"]),
    ((100, 640), ["multiple of 32", "(96, 640) or (128, 640)"]),
    ((640, 650), ["(640, 640) or (640, 672)"]),
    (16, ["nearest valid size is 32"]),
    (0, ["positive integer"]),
    ((-32, 64), ["positive integer"]),
    ((64.0, 64), ["positive integer"]),
    ((64, 64, 64), ["two (height, width)"]),
    (True, ["positive integer"]),
    ("640", ["got '640'"]),
]


@pytest.mark.backend_independent
@pytest.mark.parametrize("value, words", IMAGE_SIZES, ids=[repr(v) for v, _ in IMAGE_SIZES])
def test_check_image_size_refuses_with_the_nearest_sizes(value, words):
    with pytest.raises(ValueError) as error:
        check_image_size(value)
    for word in words:
        assert word in str(error.value)


@pytest.mark.backend_independent
def test_check_image_size_normalises_valid_sizes():
    assert check_image_size(640) == (640, 640)
    assert check_image_size([480, np.int64(640)]) == (480, 640)
    assert all(type(s) is int for s in check_image_size(np.array([96, 128])))


PIXELS = [
    ("unit floats", unit_float_image(), (0, 255), ["Image 0", "looks like pixels scaled to [0, 1]", "pixel_range=(0, 1)"]),
    ("one bad in a list", [uint8_image(), np.full((8, 8, 3), 300.0)], (0, 255), ["Image 1", "[300, 300]", "(0, 255)"]),
    ("negative", np.full((8, 8, 3), -5.0, np.float32), (0, 255), ["Image 0", "[-5, -5]"]),
    ("nan in a batch", np.stack([np.zeros((8, 8, 3)), np.full((8, 8, 3), NAN)]), (0, 255), ["Image 1", "NaN"]),
    ("above a (0, 1) range", np.full((8, 8, 3), 2.0), (0, 1), ["Image 0", "outside the declared pixel_range (0, 1)"]),
    ("uint8 as (0, 1)", uint8_image(), (0, 1), ["Image 0", "outside the declared pixel_range"]),
    ("reversed range", uint8_image(), (255, 0), ["pixel_range", "low < high"]),
    ("nan range", uint8_image(), (0, NAN), ["pixel_range"]),
    ("one-number range", uint8_image(), (255,), ["pixel_range"]),
]


@pytest.mark.backend_independent
@pytest.mark.parametrize("images, pixel_range, words", [row[1:] for row in PIXELS], ids=[row[0] for row in PIXELS])
def test_check_pixels_names_the_image_and_what_it_found(images, pixel_range, words):
    with pytest.raises(ValueError) as error:
        check_pixels(images, pixel_range)
    for word in words:
        assert word in str(error.value)


@pytest.mark.backend_independent
def test_check_pixels_accepts_real_pixels():
    assert check_pixels([uint8_image(), np.zeros((4, 4, 3), np.float32)]) == (0.0, 255.0)
    assert check_pixels(np.full((2, 4, 4, 3), 200.0)) == (0.0, 255.0)
    assert check_pixels(unit_float_image(), (0, 1)) == (0.0, 1.0)
    with pytest.raises(TypeError, match="Image 0 has dtype bool"):
        check_pixels(np.zeros((4, 4, 3), bool))


# --- the constructors, `from_arch`, `from_preset` and the heads: refused before anything is built ---

BAD_NUM_CLASSES = [0, -1, 2.5, True, "3"]


@pytest.mark.backend_independent
@pytest.mark.parametrize("task", [RTMDet, RTMDetIns, RTMDetRotated], ids=lambda t: t.__name__)
@pytest.mark.parametrize("num_classes", BAD_NUM_CLASSES, ids=repr)
def test_from_arch_refuses_bad_num_classes(task, num_classes):
    with pytest.raises(ValueError, match=r"num_classes must be a positive integer, got"):
        task.from_arch(**TINY_ARCH, exp_on_reg=False, num_classes=num_classes, image_size=(SIZE, SIZE))


@pytest.mark.backend_independent
@pytest.mark.parametrize("head", [RTMDetSepBNHead, RTMDetInsSepBNHead, RotatedRTMDetSepBNHead], ids=lambda h: h.__name__)
@pytest.mark.parametrize("num_classes", BAD_NUM_CLASSES, ids=repr)
def test_heads_refuse_bad_num_classes(head, num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        head(num_classes=num_classes)


FROM_ARCH_SETTINGS = [
    ({"image_size": (100, 64)}, ["image_size (100, 64)", "multiple of 32 (the largest stride)", "(96, 64) or (128, 64)"]),
    ({"image_size": 0}, ["image_size", "positive integer"]),
    ({"score_threshold": -1}, ["score_threshold", "[0, 1]", "-1"]),
    ({"score_threshold": 2}, ["score_threshold", "[0, 1]"]),
    ({"iou_threshold": NAN}, ["iou_threshold", "nan"]),
    ({"min_bbox_size": math.nan}, ["min_bbox_size", "finite"]),
    ({"max_detections": 2.5}, ["max_detections", "positive integer"]),
    ({"nms_pre": True}, ["nms_pre", "positive integer"]),
    ({"max_candidates": 0}, ["max_candidates", "positive integer"]),
    ({"nms_method": "fast"}, ["nms_method must be one of"]),
]


@pytest.mark.backend_independent
@pytest.mark.parametrize("settings, words", FROM_ARCH_SETTINGS, ids=[str(s) for s, _ in FROM_ARCH_SETTINGS])
def test_from_arch_and_from_preset_refuse_bad_settings_first(settings, words, monkeypatch):
    """Refused before a layer is built, and before a built-in preset is downloaded (the URL would fail)."""
    spec = dict(RTMDet.presets["rtmdet_tiny_coco"], checkpoint_url="file:///nonexistent/never-fetched.pth")
    monkeypatch.setitem(RTMDet.presets, "never_fetched", spec)
    for build in (
        lambda: RTMDet.from_arch(**TINY_ARCH, exp_on_reg=False, num_classes=3, **settings),
        lambda: RTMDet.from_preset("never_fetched", **settings),
    ):
        with pytest.raises(ValueError) as error:
            build()
        for word in words:
            assert word in str(error.value)


@pytest.mark.backend_independent
@pytest.mark.parametrize("num_classes", BAD_NUM_CLASSES, ids=repr)
def test_from_preset_refuses_bad_num_classes_before_loading(num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        RTMDet.from_preset("rtmdet_tiny_coco", num_classes=num_classes, class_names=["a"])


# --- a built model: a refused call leaves it as it was ---


@pytest.mark.parametrize("num_classes", BAD_NUM_CLASSES, ids=repr)
def test_with_classes_refuses_bad_num_classes(tiny, num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        tiny.with_classes(num_classes)


def test_constructor_refuses_a_bad_image_size_and_settings(tiny):
    with pytest.raises(ValueError, match=r"image_size \(100, 64\) is not valid.*\(96, 64\) or \(128, 64\)"):
        RTMDet(tiny.backbone, tiny.neck, tiny.head, image_size=(100, 64))
    with pytest.raises(ValueError, match="score_threshold must be a finite number in"):
        RTMDet(tiny.backbone, tiny.neck, tiny.head, image_size=(SIZE, SIZE), score_threshold=NAN)


SET_POSTPROCESS = [
    ({"score_threshold": -1}, ["score_threshold", "-1"]),
    ({"score_threshold": 2}, ["score_threshold", "[0, 1]"]),
    ({"score_threshold": NAN}, ["score_threshold", "nan"]),
    ({"iou_threshold": NAN}, ["iou_threshold", "nan"]),
    ({"iou_threshold": 1.5}, ["iou_threshold", "1.5"]),
    ({"min_bbox_size": math.inf}, ["min_bbox_size", "finite"]),
    ({"nms_pre": 2.5}, ["nms_pre", "positive integer", "2.5"]),
    ({"max_detections": True}, ["max_detections", "True"]),
    ({"max_candidates": -5}, ["max_candidates", "-5"]),
    ({"nms_method": "fast"}, ["nms_method", "'fast'"]),
    # A good setting before a bad one must not be applied either.
    ({"score_threshold": 0.5, "max_detections": 7, "iou_threshold": NAN}, ["iou_threshold"]),
    ({"score_threshold": 0.5, "nms_threshold": 0.5}, ["Unknown post-processing setting 'nms_threshold'"]),
]


@pytest.mark.parametrize("settings, words", SET_POSTPROCESS, ids=[str(s) for s, _ in SET_POSTPROCESS])
def test_set_postprocess_refuses_and_changes_nothing(tiny, settings, words):
    before = tiny.postprocess_config()
    for apply in (
        lambda: tiny.set_postprocess(**settings),
        lambda: tiny.postprocess_settings(**settings).__enter__(),
        lambda: tiny.predict(uint8_image(), verbose=0, **settings),
    ):
        with pytest.raises(ValueError) as error:
            apply()
        for word in words:
            assert word in str(error.value)
        assert tiny.postprocess_config() == before


def test_set_postprocess_normalises_accepted_values(tiny):
    before = tiny.postprocess_config()
    try:
        tiny.set_postprocess(score_threshold=np.float32(0.25), max_detections=np.int64(7), min_bbox_size=0)
        config = tiny.postprocess_config()
        assert config["score_threshold"] == 0.25 and type(config["score_threshold"]) is float
        assert config["max_detections"] == 7 and type(config["max_detections"]) is int
        assert type(config["min_bbox_size"]) is float
    finally:
        tiny.set_postprocess(**before)


PREDICT_ARGUMENTS = [
    ({"batch_size": 0}, ["batch_size must be a positive integer, got 0"]),
    ({"batch_size": -1}, ["batch_size", "-1"]),
    ({"batch_size": 2.5}, ["batch_size", "2.5"]),
    ({"batch_size": True}, ["batch_size", "True"]),
    ({"pixel_range": (255, 0)}, ["pixel_range", "low < high"]),
    ({"pixel_range": "0-255"}, ["pixel_range"]),
]


@pytest.mark.parametrize("kwargs, words", PREDICT_ARGUMENTS, ids=[str(k) for k, _ in PREDICT_ARGUMENTS])
def test_predict_refuses_bad_arguments(tiny, kwargs, words):
    before = tiny.postprocess_config()
    with pytest.raises(ValueError) as error:
        tiny.predict(uint8_image(), verbose=0, score_threshold=0.5, **kwargs)
    for word in words:
        assert word in str(error.value)
    assert tiny.postprocess_config() == before


@pytest.mark.parametrize("images, pixel_range, words", [row[1:] for row in PIXELS[:6]], ids=[row[0] for row in PIXELS[:6]])
def test_predict_refuses_bad_pixels_naming_the_image(tiny, images, pixel_range, words):
    with pytest.raises(ValueError) as error:
        tiny.predict(images, pixel_range=pixel_range, verbose=0)
    for word in words:
        assert word in str(error.value)


def test_predict_refuses_a_pixel_range_for_a_preprocessed_dataset(tiny):
    import tensorflow as tf

    batch = {"images": np.zeros((1, SIZE, SIZE, 3), np.float32), "scale_factors": np.ones((1, 2), np.float32)}
    with pytest.raises(ValueError, match="pixel_range=.*applies to raw images"):
        tiny.predict(tf.data.Dataset.from_tensors(batch), pixel_range=(0, 1), verbose=0)


def test_unit_range_pixels_detect_as_their_255_scaled_copy(tiny):
    images = [unit_float_image(1), unit_float_image(2)]
    scaled = [image * 255 for image in images]
    prepared = tiny.preprocessor(images, pixel_range=(0, 1))["images"]
    np.testing.assert_allclose(prepared, tiny.preprocessor(scaled)["images"], rtol=1e-6)
    assert prepared.max() > 200
    found = tiny.predict(images, pixel_range=(0, 1), score_threshold=0.0, verbose=0)
    reference = tiny.predict(scaled, score_threshold=0.0, verbose=0)
    for key in ("num_detections", "boxes", "scores", "labels"):
        np.testing.assert_allclose(found[key], reference[key], rtol=1e-5, atol=1e-4)
