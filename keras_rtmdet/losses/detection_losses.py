"""RTMDet's detection losses in `keras.ops`: QualityFocalLoss and GIoU loss.

Spec: `rtmdet-reference.md` §4.2 (mmdet 3.3.0 `RTMDetHead.loss_by_feat`).

* Classification: QualityFocalLoss (sigmoid, β = 2, weight 1) with the soft
  IoU target at the assigned class, summed over classes and priors.
* Box regression: GIoU loss (weight 2, eps 1e-6) over the positives, each
  weighted by its assign metric (the IoU target).
* Both are divided by ``max(1, Σ assign metrics)`` over the whole batch (all
  levels and images), a constant without gradient (mmdet's ``.item()``). In
  data-parallel training the sum is each replica's, averaged over the
  replicas (mmdet's ``reduce_mean``), so the summed gradients are those of
  the whole batch.
  mmdet also divides each level's sums by ``avg_factor=1.0 + float32 eps``;
  that factor (1 + 1.19e-7) is reproduced.

Padding and empty batches: background priors (label −1) only add the negative
QFL term; with no positives at all the box loss is exactly 0 and every
gradient is finite (the box terms of non-positives are computed on a dummy box
pair through a double ``where``, so garbage predictions there cannot leak NaN
into the gradient).
"""

import numpy as np
from keras import ops

from keras_rtmdet.distribute.replicas import cross_replica_mean

# mmdet's `weight_reduce_loss` divides by (avg_factor + eps), eps = float32 eps.
_TORCH_F32_EPS = float(np.finfo(np.float32).eps)


def _bce_with_logits(x, target):
    return ops.maximum(x, 0.0) - x * target + ops.log1p(ops.exp(-ops.abs(x)))


def quality_focal_loss(logits, labels, scores, beta=2.0):
    """Quality focal loss (sigmoid), summed over classes: one value per prior.

    For each class c with p = σ(x_c) and soft target y_c (the score at the
    prior's label, 0 elsewhere): ``BCEWithLogits(x_c, y_c) · |y_c − p|^β``.
    For negative entries that is ``softplus(x_c) · p^β``.

    Args:
        logits: (..., C) class logits.
        labels: (...) int class index of each prior; negative (or ≥ C) means
            background (no positive class).
        scores: (...) soft targets (the IoU) at the label; ignored for
            background.
        beta: focusing exponent (2.0).

    Returns: (...) loss per prior, summed over the C classes (mmdet's
    `quality_focal_loss` before weighting and reduction).
    """
    logits = ops.cast(logits, "float32")
    num_classes = logits.shape[-1]
    labels = ops.cast(labels, "int32")
    scores = ops.cast(scores, "float32")
    classes = ops.arange(num_classes, dtype="int32")
    positive = ops.logical_and(labels[..., None] == classes, (labels >= 0)[..., None])
    target = ops.where(positive, scores[..., None], 0.0)
    p = ops.sigmoid(logits)
    loss = _bce_with_logits(logits, target) * ops.power(ops.abs(target - p), beta)
    return ops.sum(loss, axis=-1)


def giou_loss(pred_boxes, target_boxes, weights=None, eps=1e-6, mask=None):
    """Per-box GIoU loss ``w · (1 − GIoU(pred, target))`` of aligned xyxy boxes.

    mmdet's ``bbox_overlaps(mode='giou', is_aligned=True)``: union and
    enclosing area are each clamped at ≥ ``eps``.

    Args:
        pred_boxes, target_boxes: (..., 4) xyxy.
        weights: optional (...) per-box weights.
        eps: clamp of the union and the enclosing area (GIoULoss default 1e-6).
        mask: optional (...) bool; where False the loss is 0 and no gradient
            reaches ``pred_boxes`` (the boxes are replaced by a dummy pair
            before any arithmetic, so NaN or inf there cannot leak).

    Returns: (...) loss per box.
    """
    pred_boxes = ops.cast(pred_boxes, "float32")
    target_boxes = ops.cast(target_boxes, "float32")
    if mask is not None:
        dummy = ops.convert_to_tensor(np.array([0.0, 0.0, 1.0, 1.0], "float32"))
        pred_boxes = ops.where(mask[..., None], pred_boxes, dummy)
        target_boxes = ops.where(mask[..., None], target_boxes, dummy)
    a, b = pred_boxes, target_boxes
    area1 = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area2 = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = ops.maximum(a[..., :2], b[..., :2])
    rb = ops.minimum(a[..., 2:], b[..., 2:])
    wh = ops.maximum(rb - lt, 0.0)
    overlap = wh[..., 0] * wh[..., 1]
    union = ops.maximum(area1 + area2 - overlap, eps)
    ious = overlap / union
    enclosed_lt = ops.minimum(a[..., :2], b[..., :2])
    enclosed_rb = ops.maximum(a[..., 2:], b[..., 2:])
    enclose_wh = ops.maximum(enclosed_rb - enclosed_lt, 0.0)
    enclose_area = ops.maximum(enclose_wh[..., 0] * enclose_wh[..., 1], eps)
    gious = ious - (enclose_area - union) / enclose_area
    loss = 1.0 - gious
    if weights is not None:
        loss = loss * ops.cast(weights, "float32")
    if mask is not None:
        loss = ops.where(mask, loss, 0.0)
    return loss


def rtmdet_detection_loss(cls_logits, bbox_preds_decoded, assignment, beta=2.0,
                          loss_cls_weight=1.0, loss_bbox_weight=2.0, giou_eps=1e-6,
                          avg_factor=None):
    """RTMDet's `loss_cls` and `loss_bbox` for a batch, normalised as mmdet.

    Args:
        cls_logits: (B, N, C) class logits, priors flattened level-major and
            row-major inside a level (the assigner's order).
        bbox_preds_decoded: (B, N, 4) decoded, unclamped xyxy boxes in pixels.
        assignment: the `DynamicSoftLabelAssigner` output dict; uses
            ``labels`` (−1 background), ``assign_metrics`` and
            ``target_boxes``.
        beta: QFL exponent (2.0).
        loss_cls_weight, loss_bbox_weight: 1.0 and 2.0 as the reference.
        giou_eps: GIoU clamp (1e-6).
        avg_factor: optional normaliser to use instead of ``Σ assign_metrics``
            of this batch (averaged over data-parallel replicas, mmdet's
            `reduce_mean`). It is clamped at ≥ 1 and has no gradient either way.

    Returns: (loss_cls, loss_bbox) scalars.
    """
    def box_loss(pred, target, weights, positive):
        return giou_loss(pred, target, weights=weights, eps=giou_eps, mask=positive)

    return dense_detection_loss(
        cls_logits, bbox_preds_decoded, assignment, box_loss, beta, loss_cls_weight, loss_bbox_weight, avg_factor
    )


def dense_detection_loss(cls_logits, decoded_boxes, assignment, box_loss, beta=2.0, loss_cls_weight=1.0,
                         loss_bbox_weight=2.0, avg_factor=None):
    """QFL plus `box_loss(pred, target, weights, positive) → (B, N)`, both normalised as mmdet.

    The shared core of `rtmdet_detection_loss` (GIoU on xyxy boxes) and
    `rtmdet_rotated_loss` (rotated IoU); arguments as the former's.
    Returns: (loss_cls, loss_bbox) scalars.
    """
    labels = ops.cast(assignment["labels"], "int32")
    metrics = ops.stop_gradient(ops.cast(assignment["assign_metrics"], "float32"))
    target_boxes = ops.stop_gradient(ops.cast(assignment["target_boxes"], "float32"))
    positive = labels >= 0

    if avg_factor is None:
        avg_factor = cross_replica_mean(ops.sum(ops.where(positive, metrics, 0.0)))
    avg_factor = ops.maximum(ops.stop_gradient(ops.cast(avg_factor, "float32")), 1.0)
    level_norm = 1.0 + _TORCH_F32_EPS  # avg_factor=1.0 per level in mmdet

    qfl = quality_focal_loss(cls_logits, labels, metrics, beta=beta)
    loss_cls = ops.sum(qfl) / level_norm / avg_factor * loss_cls_weight

    box = box_loss(ops.cast(decoded_boxes, "float32"), target_boxes, metrics, positive)
    loss_bbox = ops.sum(box) / level_norm / avg_factor * loss_bbox_weight
    return loss_cls, loss_bbox
