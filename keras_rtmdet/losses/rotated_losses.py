"""RTMDet-R's losses: QualityFocalLoss + `RotatedIoULoss(mode='linear', loss_weight=2)`.

Spec `rtmdet-rotated-and-mmyolo.md` §4: the box loss is
Σ_pos t_i·(1 − max(IoU_i, 1e-6)) of the decoded rboxes (angle included)
against their GTs, normalised like RTMDet's (Σ t over the batch, ≥ 1). The
angle learns only through the IoU. The IoU is the exact, sort-free
`aligned_rotated_iou` in float32 (mmcv's `diff_iou_rotated_2d` is wrong in
some configurations and NaNs under AMP: §11 pitfalls 1–2), whose sizes are
clamped at 1e-3 px, so a prediction with a negative side (possible with the
linear tiny/s head) gets no gradient on that side, like a zero-IoU box.
"""

import numpy as np
from keras import ops

from keras_rtmdet.ops.rotated_boxes import aligned_rotated_iou
from keras_rtmdet.losses.detection_losses import dense_detection_loss

# The loss's IoU floor (`RotatedIoULoss`: iou.clamp(min=1e-6)).
IOU_FLOOR = 1e-6


def rotated_iou_loss(pred_boxes, target_boxes, weights=None, mask=None):
    """Per-box `w · (1 − max(IoU, 1e-6))` of aligned rboxes (…, 5).

    Where `mask` is False the loss is 0 and no gradient reaches
    `pred_boxes` (a dummy pair replaces both boxes before any arithmetic).
    """
    pred_boxes = ops.cast(pred_boxes, "float32")
    target_boxes = ops.cast(target_boxes, "float32")
    if mask is not None:
        dummy = ops.convert_to_tensor(np.array([0.0, 0.0, 1.0, 1.0, 0.0], "float32"))
        pred_boxes = ops.where(mask[..., None], pred_boxes, dummy)
        target_boxes = ops.where(mask[..., None], target_boxes, dummy)
    loss = 1.0 - ops.maximum(aligned_rotated_iou(pred_boxes, target_boxes), IOU_FLOOR)
    if weights is not None:
        loss = loss * ops.cast(weights, "float32")
    if mask is not None:
        loss = ops.where(mask, loss, 0.0)
    return loss


def rtmdet_rotated_loss(cls_logits, decoded_rboxes, assignment, beta=2.0, loss_cls_weight=1.0,
                        loss_bbox_weight=2.0, avg_factor=None):
    """RTMDet-R's `loss_cls` and `loss_bbox` for a batch.

    Args:
        cls_logits: (B, N, C) class logits.
        decoded_rboxes: (B, N, 5) decoded rboxes of every prior.
        assignment: `RotatedDynamicSoftLabelAssigner` output (`target_boxes`
            (B, N, 5)).
        avg_factor: optional normaliser (see `rtmdet_detection_loss`).
    Returns: (loss_cls, loss_bbox) scalars.
    """

    def box_loss(pred, target, weights, positive):
        return rotated_iou_loss(pred, target, weights=weights, mask=positive)

    return dense_detection_loss(
        cls_logits, decoded_rboxes, assignment, box_loss, beta, loss_cls_weight, loss_bbox_weight, avg_factor
    )
