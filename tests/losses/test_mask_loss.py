"""RTMDet-Ins' Dice mask loss equals mmdet's `RTMDetInsHead.loss_by_feat` (`loss_ins_two_images`)."""

import keras
import numpy as np
import pytest

from keras_rtmdet.losses.detection_targets import normalize_mask_targets
from keras_rtmdet.losses.mask_loss import dice_loss
from keras_rtmdet.losses.mask_loss import rtmdet_mask_loss
from keras_rtmdet.losses.mask_loss import select_positives
from keras_rtmdet.losses.detection_losses import rtmdet_detection_loss
from tests.losses.loss_cases import LOSS_REL_TOL
from tests.losses.loss_cases import assign
from tests.losses.loss_cases import flatten_levels
from tests.losses.loss_cases import load_loss_case
from tests.losses.loss_cases import rel_err
from tests.test_case import to_numpy

WEIGHT_NUMS, BIAS_NUMS = [80, 64, 8], [8, 8, 1]


def ins_case():
    data, cls, boxes, gt_boxes, gt_labels, _ = load_loss_case("loss_ins_two_images")
    size = int(data["img_size"])
    full = np.zeros((2, gt_boxes.shape[1], size, size), np.uint8)
    for b in range(2):
        m = data[f"img{b}_gt_masks"]
        full[b, : len(m)] = m
    masks, centers = normalize_mask_targets({"masks": full}, gt_boxes.shape[1], (size, size))
    assignment = assign(data["priors"], cls, boxes, gt_boxes, gt_labels, to_numpy(centers))
    kernels = flatten_levels(data, "kernel_pred", 169)
    mask_feat = np.transpose(data["mask_feat"], (0, 2, 3, 1))
    return data, cls, boxes, full, masks, assignment, kernels, mask_feat


def mask_loss(case, **kwargs):
    data, _, _, _, masks, assignment, kernels, mask_feat = case
    return rtmdet_mask_loss(mask_feat, kernels, data["priors"], assignment, masks, WEIGHT_NUMS, BIAS_NUMS, **kwargs)


@pytest.fixture(scope="module")
def case():
    return ins_case()


def test_mask_loss_and_total_match_reference(case):
    data, cls, boxes, _, _, assignment, _, _ = case
    loss_mask = float(to_numpy(mask_loss(case)))
    assert rel_err(loss_mask, data["loss_mask"]) <= LOSS_REL_TOL, (loss_mask, float(data["loss_mask"]))
    loss_cls, loss_bbox = rtmdet_detection_loss(cls, boxes, assignment)
    total = float(to_numpy(loss_cls)) + float(to_numpy(loss_bbox)) + loss_mask
    assert rel_err(total, data["loss_total"]) <= LOSS_REL_TOL


def _numpy_mask_logits(mask_feat, kernel, prior):
    """One instance's stride-4 logits, written out in numpy (independent of the keras.ops code)."""
    h, w, _ = mask_feat.shape
    gy, gx = np.meshgrid(np.arange(h) * 8.0, np.arange(w) * 8.0, indexing="ij")
    rel = np.stack([(prior[0] - gx), (prior[1] - gy)], -1) / (prior[2] * 8.0)
    x = np.concatenate([rel, mask_feat], -1).reshape(-1, 10)
    weights, start = [], 0
    for n in WEIGHT_NUMS:
        weights.append(kernel[start : start + n])
        start += n
    for layer, (n_out, wt) in enumerate(zip(BIAS_NUMS, weights)):
        x = x @ wt.reshape(n_out, -1).T + kernel[start : start + n_out]
        start += n_out
        if layer < 2:
            x = np.maximum(x, 0)
    x = x.reshape(h, w)
    # ×2 bilinear, half-pixel centres, edge clamped.
    src = (np.arange(2 * h) + 0.5) / 2 - 0.5
    lo = np.clip(np.floor(src).astype(int), 0, h - 1)
    hi = np.clip(lo + 1, 0, h - 1)
    frac = np.clip(src - np.floor(src), 0, 1) * (src >= 0)
    x = x[lo] * (1 - frac)[:, None] + x[hi] * frac[:, None]
    return x[:, lo] * (1 - frac)[None] + x[:, hi] * frac[None]


def test_capped_positives_are_a_reweighted_subset(case):
    """With fewer slots than positives, the kept ones are weighted by num_pos / kept per image."""
    data, _, _, _, masks, assignment, kernels, mask_feat = case
    fg = to_numpy(assignment["foreground_mask"])
    gt_index = to_numpy(assignment["assigned_gt_index"])
    cap = 10
    assert fg.sum(axis=1).min() > cap
    index, valid, _ = (to_numpy(t) for t in select_positives(assignment["foreground_mask"], cap))
    assert valid.all() and len(set(index[0])) == cap and fg[0, index[0]].all()
    expected = 0.0
    for b in range(2):
        for i in index[b]:
            logits = _numpy_mask_logits(mask_feat[b], kernels[b, i], data["priors"][i])
            target = to_numpy(masks)[b, gt_index[b, i]]
            d = float(to_numpy(dice_loss(logits, target)))
            expected += fg[b].sum() / cap * d
    expected = 2.0 * expected / fg.sum()
    assert rel_err(float(to_numpy(mask_loss(case, max_positives=cap))), expected) <= 1e-4
    # Enough slots: the reference's value again.
    assert rel_err(float(to_numpy(mask_loss(case, max_positives=64))), data["loss_mask"]) <= LOSS_REL_TOL


def test_no_positives_gives_zero(case):
    data, _, _, _, masks, assignment, kernels, mask_feat = case
    empty = dict(assignment, foreground_mask=keras.ops.zeros_like(assignment["foreground_mask"]))
    value = rtmdet_mask_loss(mask_feat, kernels, data["priors"], empty, masks, WEIGHT_NUMS, BIAS_NUMS)
    assert float(to_numpy(value)) == 0.0


def test_mask_targets_are_checked():
    with pytest.raises(ValueError, match="need 'masks'"):
        normalize_mask_targets({"boxes": np.zeros((1, 2, 4))}, 2, (64, 64))
    with pytest.raises(ValueError, match="one per box slot"):
        normalize_mask_targets({"masks": np.zeros((1, 3, 64, 64))}, 2, (64, 64))
    with pytest.raises(ValueError, match="mask_centers"):
        normalize_mask_targets({"masks": np.zeros((1, 2, 16, 16))}, 2, (64, 64))
    with pytest.raises(ValueError, match="fit neither"):
        normalize_mask_targets({"masks": np.zeros((1, 2, 32, 32))}, 2, (64, 64))
    masks, centers = normalize_mask_targets(
        {"masks": np.ones((1, 2, 16, 16), np.uint8), "mask_centers": np.ones((1, 2, 2), np.float32)}, 2, (64, 64)
    )
    assert tuple(masks.shape) == (1, 2, 16, 16) and tuple(centers.shape) == (1, 2, 2)
