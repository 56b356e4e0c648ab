"""Per-class COCO metrics and precision-recall curves, read from pycocotools' `COCOeval` arrays.

`precision_at_recall_points` applies the same 101-point interpolation to
the cumulative TP / FP counts of another matcher (DOTA's), so that every
`pr_curves` entry means the same thing.

`COCOeval.accumulate` leaves `eval["precision"]` of shape (T, R, K, A, M):
T IoU thresholds (0.50:0.05:0.95), R = 101 recall points (0:0.01:1), K
classes, A area ranges (0 = all), M detection caps; −1 where a class has no
ground truth.
"""

import numpy as np

RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _cap_index(evaluator):
    max_dets = list(evaluator.params.maxDets)  # sorted by `evaluate`
    return max_dets.index(100) if 100 in max_dets else int(np.argmax(max_dets))


def _mean_present(values):
    values = values[values > -1]
    return float(values.mean()) if values.size else float("nan")


def per_class_metrics(evaluator, names):
    """{name: {"AP", "AP50", "AP75", "ground_truths", "detections"}} of an accumulated `COCOeval`.

    APs at 100 detections per image (the largest cap if 100 is not one), all
    areas; NaN for a class without ground truth. `ground_truths` counts the
    non-crowd annotations, `detections` the results scored (within the cap),
    over the evaluated images.
    """
    precision = evaluator.eval["precision"]
    m = _cap_index(evaluator)
    cap = evaluator.params.maxDets[m]
    iou_thresholds = np.asarray(evaluator.params.iouThrs)
    at50, at75 = (int(np.argmin(np.abs(iou_thresholds - t))) for t in (0.5, 0.75))
    counts = {cat_id: [0, 0] for cat_id in evaluator.params.catIds}
    for image in evaluator.evalImgs:
        # evalImgs holds one entry per (class, area range, image); area range 0 is "all".
        if image is None or image["aRng"] != evaluator.params.areaRng[0]:
            continue
        counts[image["category_id"]][0] += int(np.sum(np.logical_not(image["gtIgnore"])))
        counts[image["category_id"]][1] += min(len(image["dtIds"]), cap)
    table = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        table[names[cat_id]] = {
            "AP": _mean_present(precision[:, :, k, 0, m]),
            "AP50": _mean_present(precision[at50, :, k, 0, m]),
            "AP75": _mean_present(precision[at75, :, k, 0, m]),
            "ground_truths": counts[cat_id][0],
            "detections": counts[cat_id][1],
        }
    return table


def precision_at_recall_points(true_positives, false_positives, num_ground_truths):
    """(101,) precision at `RECALL_POINTS` of one PR curve, interpolated as `COCOeval.accumulate` does.

    Args:
        true_positives, false_positives: (K,) cumulative TP and FP counts of
            the detections in descending score order (detections on ignored
            ground truths add to neither).
        num_ground_truths: the non-ignored ground truths, > 0.
    Precision is made non-increasing in recall (the best precision at any
    higher recall), then read at the first detection whose recall reaches
    each point; 0 beyond the last recall reached.
    """
    true_positives = np.asarray(true_positives, np.float64)
    recall = true_positives / num_ground_truths
    precision = true_positives / (true_positives + np.asarray(false_positives, np.float64) + np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    reached = index < len(envelope)
    points = np.zeros(len(RECALL_POINTS))
    points[reached] = envelope[index[reached]]
    return points


def precision_recall_curves(evaluator, names):
    """{"recall": 101 points, "classes": {name: {"IoU=0.50": precisions, "IoU=0.50:0.95": precisions}}}.

    Precision at each recall point, all areas, 100 detections per image; a
    class without ground truth is left out.
    """
    precision = evaluator.eval["precision"]
    m = _cap_index(evaluator)
    at50 = int(np.argmin(np.abs(np.asarray(evaluator.params.iouThrs) - 0.5)))
    classes = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        curves = precision[:, :, k, 0, m]
        if not (curves > -1).any():
            continue
        clipped = np.clip(curves, 0.0, None)
        classes[names[cat_id]] = {
            "IoU=0.50": [round(float(v), 4) for v in clipped[at50]],
            "IoU=0.50:0.95": [round(float(v), 4) for v in clipped.mean(axis=0)],
        }
    return {"recall": [round(float(r), 2) for r in RECALL_POINTS], "classes": classes}
