"""RTMDet-Ins: numerical parity with MMDetection 3.3.0 on the `ins_mini` fixture.

`ins_mini` is an RTMDet-Ins-tiny-shaped model (widen 0.125, 32 channels,
160² input) with random weights, recorded by mmdet itself; its checkpoint
stores the aliased `reg_convs.*` tensors like the official files.
"""

import numpy as np
import pytest

from keras_rtmdet import RTMDetIns
from keras_rtmdet.models.rtmdet.rtmdet_presets import RTMDET_PRESETS
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_presets import RTMDET_INS_PRESETS
from keras_rtmdet.utils.detection_matching import BOX_TOLERANCE_PX
from keras_rtmdet.utils.detection_matching import SCORE_TOLERANCE
from keras_rtmdet.weights.checkpoint import read_checkpoint
from keras_rtmdet.weights.mmdet_converter import weight_map
from tests.test_case import assert_dense_close
from tests.test_case import build_shapes_only
from tests.test_case import load_fixture
from tests.test_case import nchw_to_nhwc
from tests.test_case import reference_model
from tests.test_case import run_serialization_test
from tests.test_case import to_numpy
from tests.test_case import trainable_parameter_count

# Mask pixels that may flip between two float32 runs: mmdet's own batch-1 vs
# batch-2 runs of this fixture flip up to 7 of 2.4M (meta.json `checks`).
MAX_MASK_FLIP_FRACTION = 1e-5

# Trainable parameters of the official RTMDet-Ins tiny/s/m/l/x (reference §1.8).
INS_PARAMS = {
    "tiny": 5_638_187,
    "s": 10_183_311,
    "m": 27_575_111,
    "l": 57_365_663,
    "x": 102_703_767,
}


@pytest.fixture(scope="module")
def case():
    fx = load_fixture("ins_mini")
    return fx, reference_model(fx)


def test_parameter_count_matches_reference(case):
    fx, model = case
    trainable = trainable_parameter_count(model)
    assert trainable == fx["meta"]["complexity"]["params"]


def test_every_checkpoint_tensor_is_used_and_reg_convs_are_aliases(case):
    fx, model = case
    state = read_checkpoint(fx["checkpoint"])
    mapped = {key for _, key in weight_map(model)}
    aliases = model.aliased_checkpoint_keys()
    assert not any(".reg_convs." in key for key in mapped)
    assert all(key in state for key in mapped)
    assert set(state) == mapped | (set(aliases) & set(state))
    assert any(".reg_convs." in key for key in aliases)


def test_backbone_neck_and_head_match(case):
    fx, model = case
    feats = model.backbone(nchw_to_nhwc(fx["inputs"]["inputs"]))
    for level, name in enumerate(["backbone_stage2", "backbone_stage3", "backbone_stage4"]):
        assert_dense_close(feats[level], fx["features"][name], name)
    neck = model.neck(feats)
    for level in range(3):
        assert_dense_close(neck[level], fx["features"][f"neck_out_{level}"], f"neck_out_{level}")
    head = model.head(neck)
    for level in range(3):
        assert_dense_close(head["cls_scores"][level], fx["head"][f"cls_score_{level}"], f"cls_score_{level}")
        assert_dense_close(head["bbox_preds"][level], fx["head"][f"bbox_pred_{level}"], f"bbox_pred_{level}")
        assert_dense_close(head["kernel_preds"][level], fx["head"][f"kernel_pred_{level}"], f"kernel_pred_{level}")
    assert_dense_close(head["mask_feat"], fx["head"]["mask_feat"], "mask_feat")


def test_raw_outputs_and_priors(case):
    fx, model = case
    size = fx["meta"]["arch"]["input_size"]
    np.testing.assert_array_equal(to_numpy(model.priors((size, size))), fx["head"]["priors"])
    outputs = model.raw_outputs(nchw_to_nhwc(fx["inputs"]["inputs"]), normalized=True)
    assert_dense_close(outputs["bbox_preds"], fx["head"]["flat_bbox_pred"], "flat_bbox_pred")
    assert_dense_close(outputs["mask_feat"], fx["head"]["mask_feat"], "mask_feat")
    assert tuple(outputs["kernel_preds"].shape) == (2, len(fx["head"]["priors"]), 169)
    flat_kernels = np.concatenate(
        [nchw_to_nhwc(fx["head"][f"kernel_pred_{l}"]).reshape(2, -1, 169) for l in range(3)], axis=1
    )
    assert_dense_close(outputs["kernel_preds"], flat_kernels, "flat_kernel_pred")


def test_pipe_batch_head_matches(case):
    """The letterboxed pipe batch (two non-square images) gives mmdet's head outputs."""
    fx, model = case
    outputs = model.head(model.neck(model.backbone(nchw_to_nhwc(fx["inputs"]["pipe_input"]))))
    for level in range(3):
        assert_dense_close(outputs["bbox_preds"][level], fx["head"][f"pipe_bbox_pred_{level}"], f"pipe_bbox_{level}")
    assert_dense_close(outputs["mask_feat"], fx["head"]["pipe_mask_feat"], "pipe_mask_feat")


def _pair_with_reference(out, preds, prefix, b):
    """Index of our detection for every reference one (same label, box and score within tolerance)."""
    n = int(out["num_detections"][b])
    boxes, scores, labels = out["boxes"][b, :n], out["scores"][b, :n], out["labels"][b, :n]
    ref_boxes = preds[f"{prefix}img{b}_bboxes"]
    ref_scores, ref_labels = preds[f"{prefix}img{b}_scores"], preds[f"{prefix}img{b}_labels"]
    assert n == len(ref_scores)
    pairs, free = [], np.ones(n, bool)
    for j in range(len(ref_scores)):
        ok = (
            free
            & (labels == ref_labels[j])
            & (np.abs(boxes - ref_boxes[j]).max(-1) <= BOX_TOLERANCE_PX)
            & (np.abs(scores - ref_scores[j]) <= SCORE_TOLERANCE)
        )
        assert ok.any(), f"{prefix}img{b}: reference detection {j} has no match"
        i = int(np.flatnonzero(ok)[0])
        free[i] = False
        pairs.append(i)
    return np.array(pairs)


@pytest.mark.parametrize("prefix", ["", "pipe_"])
def test_detections_mask_logits_and_masks_match(case, prefix):
    fx, model = case
    inputs, preds = fx["inputs"], fx["preds"]
    images = inputs["pipe_input" if prefix else "inputs"]
    scale_factors = inputs["pipe_scale_factor"].astype("float32") if prefix else None
    original_sizes = inputs["pipe_ori_shape"] if prefix else None
    out = model.detect(nchw_to_nhwc(images), scale_factors=scale_factors, normalized=True)
    out = {k: to_numpy(v) for k, v in out.items()}
    masks = model.masks_from_detections(out, scale_factors, original_sizes)
    for b in range(2):
        pairs = _pair_with_reference(out, preds, prefix, b)
        logits = out["mask_logits"][b][pairs]
        ref_logits = preds[f"{prefix}img{b}_mask_logits"]
        err = np.abs(logits - ref_logits).max() / np.abs(ref_logits).max()
        assert err <= 2e-4, f"{prefix}img{b} mask logits: relative error {err:.3g}"
        ours, ref = to_numpy(masks[b])[pairs], preds[f"{prefix}img{b}_masks"]
        assert ours.shape == ref.shape and ours.dtype == bool
        flips = int((ours != ref).sum())
        assert flips <= MAX_MASK_FLIP_FRACTION * ref.size, f"{prefix}img{b}: {flips} mask pixels differ"
        assert np.all(out["mask_logits"][b, len(pairs) :] == -1)


def test_predict_on_raw_images_then_masks(case):
    """`predict` on the raw pipe images, then masks at the original sizes, as mmdet."""
    fx, model = case
    inputs, preds = fx["inputs"], fx["preds"]
    raw = [inputs["pipe_raw_image_0"], inputs["pipe_raw_image_1"]]
    out = model.predict(raw, channel_order="bgr", verbose=0)
    height, width = max(r.shape[0] for r in raw), max(r.shape[1] for r in raw)
    assert out["masks"].shape == (2, model.max_detections, height, width) and out["masks"].dtype == bool
    assert "mask_logits" not in out
    for b in range(2):
        n, (h, w) = out["num_detections"][b], raw[b].shape[:2]
        assert not out["masks"][b, n:].any() and not out["masks"][b, :, h:].any() and not out["masks"][b, :, :, w:].any()
        pairs = _pair_with_reference(out, preds, "pipe_", b)
        ours, ref = out["masks"][b, :, :h, :w][pairs], preds[f"pipe_img{b}_masks"]
        assert ours.shape == ref.shape
        assert int((ours != ref).sum()) <= MAX_MASK_FLIP_FRACTION * ref.size


def test_head_config_round_trip(case):
    """The task's own round trip is in its task test (test_rtmdet_ins_task.py)."""
    _, model = case
    run_serialization_test(model.head)
    run_serialization_test(model.head.mask_head)


@pytest.mark.backend_independent
@pytest.mark.parametrize("size", list(INS_PARAMS))
def test_preset_arch_parameter_counts(size):
    """The det presets' scaling with the Ins head gives the published Ins counts."""
    arch = RTMDET_PRESETS[f"rtmdet_{size}_coco"]["arch"]
    model = build_shapes_only(lambda: RTMDetIns.from_arch(**arch))
    trainable = trainable_parameter_count(model)
    assert trainable == INS_PARAMS[size]
    spec = RTMDET_INS_PRESETS[f"rtmdet_ins_{size}_coco"]
    assert spec["params"] == INS_PARAMS[size]
    assert {k: v for k, v in arch.items() if k != "exp_on_reg"} == spec["arch"]


def test_fresh_head_initialisation_follows_the_reference():
    from keras_rtmdet import RTMDetInsSepBNHead
    from keras_rtmdet.models.rtmdet.rtmdet_head import CLS_PRIOR_BIAS

    head = RTMDetInsSepBNHead(num_classes=3, in_channels=16, feat_channels=16)
    head.build([(None, 8, 8, 16), (None, 4, 4, 16), (None, 2, 2, 16)])
    assert head.num_gen_params == 169 and head.weight_nums == [80, 64, 8] and head.bias_nums == [8, 8, 1]
    for level in range(3):
        np.testing.assert_allclose(to_numpy(head.rtm_cls[level].bias), CLS_PRIOR_BIAS, rtol=1e-6)
        np.testing.assert_array_equal(to_numpy(head.rtm_reg[level].bias), 1.0)
        np.testing.assert_array_equal(to_numpy(head.rtm_kernel[level].bias), 0.0)
    # cls convs shared across levels, kernel convs not.
    cls_tower, kernel_tower = head.towers["cls_convs"], head.towers["kernel_convs"]
    assert cls_tower["convs"][1][0] is cls_tower["convs"][0][0]
    assert kernel_tower["convs"][1][0] is not kernel_tower["convs"][0][0]
    assert "reg_convs" not in head.towers


def test_predict_without_detections_gives_empty_masks(case):
    fx, model = case
    raw = [fx["inputs"]["pipe_raw_image_0"], fx["inputs"]["pipe_raw_image_1"]]
    out = model.predict(raw, channel_order="bgr", score_threshold=1.0, verbose=0)
    height, width = max(r.shape[0] for r in raw), max(r.shape[1] for r in raw)
    assert np.all(out["num_detections"] == 0)
    assert out["masks"].shape == (2, model.max_detections, height, width) and not out["masks"].any()
