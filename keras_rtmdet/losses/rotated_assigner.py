"""The dynamic soft-label assigner of RTMDet-R: mmdet's algorithm on rotated boxes.

MMRotate has no assigner of its own: its configs run mmdet's
`DynamicSoftLabelAssigner` with `RBboxOverlaps2D` on `RotatedBoxes` (spec
`rtmdet-rotated-and-mmyolo.md` §3). Only the geometry differs, so this
subclass overrides exactly that:

* candidates: prior points inside a GT in the GT's own frame, at least
  0.01 px from its border (`RotatedBoxes.find_inside_points`);
* the centre prior uses the rbox centre;
* IoU: exact rotated IoU after `rbbox_overlaps`' clamps (w, h ≥ 1e-3,
  |cx|, |cy| ≤ 1e7), of the decoded predictions (angle included).

Boxes are (cx, cy, w, h, angle) rboxes, (B, N, 5) predictions and
(B, G, 5) GTs; the outputs are `DynamicSoftLabelAssigner`'s, with
`target_boxes` (B, N, 5). Memory: the rotated IoU costs ~16 floats per
(prior, GT) pair and intermediate, so large batches with many GTs
(DOTA patches) want `images_per_chunk`.
"""

from keras_rtmdet.ops.rotated_boxes import points_in_rboxes
from keras_rtmdet.ops.rotated_boxes import rotated_iou
from keras_rtmdet.losses.dynamic_soft_label_assigner import DynamicSoftLabelAssigner

# `find_inside_points`' margin from the box border, in pixels.
INSIDE_EPS = 0.01


class RotatedDynamicSoftLabelAssigner(DynamicSoftLabelAssigner):
    """`DynamicSoftLabelAssigner(topk=13, iou_calculator=RBboxOverlaps2D)` on rboxes."""

    def points_inside(self, points, gt_boxes):
        return points_in_rboxes(points, gt_boxes, eps=INSIDE_EPS)

    def box_centers(self, gt_boxes):
        return gt_boxes[..., :2]

    def pairwise_ious(self, pred_boxes, gt_boxes):
        return rotated_iou(pred_boxes, gt_boxes)
