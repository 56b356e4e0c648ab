"""Numerical parity with MMDetection 3.3.0 on the reference fixtures, per backend.

The fixtures are small RTMDet models with random weights whose every stage
was recorded by mmdet itself (tests/fixtures/README in the shared folder).
`det_mini_linear` has `exp_on_reg=False` (official tiny/s), `det_mini_exp`
`exp_on_reg=True` (official m/l/x).
"""

import numpy as np
import pytest

from tests.test_case import assert_dense_close
from tests.test_case import assert_reference_detections
from tests.test_case import load_fixture
from tests.test_case import nchw_to_nhwc
from tests.test_case import reference_model
from tests.test_case import to_numpy
from tests.test_case import trainable_parameter_count

FIXTURE_NAMES = ["det_mini_linear", "det_mini_exp"]


@pytest.fixture(scope="module", params=FIXTURE_NAMES)
def case(request):
    fx = load_fixture(request.param)
    return fx, reference_model(fx)


def test_architecture_matches_reference_parameter_count(case):
    fx, model = case
    trainable = trainable_parameter_count(model)
    assert trainable == fx["meta"]["complexity"]["params"]


def test_backbone_neck_and_head_match(case):
    fx, model = case
    x = nchw_to_nhwc(fx["inputs"]["inputs"])
    feats = model.backbone(x)
    for level, name in enumerate(["backbone_stage2", "backbone_stage3", "backbone_stage4"]):
        assert_dense_close(feats[level], fx["features"][name], name)
    neck = model.neck(feats)
    for level in range(3):
        assert_dense_close(neck[level], fx["features"][f"neck_out_{level}"], f"neck_out_{level}")
    head = model.head(neck)
    for level in range(3):
        assert_dense_close(head["cls_scores"][level], fx["head"][f"cls_score_{level}"], f"cls_score_{level}")
        assert_dense_close(head["bbox_preds"][level], fx["head"][f"bbox_pred_{level}"], f"bbox_pred_{level}")


def test_priors_and_decoding_match(case):
    fx, model = case
    size = fx["meta"]["arch"]["input_size"]
    np.testing.assert_array_equal(to_numpy(model.priors((size, size))), fx["head"]["priors"])
    outputs = model.raw_outputs(nchw_to_nhwc(fx["inputs"]["inputs"]), normalized=True)
    assert_dense_close(outputs["bbox_preds"], fx["head"]["flat_bbox_pred"], "flat_bbox_pred")


def test_detections_match_on_square_batch(case):
    fx, model = case
    out = model.detect(nchw_to_nhwc(fx["inputs"]["inputs"]), normalized=True)
    out = {k: to_numpy(v) for k, v in out.items()}
    assert_reference_detections(fx, out, "", model.max_detections, model.score_threshold)


def test_detections_match_after_resize_of_two_raw_sizes(case):
    """The pipe batch: two non-square images of different sizes, rescaled back."""
    fx, model = case
    inputs = fx["inputs"]
    out = model.detect(
        nchw_to_nhwc(inputs["pipe_input"]),
        scale_factors=inputs["pipe_scale_factor"].astype("float32"),
        normalized=True,
    )
    out = {k: to_numpy(v) for k, v in out.items()}
    assert_reference_detections(fx, out, "pipe_", model.max_detections, model.score_threshold)


def test_preprocessing_matches_mmdet_resize_and_pad(case):
    fx, model = case
    inputs = fx["inputs"]
    raw = [inputs["pipe_raw_image_0"], inputs["pipe_raw_image_1"]]
    prep = model.preprocessor(raw, input_channel_order="bgr", output_channel_order="bgr")
    reference = nchw_to_nhwc(inputs["pipe_input"]) * inputs["std"] + inputs["mean"]
    assert np.abs(prep["images"] - reference).max() <= 1.0
    np.testing.assert_allclose(prep["scale_factors"], inputs["pipe_scale_factor"], rtol=1e-6)
    np.testing.assert_array_equal(prep["original_sizes"], inputs["pipe_ori_shape"])


def test_predict_on_raw_images_end_to_end(case):
    """`predict` on raw BGR images of two sizes gives mmdet's detections."""
    fx, model = case
    inputs = fx["inputs"]
    raw = [inputs["pipe_raw_image_0"], inputs["pipe_raw_image_1"]]
    out = model.predict(raw, channel_order="bgr", verbose=0)
    assert_reference_detections(fx, out, "pipe_", model.max_detections, model.score_threshold)


def test_rgb_input_gives_the_same_detections(case):
    fx, model = case
    raw = [fx["inputs"]["pipe_raw_image_0"], fx["inputs"]["pipe_raw_image_1"]]
    bgr = model.predict(raw, channel_order="bgr", verbose=0)
    rgb = model.predict([im[..., ::-1] for im in raw], channel_order="rgb", verbose=0)
    for key in bgr:
        np.testing.assert_array_equal(bgr[key], rgb[key])
