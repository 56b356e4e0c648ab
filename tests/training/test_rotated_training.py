"""RTMDet-R training: the rotated assigner, the rotated IoU loss, and a tiny model overfitting rotated shapes."""

import math

import cv2
import numpy as np
import pytest

from keras_rtmdet import RTMDetRotated
from keras_rtmdet.ops.boxes import distance_to_boxes
from keras_rtmdet.ops.priors import point_priors
from keras_rtmdet.ops.rotated_boxes import aligned_rotated_iou
from keras_rtmdet.ops.rotated_boxes import rbox_corners
from keras_rtmdet.losses.dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from keras_rtmdet.losses.rotated_assigner import RotatedDynamicSoftLabelAssigner
from keras_rtmdet.losses.rotated_losses import rtmdet_rotated_loss
from tests.test_case import one_batch_forever
from tests.test_case import run_fit_step_test
from tests.test_case import tiny_model
from tests.test_case import to_numpy

SIZE = 64
# 120 steps pass on every backend, so do 80 (torch); 30 fail (loss drop 4.7× for the 10× asked).
STEPS, IMAGES = 120, 4
COLOURS = [[255, 60, 60], [60, 255, 60], [60, 60, 255]]


def rotated_shapes_batch(num_images=IMAGES, seed=0):
    """Elongated rectangles at random angles on a grey background, one per image half; class = colour."""
    rng = np.random.default_rng(seed)
    images = np.full((num_images, SIZE, SIZE, 3), 40, np.uint8)
    boxes = np.zeros((num_images, 3, 5), np.float32)
    labels = np.full((num_images, 3), -1, np.int32)
    for i in range(num_images):
        for j in range(2):
            box = [j * SIZE / 2 + 16 + rng.uniform(-2, 2), rng.uniform(22, 42), rng.uniform(22, 28), rng.uniform(9, 12),
                   rng.uniform(-math.pi / 2, math.pi / 2)]
            corners = to_numpy(rbox_corners(np.array([box], "float32")))[0]
            c = int(rng.integers(0, 3))
            cv2.fillPoly(images[i], [np.round(corners).astype(np.int32)], COLOURS[c])
            boxes[i, j], labels[i, j] = box, c
    return images.astype(np.float32), {"boxes": boxes, "labels": labels}


def test_rotated_assigner_equals_the_horizontal_one_for_unrotated_boxes():
    """At angle 0 every step (inside test, centres, IoU, costs, dynamic k) must agree with mmdet's xyxy assigner."""
    rng = np.random.default_rng(3)
    priors = to_numpy(point_priors((64, 64), (8, 16, 32)))
    n = len(priors)
    distances = rng.uniform(2, 20, (2, n, 4)).astype("float32")
    xyxy = to_numpy(distance_to_boxes(priors[None, :, :2], distances))
    centre, size = (xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]
    pred_rboxes = np.concatenate([centre, size, np.zeros((2, n, 1), "float32")], -1)
    # GT edges off the prior grid (x.3, x.7), so the strict and the 0.01 px-margin inside tests agree.
    gt_xyxy = np.array([[[4.3, 6.7, 30.3, 22.7], [20.3, 28.7, 60.3, 50.7], [0, 0, 0, 0]],
                        [[10.3, 10.7, 50.3, 40.7], [0, 0, 0, 0], [0, 0, 0, 0]]], "float32")
    gt_labels = np.array([[0, 2, -1], [1, -1, -1]], "int32")
    gt_rboxes = np.concatenate([(gt_xyxy[..., :2] + gt_xyxy[..., 2:]) / 2, gt_xyxy[..., 2:] - gt_xyxy[..., :2],
                                np.zeros((2, 3, 1), "float32")], -1)
    logits = rng.normal(0, 2, (2, n, 3)).astype("float32")
    horizontal = DynamicSoftLabelAssigner()(priors, logits, xyxy, gt_xyxy, gt_labels)
    rotated = RotatedDynamicSoftLabelAssigner()(priors, logits, pred_rboxes, gt_rboxes, gt_labels)
    fg = to_numpy(horizontal["foreground_mask"])
    assert fg.sum() >= 6
    np.testing.assert_array_equal(to_numpy(rotated["assigned_gt_index"]), to_numpy(horizontal["assigned_gt_index"]))
    np.testing.assert_array_equal(to_numpy(rotated["labels"]), to_numpy(horizontal["labels"]))
    np.testing.assert_allclose(to_numpy(rotated["assign_metrics"]), to_numpy(horizontal["assign_metrics"]), atol=1e-5)
    np.testing.assert_allclose(to_numpy(rotated["target_boxes"])[fg], gt_rboxes[0][to_numpy(rotated["assigned_gt_index"])[0][fg[0]]].tolist() + gt_rboxes[1][to_numpy(rotated["assigned_gt_index"])[1][fg[1]]].tolist(), atol=1e-6)


def test_rotated_assigner_uses_the_box_frame():
    """A thin box at 45°: priors on its diagonal are candidates, the corners of its hull are not."""
    priors = to_numpy(point_priors((64, 64), (8, 16, 32)))
    gt = np.array([[[32.0, 32.0, 60.0, 6.0, math.pi / 4]]], "float32")
    assigner = RotatedDynamicSoftLabelAssigner()
    cost = assigner.compute_cost(priors, np.zeros((1, len(priors), 2), "float32"),
                                 np.tile(gt, (1, len(priors), 1)), gt, np.array([[1]], "int32"))
    valid = to_numpy(cost["valid"])[0]
    points = {tuple(p[:2]) for p in priors[valid]}
    assert (16.0, 16.0) in points and (48.0, 48.0) in points
    assert (48.0, 16.0) not in points and (16.0, 48.0) not in points


def test_rotated_loss_is_weighted_one_minus_iou_and_zero_without_positives():
    pred = np.array([[[10, 10, 8, 4, 0.0], [30, 30, 8, 4, 0.5], [0, 0, -5, 2, 0]]], "float32")
    target = np.array([[[12, 10, 8, 4, 0.0], [30, 30, 8, 4, 0.5], [0, 0, 0, 0, 0]]], "float32")
    logits = np.full((1, 3, 2), -4.0, "float32")
    assignment = {"labels": np.array([[0, 1, -1]]), "assign_metrics": np.array([[0.6, 1.0, 0.0]], "float32"),
                  "target_boxes": target}
    loss_cls, loss_bbox = (float(to_numpy(v)) for v in rtmdet_rotated_loss(logits, pred, assignment))
    iou = to_numpy(aligned_rotated_iou(pred[0, :2], target[0, :2]))
    np.testing.assert_allclose(iou, [0.6, 1.0], atol=1e-6)
    np.testing.assert_allclose(loss_bbox, 2 * (0.6 * (1 - 0.6) + 1.0 * 0.0) / 1.6, rtol=1e-5)
    assert loss_cls > 0
    empty = {"labels": np.full((1, 3), -1), "assign_metrics": np.zeros((1, 3), "float32"), "target_boxes": target}
    assert float(to_numpy(rtmdet_rotated_loss(logits, pred, empty)[1])) == 0.0


@pytest.fixture(scope="module")
def overfitted():
    """A tiny RTMDet-R fitted STEPS times to four images (one compiled train step for the module)."""
    images, targets = rotated_shapes_batch()
    # As the detection overfit test: the exp head starts from boxes two strides wide, so every
    # prior has a usable IoU (hence soft label) from the first step; the linear tiny/s head learns
    # too, but too slowly for a CPU test.
    model = tiny_model(RTMDetRotated, exp_on_reg=True)
    model.compile(optimizer=rtmdet_optimizer(model, STEPS, 1, IMAGES, base_learning_rate=0.01, base_batch_size=IMAGES))
    history = model.fit(one_batch_forever(images, targets), steps_per_epoch=1, epochs=STEPS, verbose=0).history
    return model, images, targets, history


def test_tiny_rotated_model_overfits_rotated_shapes(overfitted):
    model, images, targets, history = overfitted
    losses = np.array(history["loss"])
    assert np.all(np.isfinite(losses))
    assert losses.max() > 10 * losses[-5:].mean(), (losses.max(), losses[-5:])

    found = model.predict(images.astype(np.uint8), score_threshold=0.3, verbose=0)
    best_ious = []
    for i in range(IMAGES):
        k = found["num_detections"][i]
        for box, label in zip(targets["boxes"][i][:2], targets["labels"][i][:2]):
            same_class = found["labels"][i, :k] == label
            assert same_class.any(), f"image {i}: no class-{label} detection for {box}"
            best_ious.append(to_numpy(aligned_rotated_iou(box[None], found["boxes"][i, :k][same_class])).max())
    # TF's CPU kernels are not bit-reproducible (step-0 losses differ in the 7th digit), and in about
    # one TF run in three one box of eight is still turning through the w/h-swap ambiguity at step 120
    # (IoU 0.59-0.85, the other seven ≥ 0.98); an untrained or broken head scores near 0 everywhere.
    assert np.median(best_ious) > 0.95 and min(best_ious) > 0.5, np.round(best_ious, 3)


def test_batch_without_objects_trains_without_nan(overfitted):
    model, images, targets, _ = overfitted
    empty = {"boxes": np.zeros_like(targets["boxes"]), "labels": np.full_like(targets["labels"], -1)}
    history = model.fit(images, empty, batch_size=IMAGES, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["loss_bbox"][-1] == 0.0
    assert all(np.all(np.isfinite(to_numpy(w))) for w in model.trainable_weights)


def test_fit_step(overfitted):
    """RTMDet-R's task test (models/test_rtmdet_rotated_task.py) takes its `fit` step here, on the compiled model."""
    model, images, targets, _ = overfitted
    run_fit_step_test(model, images, targets)
