"""RTMDet-R: numerical parity with MMRotate 1.0.0rc1 on the `rot_mini` fixture.

`rot_mini` is an RTMDet-R-tiny-shaped model (widen 0.125, 32 channels,
256² input, 15 DOTA classes, linear head) with random weights, recorded by
MMRotate itself (fixtures/README.md): features, head outputs with the raw
angles, the pre-NMS candidates and the final rotated detections of a square
batch and of a letterboxed batch of two non-square images.
"""

import numpy as np
import pytest

from keras_rtmdet import RTMDetRotated
from keras_rtmdet.models.rtmdet_rotated.rtmdet_rotated_presets import RTMDET_ROTATED_PRESETS
from keras_rtmdet.utils.detection_matching import BOX_TOLERANCE_PX
from keras_rtmdet.utils.detection_matching import SCORE_TOLERANCE
from keras_rtmdet.utils.detection_matching import match_detections
from keras_rtmdet.weights.checkpoint import read_checkpoint
from keras_rtmdet.weights.mmdet_converter import weight_map
from tests.test_case import assert_dense_close
from tests.test_case import load_fixture
from tests.test_case import nchw_to_nhwc
from tests.test_case import reference_model
from tests.test_case import run_serialization_test
from tests.test_case import tiny_model
from tests.test_case import to_numpy
from tests.test_case import trainable_parameter_count

# Trainable parameters of the official RTMDet-R tiny and s (issue 6; MMRotate README 4.88 M / 8.86 M).
ROTATED_PARAMS = {"tiny": 4_877_544, "s": 8_862_156}


@pytest.fixture(scope="module")
def case():
    fx = load_fixture("rot_mini")
    # Above the fixture's largest pre-NMS set (964): a smaller rotated NMS to compile.
    return fx, reference_model(fx, max_candidates=1000)


def test_parameter_count_and_every_checkpoint_tensor_used(case):
    fx, model = case
    assert trainable_parameter_count(model) == fx["meta"]["complexity"]["params"]
    state = read_checkpoint(fx["checkpoint"])
    mapped = {key for _, key in weight_map(model)}
    assert {k for k in mapped if ".rtm_ang." in k} == {
        f"bbox_head.rtm_ang.{level}.{leaf}" for level in range(3) for leaf in ("weight", "bias")
    }
    assert set(state) == mapped | (set(model.aliased_checkpoint_keys()) & set(state))


def test_backbone_neck_head_and_angles_match(case):
    fx, model = case
    feats = model.backbone(nchw_to_nhwc(fx["inputs"]["inputs"]))
    neck = model.neck(feats)
    for level in range(3):
        assert_dense_close(neck[level], fx["features"][f"neck_out_{level}"], f"neck_out_{level}")
    for batch, prefix in ((fx["inputs"]["inputs"], ""), (fx["inputs"]["pipe_input"], "pipe_")):
        head = model.head(model.neck(model.backbone(nchw_to_nhwc(batch))))
        for level in range(3):
            if not prefix:
                assert_dense_close(head["cls_scores"][level], fx["head"][f"cls_score_{level}"], f"cls_{level}")
            assert_dense_close(head["bbox_preds"][level], fx["head"][f"{prefix}bbox_pred_{level}"], f"{prefix}bbox_{level}")
            assert_dense_close(
                head["angle_preds"][level], fx["head"][f"{prefix}angle_pred_{level}"], f"{prefix}angle_{level}"
            )


def test_raw_outputs_and_priors(case):
    fx, model = case
    size = fx["meta"]["arch"]["input_size"]
    np.testing.assert_array_equal(to_numpy(model.priors((size, size))), fx["head"]["priors"])
    outputs = model.raw_outputs(nchw_to_nhwc(fx["inputs"]["inputs"]), normalized=True)
    assert_dense_close(outputs["bbox_preds"], fx["head"]["flat_bbox_pred"], "flat_bbox_pred")
    assert_dense_close(outputs["angle_preds"], fx["head"]["flat_angle_pred"], "flat_angle_pred")


def _assert_matches(out, preds, key, b):
    n = int(out["num_detections"][b])
    ours = (out["boxes"][b, :n], out["scores"][b, :n], out["labels"][b, :n])
    ref = (preds[f"{key}_bboxes"], preds[f"{key}_scores"], preds[f"{key}_labels"])
    result = match_detections(ours, ref, box_tol=BOX_TOLERANCE_PX, score_tol=SCORE_TOLERANCE)
    assert result["matched"] == len(ref[1]) == n, f"{key}: {result}"
    assert np.all(ours[0][:, 4] >= -np.pi / 2) and np.all(ours[0][:, 4] < np.pi / 2)


@pytest.mark.parametrize("prefix", ["", "pipe_"])
def test_pre_nms_candidates_and_detections_match(case, prefix):
    """Every MMRotate detection (cx, cy, w, h, angle within 0.02, score 2e-4) of both batches, and nothing else."""
    fx, model = case
    inputs, preds = fx["inputs"], fx["preds"]
    images = nchw_to_nhwc(inputs["pipe_input" if prefix else "inputs"])
    scale_factors = inputs["pipe_scale_factor"].astype("float32") if prefix else None
    out = {k: to_numpy(v) for k, v in model.detect(images, scale_factors=scale_factors, normalized=True).items()}
    with model.postprocess_settings(iou_threshold=1.0):
        raw = {k: to_numpy(v) for k, v in model.detect(images, scale_factors=scale_factors, normalized=True).items()}
    for b in range(2):
        _assert_matches(out, preds, f"{prefix}img{b}", b)
        _assert_matches(raw, preds, f"{prefix}img{b}_prenms", b)
    assert np.all(out["boxes"][0, int(out["num_detections"][0]) :] == -1)


def test_predict_on_raw_images(case):
    """`predict` on the raw pipe images: resize, pad, normalise, decode, rescale, NMS as MMRotate."""
    fx, model = case
    raw = [fx["inputs"]["pipe_raw_image_0"], fx["inputs"]["pipe_raw_image_1"]]
    out = model.predict(raw, channel_order="bgr", verbose=0)
    assert out["boxes"].shape == (2, model.max_detections, 5)
    for b in range(2):
        _assert_matches(out, fx["preds"], f"pipe_img{b}", b)


def test_head_config_round_trip(case):
    """The task's own round trip is in its task test (test_rtmdet_rotated_task.py)."""
    run_serialization_test(case[1].head)


@pytest.mark.backend_independent
@pytest.mark.parametrize("size", list(ROTATED_PARAMS))
def test_preset_parameter_counts(size):
    spec = RTMDET_ROTATED_PRESETS[f"rtmdet_r_{size}_dota"]
    assert spec["params"] == ROTATED_PARAMS[size] and spec["arch"]["exp_on_reg"] is False
    assert trainable_parameter_count(RTMDetRotated.from_arch(**spec["arch"])) == ROTATED_PARAMS[size]


@pytest.mark.backend_independent
def test_presets_name_official_checkpoints():
    for name, spec in RTMDET_ROTATED_PRESETS.items():
        assert spec["checkpoint_url"].startswith("https://download.openmmlab.com/mmrotate/v1.0/rotated_rtmdet/")
        assert len(spec["sha256_prefix"]) == 8 and spec["checkpoint_filename"].endswith(spec["sha256_prefix"] + ".pth")
        assert spec["arch"]["exp_on_reg"] == (spec["arch"]["widen_factor"] >= 0.75), name


def test_unknown_nms_method_and_box_format_are_refused(case):
    _, model = case
    with pytest.raises(ValueError, match="nms_method"):
        model.set_postprocess(nms_method="torchvision")
    with pytest.raises(ValueError, match="xywha"):
        tiny_model(RTMDetRotated, bounding_box_format="xyxy")
