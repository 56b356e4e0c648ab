"""mmdet's recorded assigner and loss cases (tests/fixtures/assigner), shared by the loss tests."""

import os

import keras
import numpy as np

from keras_rtmdet.losses import DynamicSoftLabelAssigner
from keras_rtmdet.losses import mask_centers_of_mass
from tests.test_case import FIXTURES
from tests.test_case import to_numpy

ASSIGNER_FIXTURES = os.path.join(FIXTURES, "assigner")
# Losses within 1e-4 of the reference, relatively (fixtures/README.md).
LOSS_REL_TOL = 1e-4
# The recorded heads' classes (COCO).
NUM_CLASSES = 80


def maybe_jit(fn):
    """On JAX, jit the whole call: one XLA compile instead of one per eager op
    (eager JAX compiles every op for every new shape, ~4 s per call on CI)."""
    if keras.config.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def flatten_levels(data, prefix, channels):
    """(B, C, H_l, W_l) per level → (B, N, C), level-major, row-major inside a level."""
    parts = []
    for level in range(3):
        x = data[f"{prefix}_{level}"]
        parts.append(np.transpose(x, (0, 2, 3, 1)).reshape(x.shape[0], -1, channels))
    return np.concatenate(parts, axis=1)


def load_loss_case(name):
    """`loss_<case>.npz`: (data, class logits, decoded boxes, padded GT boxes, GT labels, GT mask centres or None)."""
    data = dict(np.load(os.path.join(ASSIGNER_FIXTURES, f"{name}.npz")))
    priors = data["priors"]
    cls = flatten_levels(data, "cls_score", NUM_CLASSES)
    dist = flatten_levels(data, "bbox_pred", 4)
    # distance2bbox without max_shape (the training path does not clamp).
    boxes = np.concatenate([priors[None, :, :2] - dist[..., :2], priors[None, :, :2] + dist[..., 2:]], -1)
    g = max(1, max(len(data[f"img{b}_gt_labels"]) for b in range(2)))
    gt_boxes = np.zeros((2, g, 4), np.float32)
    gt_labels = -np.ones((2, g), np.int64)
    gt_centers = None
    is_ins = "img0_gt_masks" in data
    if is_ins:
        gt_centers = np.zeros((2, g, 2), np.float32)
    for b in range(2):
        k = len(data[f"img{b}_gt_labels"])
        gt_boxes[b, :k] = data[f"img{b}_gt_bboxes"]
        gt_labels[b, :k] = data[f"img{b}_gt_labels"]
        if is_ins and k:
            gt_centers[b, :k] = to_numpy(mask_centers_of_mass(data[f"img{b}_gt_masks"]))
    return data, cls.astype(np.float32), boxes.astype(np.float32), gt_boxes, gt_labels, gt_centers


def assign(priors, cls, boxes, gt_boxes, gt_labels, gt_centers):
    dsl = DynamicSoftLabelAssigner()
    return maybe_jit(lambda *a: dsl(*a[:5], gt_centers=a[5]))(priors, cls, boxes, gt_boxes, gt_labels, gt_centers)


def rel_err(actual, ref):
    actual, ref = float(actual), float(ref)
    if ref == 0.0:
        return abs(actual)
    return abs(actual - ref) / abs(ref)
