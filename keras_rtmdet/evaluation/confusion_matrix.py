"""A detection confusion matrix, as MMDetection's `tools/analysis_tools/confusion_matrix.py` counts it.

Rows are the ground-truth class, columns the predicted class, the last row
and column "background": a detection (score ≥ `score_threshold`) adds one
to (g, d) for every ground truth g it overlaps with IoU ≥ `iou_threshold`
(d its class), or to (background, d) when it overlaps none; a ground truth
that no detection of its own class matched adds one to (g, background).
Crowd annotations are not ground truths here.
"""

import numpy as np

# MMDetection's defaults for the plot (score_thr, tp_iou_thr).
DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_IOU_THRESHOLD = 0.5


def _xywh_iou(a, b):
    """IoU of every COCO [x, y, w, h] box of `a` (N, 4) with every box of `b` (M, 4): (N, M)."""
    a_lo, a_hi = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b_lo, b_hi = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    inter = np.prod(np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0.0, None), axis=-1)
    union = np.prod(a[:, None, 2:], -1) + np.prod(b[None, :, 2:], -1) - inter
    return inter / np.maximum(union, 1e-12)


def confusion_matrix(
    coco_gt, results, category_ids, image_ids=None, score_threshold=DEFAULT_SCORE_THRESHOLD,
    iou_threshold=DEFAULT_IOU_THRESHOLD,
):
    """(C + 1, C + 1) int64 counts; index `category_ids.index(id)` per class, C = background.

    Args:
        coco_gt: `pycocotools.coco.COCO` ground truth.
        results: COCO result dicts (`bbox` [x, y, w, h], `category_id`, `score`).
        category_ids: the classes' COCO ids, in the matrix's order.
        image_ids: the images counted (default: every image of `coco_gt`).
    """
    index = {cat_id: i for i, cat_id in enumerate(category_ids)}
    background = len(category_ids)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    image_ids = coco_gt.getImgIds() if image_ids is None else [int(i) for i in image_ids]
    by_image = {}
    for result in results:
        if result["score"] >= score_threshold:
            by_image.setdefault(int(result["image_id"]), []).append(result)
    for image_id in image_ids:
        truths = [a for a in coco_gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        found = by_image.get(image_id, [])
        gt_boxes = np.asarray([a["bbox"] for a in truths], np.float64).reshape(-1, 4)
        gt_labels = np.asarray([index[a["category_id"]] for a in truths], np.int64)
        dt_boxes = np.asarray([r["bbox"] for r in found], np.float64).reshape(-1, 4)
        dt_labels = np.asarray([index[r["category_id"]] for r in found], np.int64)
        overlaps = _xywh_iou(dt_boxes, gt_boxes) >= iou_threshold
        matched = np.zeros(len(truths), bool)
        for d, label in enumerate(dt_labels):
            hits = np.flatnonzero(overlaps[d])
            if hits.size == 0:
                matrix[background, label] += 1
            np.add.at(matrix, (gt_labels[hits], label), 1)
            matched[hits[gt_labels[hits] == label]] = True
        np.add.at(matrix, (gt_labels[~matched], background), 1)
    return matrix
