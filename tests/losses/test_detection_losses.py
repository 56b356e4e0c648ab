"""RTMDet's QFL + GIoU losses equal mmdet's `RTMDetHead.loss_by_feat`.

Fixtures: tests/fixtures/assigner/loss_<case>.npz. Tolerance: losses ≤ 1e-4
relative; targets (labels exact, assign metrics ≤ 1e-4 abs).
"""

import keras
import numpy as np
import pytest

from keras_rtmdet.losses import giou_loss
from keras_rtmdet.losses import quality_focal_loss
from keras_rtmdet.losses import rtmdet_detection_loss
from tests.losses.loss_cases import LOSS_REL_TOL
from tests.losses.loss_cases import NUM_CLASSES
from tests.losses.loss_cases import assign
from tests.losses.loss_cases import load_loss_case
from tests.losses.loss_cases import rel_err
from tests.test_case import to_numpy

LOSS_CASES = ["loss_two_images", "loss_mixed_empty", "loss_all_empty", "loss_ins_two_images"]


@pytest.mark.parametrize("name", LOSS_CASES)
def test_targets_match_reference(name):
    data, cls, boxes, gt_boxes, gt_labels, gt_centers = load_loss_case(name)
    out = assign(data["priors"], cls, boxes, gt_boxes, gt_labels, gt_centers)
    labels = to_numpy(out["labels"])
    ref_labels = np.where(data["target_labels"] == NUM_CLASSES, -1, data["target_labels"])
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(to_numpy(out["assign_metrics"]), data["target_assign_metrics"], rtol=0, atol=1e-4)
    pos = labels >= 0
    np.testing.assert_array_equal(to_numpy(out["target_boxes"])[pos], data["target_bboxes"][pos])
    if "img0_pos_inds" in data:
        index = to_numpy(out["assigned_gt_index"])
        for b in range(2):
            np.testing.assert_array_equal(np.where(index[b] >= 0)[0], data[f"img{b}_pos_inds"])
            np.testing.assert_array_equal(index[b][index[b] >= 0], data[f"img{b}_pos_assigned_gt_inds"])


@pytest.mark.parametrize("name", LOSS_CASES)
def test_losses_match_reference(name):
    data, cls, boxes, gt_boxes, gt_labels, gt_centers = load_loss_case(name)
    out = assign(data["priors"], cls, boxes, gt_boxes, gt_labels, gt_centers)
    loss_cls, loss_bbox = rtmdet_detection_loss(cls, boxes, out)
    ref_cls = data["loss_cls_levels"].sum()
    ref_bbox = data["loss_bbox_levels"].sum()
    if "loss_cls" in data:
        assert rel_err(ref_cls, data["loss_cls"]) < 1e-6 and rel_err(ref_bbox, data["loss_bbox"]) < 1e-6
    e_cls, e_bbox = rel_err(to_numpy(loss_cls), ref_cls), rel_err(to_numpy(loss_bbox), ref_bbox)
    print(f"{name}: loss_cls rel {e_cls:.3g}, loss_bbox rel {e_bbox:.3g}")
    assert e_cls <= LOSS_REL_TOL, (float(loss_cls), ref_cls)
    assert e_bbox <= LOSS_REL_TOL, (float(loss_bbox), ref_bbox)
    if name == "loss_all_empty":
        assert float(to_numpy(loss_bbox)) == 0.0


@pytest.mark.parametrize("name", ["loss_two_images", "loss_ins_two_images"])
def test_per_level_losses_match_reference(name):
    """Same per-level split as mmdet's lists (levels sliced out of the flat priors)."""
    data, cls, boxes, gt_boxes, gt_labels, gt_centers = load_loss_case(name)
    out = {k: to_numpy(v) for k, v in assign(data["priors"], cls, boxes, gt_boxes, gt_labels, gt_centers).items()}
    avg = max(1.0, float(out["assign_metrics"].sum()))
    sizes = [data[f"cls_score_{lv}"].shape[2] * data[f"cls_score_{lv}"].shape[3] for lv in range(3)]
    starts = np.cumsum([0] + sizes)
    qfl = to_numpy(quality_focal_loss(cls, out["labels"], out["assign_metrics"]))
    box = to_numpy(giou_loss(boxes, out["target_boxes"], out["assign_metrics"], mask=out["labels"] >= 0))
    for lv in range(3):
        sl = slice(starts[lv], starts[lv + 1])
        assert rel_err(qfl[:, sl].sum() / avg, data["loss_cls_levels"][lv]) <= LOSS_REL_TOL
        assert rel_err(2.0 * box[:, sl].sum() / avg, data["loss_bbox_levels"][lv]) <= LOSS_REL_TOL


def _numpy_qfl(x, labels, scores, beta=2.0):
    x = x.astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    t = np.zeros_like(x)
    pos = labels >= 0
    t[pos, labels[pos]] = scores[pos]
    bce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    return (bce * np.abs(t - p) ** beta).sum(-1)


def test_quality_focal_loss_matches_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (7, 5)).astype(np.float32)
    labels = np.array([0, -1, 4, 2, -1, 1, 3])
    scores = rng.uniform(0, 1, 7).astype(np.float32)
    np.testing.assert_allclose(to_numpy(quality_focal_loss(x, labels, scores)), _numpy_qfl(x, labels, scores),
                               rtol=1e-5, atol=1e-6)


def test_giou_loss_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    # identical: 0; half overlap: IoU 1/3, enclose 150, union 150 → 2/3; disjoint: 1 + (900 − 200)/900.
    expected = np.array([0.0, 2.0 / 3.0, 1.0 + 700.0 / 900.0])
    np.testing.assert_allclose(to_numpy(giou_loss(a, b)), expected, rtol=1e-6, atol=1e-6)
    w = np.array([1.0, 0.5, 0.0], np.float32)
    np.testing.assert_allclose(to_numpy(giou_loss(a, b, w)), expected * w, rtol=1e-6, atol=1e-6)


def value_and_grads(fn, *arrays):
    """(value, [grad per input]) of a scalar fn on each backend."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(arrays))))(*arrays)
        return float(value), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        value = fn(*ts)
        value.backward()
        return float(value.detach()), [t.grad.numpy() for t in ts]
    import tensorflow as tf

    vs = [tf.Variable(a) for a in arrays]
    with tf.GradientTape() as tape:
        value = fn(*vs)
    return float(value), [g.numpy() for g in tape.gradient(value, vs)]


@pytest.mark.parametrize("name", ["loss_two_images", "loss_mixed_empty", "loss_all_empty"])
def test_gradients_are_finite(name):
    data, cls, boxes, gt_boxes, gt_labels, gt_centers = load_loss_case(name)
    out = assign(data["priors"], cls, boxes, gt_boxes, gt_labels, gt_centers)
    out = {k: to_numpy(v) for k, v in out.items()}

    def total(c, b):
        loss_cls, loss_bbox = rtmdet_detection_loss(c, b, out)
        return loss_cls + loss_bbox

    value, (g_cls, g_box) = value_and_grads(total, cls, boxes)
    assert np.isfinite(value)
    assert np.isfinite(g_cls).all() and np.isfinite(g_box).all()
    pos = out["labels"] >= 0
    assert np.all(g_box[~pos] == 0.0)  # box loss only over positives
    if not pos.any():
        assert np.all(g_box == 0.0)


def test_garbage_boxes_at_negatives_do_not_leak_nan():
    data, cls, boxes, gt_boxes, gt_labels, gt_centers = load_loss_case("loss_mixed_empty")
    out = {k: to_numpy(v) for k, v in assign(data["priors"], cls, boxes, gt_boxes, gt_labels, gt_centers).items()}
    pos = out["labels"] >= 0
    bad = boxes.copy()
    bad[~pos] = np.nan
    bad[0, 0] = np.inf  # image 0 has no GT: prior 0 is a negative

    def total(c, b):
        loss_cls, loss_bbox = rtmdet_detection_loss(c, b, out)
        return loss_cls + loss_bbox

    value, (g_cls, g_box) = value_and_grads(total, cls, bad)
    ref = data["loss_cls_levels"].sum() + data["loss_bbox_levels"].sum()
    assert rel_err(value, ref) <= LOSS_REL_TOL
    assert np.isfinite(g_cls).all() and np.isfinite(g_box).all()


def test_explicit_avg_factor():
    data, cls, boxes, gt_boxes, gt_labels, gt_centers = load_loss_case("loss_two_images")
    out = {k: to_numpy(v) for k, v in assign(data["priors"], cls, boxes, gt_boxes, gt_labels, gt_centers).items()}
    base_cls, base_bbox = rtmdet_detection_loss(cls, boxes, out)
    avg = float(out["assign_metrics"].sum())
    cls2, bbox2 = rtmdet_detection_loss(cls, boxes, out, avg_factor=2.0 * avg)
    np.testing.assert_allclose(to_numpy(cls2), to_numpy(base_cls) / 2, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(bbox2), to_numpy(base_bbox) / 2, rtol=1e-6)
