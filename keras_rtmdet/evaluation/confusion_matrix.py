"""A detection confusion matrix, counted as MMDetection's `tools/analysis_tools/confusion_matrix.py`.

Rows are the ground-truth class, columns the predicted class, the last row
and column "background": a detection (score ≥ `score_threshold`) adds one
to (g, d) for every ground truth g it overlaps with IoU ≥ `iou_threshold`
(d its class), or to (background, d) when it overlaps none; a ground truth
that no detection of its own class matched adds one to (g, background).

The counting is the same for every box type: `count_confusions` takes the
IoU function (`xywh_iou` for COCO boxes, `dota_metrics.pairwise_rotated_iou`
for rotated ones). Ground truths flagged `gt_ignore` (COCO's crowd regions,
DOTA's difficult objects) are not ground truths: they add no miss and take
no detection, and a detection that overlaps only ignored ones is not counted
at all, as the AP ignores it. (MMDetection's tool drops them, so a detection
on a crowd region is a background FP there.)
"""

import numpy as np

# MMDetection's defaults for the plot (score_thr, tp_iou_thr).
DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_IOU_THRESHOLD = 0.5


def xywh_iou(a, b):
    """IoU of every COCO [x, y, w, h] box of `a` (N, 4) with every box of `b` (M, 4): (N, M)."""
    a_lo, a_hi = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b_lo, b_hi = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    inter = np.prod(np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0.0, None), axis=-1)
    union = np.prod(a[:, None, 2:], -1) + np.prod(b[None, :, 2:], -1) - inter
    return inter / np.maximum(union, 1e-12)


def _count_image(matrix, image, pairwise_iou, score_threshold, iou_threshold):
    background = len(matrix) - 1
    kept = np.asarray(image["det_scores"], np.float64).reshape(-1) >= score_threshold
    det_boxes = np.asarray(image["det_boxes"])[kept]
    det_labels = np.asarray(image["det_labels"], np.int64).reshape(-1)[kept]
    gt_boxes = np.asarray(image["gt_boxes"])
    gt_labels = np.asarray(image["gt_labels"], np.int64).reshape(-1)
    ignore = np.asarray(image.get("gt_ignore", np.zeros(len(gt_labels), bool)), bool).reshape(-1)
    overlaps = np.zeros((len(det_labels), len(gt_labels)), bool)
    if overlaps.size:
        overlaps = np.asarray(pairwise_iou(det_boxes, gt_boxes)) >= iou_threshold
    matched = np.zeros(len(gt_labels), bool)
    for d, label in enumerate(det_labels):
        hits = np.flatnonzero(overlaps[d] & ~ignore)
        if hits.size == 0 and not overlaps[d].any():
            matrix[background, label] += 1
        np.add.at(matrix, (gt_labels[hits], label), 1)
        matched[hits[gt_labels[hits] == label]] = True
    np.add.at(matrix, (gt_labels[~matched & ~ignore], background), 1)


def count_confusions(
    images, num_classes, pairwise_iou, score_threshold=DEFAULT_SCORE_THRESHOLD, iou_threshold=DEFAULT_IOU_THRESHOLD
):
    """(C + 1, C + 1) int64 counts over `images`; rows and columns are the classes 0..C−1, then background.

    Args:
        images: per image a dict of `det_boxes` (K, D), `det_labels` (K,),
            `det_scores` (K,), `gt_boxes` (G, D), `gt_labels` (G,) and
            optionally `gt_ignore` (G,) bool.
        num_classes: C; labels are 0..C−1.
        pairwise_iou: (K, D) and (G, D) boxes → (K, G) IoU; called only when
            both are non-empty.
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for image in images:
        _count_image(matrix, image, pairwise_iou, score_threshold, iou_threshold)
    return matrix


def confusion_matrix(
    coco_gt, results, category_ids, image_ids=None, score_threshold=DEFAULT_SCORE_THRESHOLD,
    iou_threshold=DEFAULT_IOU_THRESHOLD,
):
    """(C + 1, C + 1) int64 counts of COCO results; index `category_ids.index(id)` per class, C = background.

    Args:
        coco_gt: `pycocotools.coco.COCO` ground truth (crowd annotations are ignored regions).
        results: COCO result dicts (`bbox` [x, y, w, h], `category_id`, `score`).
        category_ids: the classes' COCO ids, in the matrix's order.
        image_ids: the images counted (default: every image of `coco_gt`).
    """
    index = {cat_id: i for i, cat_id in enumerate(category_ids)}
    image_ids = coco_gt.getImgIds() if image_ids is None else [int(i) for i in image_ids]
    by_image = {}
    for result in results:
        by_image.setdefault(int(result["image_id"]), []).append(result)

    def images():
        for image_id in image_ids:
            truths = coco_gt.imgToAnns.get(image_id, [])
            found = by_image.get(image_id, [])
            yield {
                "det_boxes": np.asarray([r["bbox"] for r in found], np.float64).reshape(-1, 4),
                "det_labels": [index[r["category_id"]] for r in found],
                "det_scores": [r["score"] for r in found],
                "gt_boxes": np.asarray([a["bbox"] for a in truths], np.float64).reshape(-1, 4),
                "gt_labels": [index[a["category_id"]] for a in truths],
                "gt_ignore": [bool(a.get("iscrowd", 0)) for a in truths],
            }

    return count_confusions(images(), len(category_ids), xywh_iou, score_threshold, iou_threshold)
