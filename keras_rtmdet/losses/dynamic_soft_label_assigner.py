"""RTMDet's `DynamicSoftLabelAssigner`, batched, in `keras.ops`.

This reproduces mmdet 3.3.0's per-image `DynamicSoftLabelAssigner.assign`
(spec: `rtmdet-reference.md` §4.1) on a padded batch, with no Python loop over
images or GTs, so it traces under `jax.jit` / `tf.function` (XLA) and runs on
the GPU with PyTorch.

Batched layout
--------------
* ``priors`` (N, 4): ``(x, y, stride_w, stride_h)``, shared by the batch.
* ``pred_logits`` (B, N, C): raw class logits (the sigmoid is applied here).
* ``pred_boxes`` (B, N, 4): decoded, **unclamped** xyxy boxes in pixels.
* ``gt_boxes`` (B, G, 4) xyxy pixels and ``gt_labels`` (B, G) int; slots with
  a negative label are padding and never take part.
* ``gt_centers`` (B, G, 2), optional: the GT centres of the centre prior. The
  detector uses the box centre (the default); RTMDet-Ins passes the GT mask's
  centre of mass (`mask_centers_of_mass`).
* N must be static. G should be static too: a static G = 0 returns all
  background directly; a dynamic (None) G takes the general path, which
  needs at least one (possibly padded) slot at run time. Images without GTs in
  a batch with G ≥ 1 (all slots padded) are all background, without NaN.

How the per-image algorithm maps onto fixed shapes
--------------------------------------------------
* mmdet restricts everything to the V "valid" priors (inside at least one
  GT). Here every tensor keeps all N priors, and the invalid ones (and the
  padded GT columns) are excluded with ``where``, never by multiplication:
  the centre prior ``10**(d - 3)`` overflows to ``inf`` in float32 for large
  distances and ``0 * inf`` would give NaN (§6 pitfall 5).
* Classification cost: mmdet sums ``BCE(x_c, y_c)·|y_c − σ(x_c)|²`` over all
  C classes, with the soft label ``y`` = IoU at the GT's class and 0 elsewhere,
  building a (V, G, C) tensor (the OOM of §6 pitfall 4). Here the negative term
  ``softplus(x_c)·σ(x_c)²`` is summed over all classes once per prior (B, N),
  then, per (prior, GT) pair, the GT-class negative term is replaced by the
  positive one: ``cost = Σ_c neg_c − neg_label + pos_label``. This is the same
  quantity (not MMYOLO's GT-class-only approximation) at O(B·N·G) memory.
* Dynamic k: ``k_j = max(1, int(Σ top-min(13, V) IoU_·j))`` over the valid
  priors. Invalid priors get IoU 0 for this sum, and as IoUs are ≥ 0 the
  top-``min(13, N)`` sum over all priors equals mmdet's sum over the valid
  ones.
* Per-GT selection of the k_j lowest-cost priors: since k_j ≤ 13, a
  ``top_k`` of 13 over the negated costs gives the k_j-th lowest cost c_j of
  each GT; a prior is selected when its cost is < c_j, or == c_j and it is
  among the first (lowest-index) priors needed to make up k_j (exact ties are
  broken by prior index, independently of ``top_k``'s tie order). Invalid
  priors get cost +inf and valid ones are clamped to the largest finite float,
  so a valid prior whose centre prior overflowed still ranks before every
  invalid one.
* Conflicts (a prior selected by several GTs) go to the argmin of the prior's
  cost row over all real GTs, as mmdet does (possibly a GT that did not select
  it).

Memory
------
The working set is a handful of (B, N, G) float32 tensors (pairwise IoU, the
cost, the in-box test, the selection mask, ...): with XLA fusion roughly 6-10
live tensors of ``4·B·N·G`` bytes each, and nothing of size C·G. For one 640²
image (N = 8400) with 300 GTs that is 2.5 M elements, 10 MB per tensor: fine.
A batch of 32 such images is 81 M elements, 320 MB per tensor, i.e. a few GB
at peak. To bound it, pass ``images_per_chunk``: the batch is then processed in
static slices of that many images (an unrolled loop over chunks, still
traceable) and the peak scales with ``images_per_chunk·N·G`` instead of
``B·N·G``. Padding G to a few bucket sizes keeps the shapes static for XLA.
The number of GTs itself is never capped, since that would change the targets.

All computation is float32 and under ``stop_gradient``: the assigner is not
differentiated through (the reference detaches its inputs).
"""

import numpy as np
from keras import ops

from keras_rtmdet.ops.boxes import pairwise_iou

EPS = 1e-7  # mmdet's assigner EPS (log and centre-of-mass)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _gather_last(x, index):
    """x (B, N, C), index (B, G) → (B, N, G) with out[b, i, j] = x[b, i, index[b, j]]."""
    b, n = ops.shape(x)[0], ops.shape(x)[1]
    g = ops.shape(index)[1]
    idx = ops.broadcast_to(index[:, None, :], (b, n, g))
    return ops.take_along_axis(x, idx, axis=2)


def _bce_with_logits(x, target):
    """Element-wise `F.binary_cross_entropy_with_logits(x, target)`."""
    return ops.maximum(x, 0.0) - x * target + ops.log1p(ops.exp(-ops.abs(x)))


def mask_centers_of_mass(masks, eps=EPS):
    """GT centres of the Ins assigner: the masks' centres of mass.

    mmdet's `center_of_mass`: integer pixel indices (no +0.5),
    ``Σ x·m / max(Σ m, eps)`` and likewise for y, at the padded image size.

    Args:
        masks: (..., H, W) binary masks.
    Returns: (..., 2) centres (x, y), float32.
    """
    masks = ops.cast(masks, "float32")
    h, w = masks.shape[-2], masks.shape[-1]
    ys = ops.arange(h, dtype="float32")[:, None]
    xs = ops.arange(w, dtype="float32")[None, :]
    norm = ops.maximum(ops.sum(masks, axis=(-2, -1)), eps)
    cx = ops.sum(masks * xs, axis=(-2, -1)) / norm
    cy = ops.sum(masks * ys, axis=(-2, -1)) / norm
    return ops.stack([cx, cy], axis=-1)


class DynamicSoftLabelAssigner:
    """Batched `DynamicSoftLabelAssigner(topk=13)` of RTMDet (mmdet 3.3.0).

    Args:
        topk: candidate count of the dynamic-k estimate (13).
        soft_center_radius: r of the centre prior ``10**(d/stride − r)`` (3.0).
        iou_weight: weight of the ``−log(IoU + 1e-7)`` cost (3.0).
        iou_eps: union clamp of the pairwise IoU (``BboxOverlaps2D``: 1e-6).
        images_per_chunk: optional; process the batch in static slices of this
            many images to bound the (B, N, G) working set (see module doc).

    Call arguments:
        priors: (N, 4) ``(x, y, stride_w, stride_h)``.
        pred_logits: (B, N, C) class logits.
        pred_boxes: (B, N, 4) decoded xyxy boxes (not clamped).
        gt_boxes: (B, G, 4) xyxy, padded.
        gt_labels: (B, G) int, -1 for padding.
        gt_centers: optional (B, G, 2) centres (default: box centres).

    Returns: dict of
        ``assigned_gt_index`` (B, N) int32: GT slot index, -1 for background
            (mmdet's ``gt_inds`` minus 1);
        ``labels`` (B, N) int32: class of the assigned GT, -1 for background;
        ``assign_metrics`` (B, N) float32: IoU of the prediction with its
            assigned GT (the soft label and the box-loss weight), 0 for
            background;
        ``target_boxes`` (B, N, 4) float32: the assigned GT box, 0 for
            background;
        ``foreground_mask`` (B, N) bool.
    """

    def __init__(self, topk=13, soft_center_radius=3.0, iou_weight=3.0, iou_eps=1e-6,
                 images_per_chunk=None):
        self.topk = int(topk)
        self.soft_center_radius = float(soft_center_radius)
        self.iou_weight = float(iou_weight)
        self.iou_eps = float(iou_eps)
        self.images_per_chunk = images_per_chunk

    def get_config(self):
        return {
            "topk": self.topk,
            "soft_center_radius": self.soft_center_radius,
            "iou_weight": self.iou_weight,
            "iou_eps": self.iou_eps,
            "images_per_chunk": self.images_per_chunk,
        }

    def __call__(self, priors, pred_logits, pred_boxes, gt_boxes, gt_labels, gt_centers=None):
        priors = ops.stop_gradient(ops.cast(priors, "float32"))
        pred_logits = ops.stop_gradient(ops.cast(pred_logits, "float32"))
        pred_boxes = ops.stop_gradient(ops.cast(pred_boxes, "float32"))
        gt_boxes = ops.stop_gradient(ops.cast(gt_boxes, "float32"))
        gt_labels = ops.cast(gt_labels, "int32")
        if gt_centers is not None:
            gt_centers = ops.stop_gradient(ops.cast(gt_centers, "float32"))

        batch = pred_logits.shape[0]
        chunk = self.images_per_chunk
        if chunk is None or batch is None or chunk >= batch:
            return self._assign(priors, pred_logits, pred_boxes, gt_boxes, gt_labels, gt_centers)
        parts = []
        for start in range(0, batch, chunk):
            sl = slice(start, min(start + chunk, batch))
            parts.append(self._assign(
                priors, pred_logits[sl], pred_boxes[sl], gt_boxes[sl], gt_labels[sl],
                None if gt_centers is None else gt_centers[sl]))
        return {k: ops.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}

    # ------------------------------------------------------------------
    def _background(self, pred_boxes):
        shape = ops.shape(pred_boxes)[:2]
        minus_one = ops.full(shape, -1, dtype="int32")
        zeros = ops.zeros(shape, dtype="float32")
        return {
            "assigned_gt_index": minus_one,
            "labels": minus_one,
            "assign_metrics": zeros,
            "target_boxes": ops.zeros_like(pred_boxes),
            "foreground_mask": ops.zeros(shape, dtype="bool"),
        }

    def compute_cost(self, priors, pred_logits, pred_boxes, gt_boxes, gt_labels, gt_centers=None):
        """The matching cost and pairwise IoUs, for inspection (same inputs as a call).

        Returns: dict of ``cost`` (B, N, G) (``inf`` at invalid priors and padded
        GTs; finite values clamped to the float32 maximum), ``ious`` (B, N, G)
        and ``valid`` (B, N), the priors inside at least one GT.
        """
        gt_labels = ops.cast(gt_labels, "int32")
        cost, ious, valid, _ = self._cost(
            ops.cast(priors, "float32"), ops.cast(pred_logits, "float32"),
            ops.cast(pred_boxes, "float32"), ops.cast(gt_boxes, "float32"), gt_labels,
            None if gt_centers is None else ops.cast(gt_centers, "float32"), gt_labels >= 0)
        return {"cost": cost, "ious": ious, "valid": valid}

    # --- box geometry: the rotated assigner overrides these three ---

    def points_inside(self, points, gt_boxes):
        """(B, N, G) bool: point i strictly inside GT j. points (N, 2), gt_boxes (B, G, 4) xyxy."""
        px, py = points[None, :, None, 0], points[None, :, None, 1]
        x1, y1, x2, y2 = (gt_boxes[:, None, :, i] for i in range(4))
        return ops.minimum(ops.minimum(px - x1, py - y1), ops.minimum(x2 - px, y2 - py)) > 0

    def box_centers(self, gt_boxes):
        """(B, G, 2) centres of the centre prior."""
        return (gt_boxes[..., :2] + gt_boxes[..., 2:4]) / 2.0

    def pairwise_ious(self, pred_boxes, gt_boxes):
        """(B, N, G) IoU of every prediction with every GT (`BboxOverlaps2D`)."""
        return pairwise_iou(pred_boxes, gt_boxes, eps=self.iou_eps)

    def _cost(self, priors, pred_logits, pred_boxes, gt_boxes, gt_labels, gt_centers, gt_valid):
        px = priors[:, 0][None, :, None]  # (1, N, 1)
        py = priors[:, 1][None, :, None]
        stride = priors[:, 2][None, :, None]

        # 1. In-box test of the prior points; padded GTs contain nothing.
        inside = ops.logical_and(self.points_inside(priors[:, :2], gt_boxes), gt_valid[:, None, :])  # (B, N, G)
        valid = ops.any(inside, axis=2)  # (B, N)
        pair_ok = ops.logical_and(valid[:, :, None], gt_valid[:, None, :])  # (B, N, G)

        # 2-3. Soft centre prior 10**(d/stride − r) (may overflow to inf: only ranked).
        if gt_centers is None:
            gt_centers = self.box_centers(gt_boxes)
        dx = px - gt_centers[:, None, :, 0]
        dy = py - gt_centers[:, None, :, 1]
        distance = ops.sqrt(dx * dx + dy * dy) / stride
        center_cost = ops.power(10.0, distance - self.soft_center_radius)

        # 4. IoU cost.
        ious = self.pairwise_ious(pred_boxes, gt_boxes)  # (B, N, G)
        iou_cost = -ops.log(ious + EPS) * self.iou_weight

        # 5. Soft classification cost summed over all classes, without (B, N, G, C).
        p = ops.sigmoid(pred_logits)
        neg_sum = ops.sum(ops.softplus(pred_logits) * p * p, axis=-1)  # (B, N)
        safe_labels = ops.where(gt_valid, gt_labels, 0)
        x_l = _gather_last(pred_logits, safe_labels)  # (B, N, G)
        p_l = ops.sigmoid(x_l)
        neg_l = ops.softplus(x_l) * p_l * p_l
        pos_l = _bce_with_logits(x_l, ious) * ops.square(ious - p_l)
        cls_cost = neg_sum[:, :, None] - neg_l + pos_l

        # 6. Total cost; invalid pairs at +inf, valid ones finite (clamped).
        cost = cls_cost + iou_cost + center_cost
        cost = ops.where(pair_ok, ops.minimum(cost, _FLOAT32_MAX), float("inf"))

        return cost, ious, valid, pair_ok

    def _assign(self, priors, pred_logits, pred_boxes, gt_boxes, gt_labels, gt_centers):
        num_priors = priors.shape[0]
        num_gts = gt_boxes.shape[1]
        if num_gts == 0 or num_priors == 0:
            return self._background(pred_boxes)

        gt_valid = gt_labels >= 0  # (B, G)
        cost, ious, valid, pair_ok = self._cost(
            priors, pred_logits, pred_boxes, gt_boxes, gt_labels, gt_centers, gt_valid)

        # 7. Dynamic k per GT from the top-min(topk, V) IoUs of the valid priors.
        cand = min(self.topk, num_priors)
        ious_valid = ops.where(valid[:, :, None], ious, 0.0)
        top_ious, _ = ops.top_k(ops.transpose(ious_valid, (0, 2, 1)), cand)  # (B, G, cand)
        dynamic_k = ops.cast(ops.sum(top_ious, axis=-1), "int32")
        dynamic_k = ops.clip(dynamic_k, 1, cand)  # (B, G)

        # 8. Each GT takes its k_j lowest-cost valid priors (ties: lowest index).
        neg_top, _ = ops.top_k(-ops.transpose(cost, (0, 2, 1)), cand)  # (B, G, cand)
        kth_cost = -ops.take_along_axis(neg_top, (dynamic_k - 1)[:, :, None], axis=2)[:, :, 0]
        kth_cost = kth_cost[:, None, :]  # (B, 1, G)
        below = cost < kth_cost
        tie = cost == kth_cost
        num_below = ops.sum(ops.cast(below, "int32"), axis=1)  # (B, G)
        tie_rank = ops.cumsum(ops.cast(tie, "int32"), axis=1)  # 1-based among ties
        take_tie = ops.logical_and(tie, tie_rank <= (dynamic_k - num_below)[:, None, :])
        matched = ops.logical_and(ops.logical_or(below, take_tie), pair_ok)  # (B, N, G)

        # 9. Priors matched by several GTs go to the argmin of their cost row.
        num_matched = ops.sum(ops.cast(matched, "int32"), axis=2)  # (B, N)
        first_match = ops.argmax(ops.cast(matched, "int32"), axis=2)
        best_cost = ops.argmin(cost, axis=2)
        assigned = ops.cast(ops.where(num_matched > 1, best_cost, first_match), "int32")

        # 10. Targets.
        fg = num_matched > 0
        assigned_gt_index = ops.where(fg, assigned, -1)
        labels = ops.where(fg, ops.take_along_axis(gt_labels, assigned, axis=1), -1)
        metrics = ops.take_along_axis(ious, assigned[:, :, None], axis=2)[:, :, 0]
        metrics = ops.where(fg, metrics, 0.0)
        box_index = ops.broadcast_to(assigned[:, :, None], ops.shape(pred_boxes))
        target_boxes = ops.take_along_axis(gt_boxes, box_index, axis=1)
        target_boxes = ops.where(fg[:, :, None], target_boxes, 0.0)
        return {
            "assigned_gt_index": ops.cast(assigned_gt_index, "int32"),
            "labels": ops.cast(labels, "int32"),
            "assign_metrics": metrics,
            "target_boxes": target_boxes,
            "foreground_mask": fg,
        }
