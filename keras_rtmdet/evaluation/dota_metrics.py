"""DOTA (rotated-box) VOC-style AP, as MMRotate's `DOTAMetric` / `eval_rbbox_map`, and the submission files.

Per class and IoU threshold: each image's detections, by descending score,
take their max-IoU ground truth of the class (rotated IoU, ignored GTs
included); IoU ≥ threshold on a GT not yet matched is a TP, on a matched one
an FP, on an ignored GT neither; IoU below the threshold is an FP. All
images' detections are then sorted by score (stable) into recall =
TP / #non-ignored GTs and precision = TP / (TP + FP), and AP is the area
under the interpolated curve (`"area"`, VOC2012) or the 11-point mean
(`"11points"`, VOC07; MMRotate's default). mAP averages the classes with
ground truth.

`evaluate_dota` also gives what the COCO evaluation gives: a per-class
table, precision-recall curves (the same TP / FP flags, read at 101 recall
points as pycocotools does) and the confusion matrix of `confusion_matrix.py`
with rotated IoU.
"""

import os
import zipfile

import keras
import numpy as np

from keras_rtmdet.data.dota import DOTA_CLASSES
from keras_rtmdet.evaluation.confusion_matrix import DEFAULT_IOU_THRESHOLD
from keras_rtmdet.evaluation.confusion_matrix import DEFAULT_SCORE_THRESHOLD
from keras_rtmdet.evaluation.confusion_matrix import count_confusions
from keras_rtmdet.evaluation.per_class_metrics import RECALL_POINTS
from keras_rtmdet.evaluation.per_class_metrics import precision_at_recall_points
from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.inference.large_image import compiled
from keras_rtmdet.inference.large_image import padded_size
from keras_rtmdet.inference.large_image import predict_images

EVAL_MODES = ("area", "11points")
DOTA_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
# Bound on the pairs of one rotated-IoU call (about 16 floats each per intermediate).
_IOU_PAIRS = 1 << 18
_DUMMY_BOX = np.array([0.0, 0.0, 1.0, 1.0, 0.0], np.float32)


def _pad_rows(boxes, rows):
    return np.concatenate([boxes, np.tile(_DUMMY_BOX, (rows - len(boxes), 1))]) if rows > len(boxes) else boxes


def pairwise_rotated_iou(boxes1, boxes2):
    """(N, M) float64 rotated IoU of rboxes (N, 5) × (M, 5), in chunks padded to few distinct shapes."""
    boxes1 = np.asarray(boxes1, np.float32).reshape(-1, 5)
    boxes2 = np.asarray(boxes2, np.float32).reshape(-1, 5)
    n, m = len(boxes1), len(boxes2)
    if not n or not m:
        return np.zeros((n, m))
    columns = padded_size(m)
    padded2 = _pad_rows(boxes2, columns)
    step = max(8, 1 << max(0, (_IOU_PAIRS // columns).bit_length() - 1))
    from keras_rtmdet.ops.rotated_boxes import rotated_iou  # here: `keras_rtmdet.evaluation` loads without it

    out = []
    iou_fn = compiled(rotated_iou)
    for start in range(0, n, step):
        chunk = boxes1[start : start + step]
        iou = keras.ops.convert_to_numpy(iou_fn(_pad_rows(chunk, min(padded_size(len(chunk)), step)), padded2))
        out.append(iou[: len(chunk), :m])
    return np.concatenate(out).astype(np.float64)


def average_precision(recalls, precisions, eval_mode="area"):
    """mmdet's `average_precision` for one curve: (K,) recalls and precisions in score order → AP."""
    recalls, precisions = np.asarray(recalls, np.float64), np.asarray(precisions, np.float64)
    if eval_mode == "area":
        mrec = np.concatenate([[0.0], recalls, [1.0]])
        mpre = np.maximum.accumulate(np.concatenate([[0.0], precisions, [0.0]])[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    if eval_mode == "11points":
        total = 0.0
        for threshold in np.arange(0, 1 + 1e-3, 0.1):
            reached = precisions[recalls >= threshold]
            total += reached.max() if reached.size else 0.0
        return float(total / 11)
    raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}.")


def _match(ious, scores, ignore, thresholds):
    """TP and FP flags (T, K) of one image's detections of one class, in the detections' own order."""
    k, g = ious.shape
    if g == 0:
        return np.zeros((len(thresholds), k), bool), np.ones((len(thresholds), k), bool)
    best, best_iou = ious.argmax(axis=1), ious.max(axis=1)
    rank = np.empty(k, np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(k)
    hit = best_iou[None] >= thresholds[:, None]
    counted = hit & ~ignore[best][None]
    # Per threshold and GT, the best-ranked counted detection is its TP; later ones are FPs.
    first = np.full(len(thresholds) * g, k)
    t_index = np.broadcast_to(np.arange(len(thresholds))[:, None], counted.shape)
    np.minimum.at(first, (t_index * g + best[None])[counted], np.broadcast_to(rank, counted.shape)[counted])
    tp = counted & (rank[None] == first.reshape(len(thresholds), g)[:, best])
    return tp, ~hit | (counted & ~tp)


def _cumulative_counts(tps, fps, scores):
    """Cumulative TP and FP counts (T, K) of one class's per-image flags, all images by descending score (stable)."""
    tp, fp = np.concatenate(tps, axis=1), np.concatenate(fps, axis=1)
    order = np.argsort(-np.concatenate(scores), kind="stable")
    return np.cumsum(tp[:, order], axis=1), np.cumsum(fp[:, order], axis=1)


def _curve_ap(tp, fp, num_gts, eval_mode):
    """AP per threshold (T,) and final recall (T,) from one class's cumulative counts."""
    eps = np.finfo(np.float32).eps
    recalls = tp / max(num_gts, eps)
    precisions = tp / np.maximum(tp + fp, eps)
    aps = np.array([average_precision(r, p, eval_mode) for r, p in zip(recalls, precisions)])
    final = recalls[:, -1] if recalls.shape[1] else np.zeros(len(aps))
    return aps, final


def _thresholds(iou_thresholds):
    values = np.atleast_1d(np.asarray(DOTA_IOU_THRESHOLDS if iou_thresholds is None else iou_thresholds, np.float64))
    if not values.size or values.ndim != 1 or (values < 0).any() or (values > 1).any():
        raise ValueError(f"iou_thresholds must be values in [0, 1], got {iou_thresholds!r}.")
    return values


def dota_average_precision(
    det_boxes_per_image, det_scores, gt_boxes_per_image, gt_ignore=None, iou_threshold=0.5, eval_mode="area"
):
    """AP of one class (MMRotate's `eval_rbbox_map` rule).

    Args:
        det_boxes_per_image: per image (K_i, 5) rboxes of this class.
        det_scores: per image (K_i,) scores.
        gt_boxes_per_image: per image (G_i, 5) rboxes of this class.
        gt_ignore: per image (G_i,) bool (True: ignored), or None.
        iou_threshold: a match needs rotated IoU ≥ this.
        eval_mode: `"area"` or `"11points"`.
    Returns: the AP, a float (0 when the class has no non-ignored GT).
    """
    if eval_mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}.")
    if not len(det_boxes_per_image) == len(det_scores) == len(gt_boxes_per_image):
        raise ValueError("det_boxes_per_image, det_scores and gt_boxes_per_image must hold one entry per image.")
    thresholds = _thresholds(iou_threshold)
    if not det_boxes_per_image:
        return 0.0
    tps, fps, scores, num_gts = [], [], [], 0
    for i, (boxes, score, gts) in enumerate(zip(det_boxes_per_image, det_scores, gt_boxes_per_image)):
        score = np.asarray(score, np.float64).reshape(-1)
        ignore = np.zeros(len(gts), bool) if gt_ignore is None else np.asarray(gt_ignore[i], bool).reshape(-1)
        if len(ignore) != len(gts):
            raise ValueError(f"Image {i}: {len(ignore)} ignore flags for {len(gts)} ground-truth boxes.")
        ious = pairwise_rotated_iou(boxes, gts)
        if len(score) != len(ious):
            raise ValueError(f"Image {i}: {len(score)} scores for {len(ious)} detections.")
        tp, fp = _match(ious, score, ignore, thresholds)
        tps.append(tp)
        fps.append(fp)
        scores.append(score)
        num_gts += int((~ignore).sum())
    return float(_curve_ap(*_cumulative_counts(tps, fps, scores), num_gts, eval_mode)[0][0])


def _image_arrays(entry, index, kind, with_scores):
    try:
        boxes = np.asarray(entry["boxes"], np.float32)
        labels = np.asarray(entry["labels"]).reshape(-1).astype(np.int64)
        scores = np.asarray(entry["scores"], np.float64).reshape(-1) if with_scores else None
    except KeyError as error:
        raise ValueError(f"{kind} {index} has no {error.args[0]!r}.") from error
    boxes = boxes.reshape(0, 5) if boxes.size == 0 else boxes
    if (
        boxes.ndim != 2
        or boxes.shape[1] != 5
        or len(labels) != len(boxes)
        or (with_scores and len(scores) != len(boxes))
    ):
        raise ValueError(f"{kind} {index}: expected boxes (K, 5) rboxes with K labels and scores, got {boxes.shape}.")
    return boxes, labels, scores


def _key(threshold):
    return f"mAP{int(round(threshold * 100)):02d}"


def evaluate_dota(
    detections,
    annotations,
    num_classes,
    class_names=None,
    iou_thresholds=None,
    eval_mode="area",
    difficulty_threshold=100,
):
    """DOTA mAP of per-image detections, with the per-class table, PR curves and confusion matrix.

    Args:
        detections: per image `{"boxes": (K, 5) rboxes, "scores": (K,),
            "labels": (K,)}`.
        annotations: per image `{"boxes": (G, 5), "labels": (G,)}`, optional
            `"difficult"` (G,): GTs with difficulty > `difficulty_threshold`
            are ignored (MMRotate's `diff_thr`, 100 by default: none).
        num_classes: classes 0..num_classes−1; other labels are an error.
        class_names: names for the per-class entries (default "0", "1", ...).
        iou_thresholds: default 0.50:0.05:0.95.
        eval_mode: `"area"` (default here) or `"11points"` (MMRotate's default).
    Returns: dict with `mAP{NN}` per threshold (e.g. `mAP50`, `mAP55`),
    `mAP` (their mean, MMRotate's `mAP`), `mAP50`, `mAP75` and `mmAP` (mean
    over 0.50:0.05:0.95; NaN where a needed threshold was not evaluated);
    `per_class_AP` {name: AP at 0.5}; `per_class` {name: {"AP" (mean over
    0.50:0.05:0.95), "AP50", "AP75", "ground_truths" (non-ignored),
    "detections", "recall" (at 0.5)}}, COCO's layout plus the recall; class
    APs are NaN for classes without non-ignored GT, which no mean includes
    (mAPs are 0 when no class has GT, as MMRotate). `pr_curves` (when 0.5 is
    evaluated): `{"recall": 101 points, "classes": {name: {"IoU=0.50":
    precisions, "IoU=0.50:0.95": their mean over the standard thresholds,
    when all are evaluated}}}` per class with non-ignored GT; these are
    pycocotools' 101-point interpolation of the DOTA matching's TP / FP
    flags, so a curve's mean approximates, but is not, the VOC AP of the
    table. `confusion_matrix`: COCO's record (classes + "background",
    thresholds, counts) of `confusion_matrix.count_confusions` with rotated
    IoU, the ignored GTs as ignore regions (neither ground truths nor
    background for a detection on them).
    """
    if eval_mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}.")
    if len(detections) != len(annotations):
        raise ValueError(f"Got detections for {len(detections)} images and annotations for {len(annotations)}.")
    names = [str(c) for c in range(num_classes)] if class_names is None else [str(c) for c in class_names]
    if len(names) != num_classes:
        raise ValueError(f"Got {len(names)} class names for {num_classes} classes.")
    thresholds = _thresholds(iou_thresholds)
    tps, fps, scores = ([[] for _ in range(num_classes)] for _ in range(3))
    num_gts = np.zeros(num_classes, np.int64)
    images = []
    for i, (det, ann) in enumerate(zip(detections, annotations)):
        det_boxes, det_labels, det_scores = _image_arrays(det, i, "Detections of image", True)
        gt_boxes, gt_labels, _ = _image_arrays(ann, i, "Annotations of image", False)
        difficult = np.asarray(ann.get("difficult", np.zeros(len(gt_boxes))), np.int64).reshape(-1)
        if len(difficult) != len(gt_boxes):
            raise ValueError(f"Annotations of image {i}: {len(difficult)} difficulties for {len(gt_boxes)} boxes.")
        for labels, kind in ((det_labels, "Detections"), (gt_labels, "Annotations")):
            if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"{kind} of image {i} have labels outside [0, {num_classes}).")
        ious = pairwise_rotated_iou(det_boxes, gt_boxes)
        ignore = difficult > difficulty_threshold
        images.append(
            {"det_boxes": det_boxes, "det_labels": det_labels, "det_scores": det_scores,
             "gt_boxes": gt_boxes, "gt_labels": gt_labels, "gt_ignore": ignore}
        )
        for c in np.union1d(det_labels, gt_labels):
            rows, cols = det_labels == c, gt_labels == c
            num_gts[c] += int((cols & ~ignore).sum())
            if rows.any():
                tp, fp = _match(ious[np.ix_(rows, cols)], det_scores[rows], ignore[cols], thresholds)
                tps[c].append(tp)
                fps[c].append(fp)
                scores[c].append(det_scores[rows])
    aps = np.full((num_classes, len(thresholds)), np.nan)
    recalls = np.full(num_classes, np.nan)
    curves = {}
    num_dets = [int(sum(len(s) for s in scores[c])) for c in range(num_classes)]
    for c in range(num_classes):
        if num_gts[c] == 0:
            continue
        if num_dets[c] == 0:
            tp = fp = np.zeros((len(thresholds), 0))
        else:
            tp, fp = _cumulative_counts(tps[c], fps[c], scores[c])
        aps[c], final = _curve_ap(tp, fp, int(num_gts[c]), eval_mode)
        recalls[c] = _at(final, thresholds, 0.5)
        curves[names[c]] = _precision_curves(tp, fp, int(num_gts[c]), thresholds)
    has_gt = num_gts > 0
    means = aps[has_gt].mean(axis=0) if has_gt.any() else np.zeros(len(thresholds))
    results = {_key(t): float(v) for t, v in zip(thresholds, means)}
    results["mAP"] = float(means.mean())
    results["mAP50"] = float(_at(means, thresholds, 0.5))
    results["mAP75"] = float(_at(means, thresholds, 0.75))
    results["mmAP"] = float(_mean_standard(means, thresholds))
    results["per_class_AP"] = {name: float(_at(aps[c], thresholds, 0.5)) for c, name in enumerate(names)}
    results["per_class"] = {
        name: {
            "AP": float(_mean_standard(aps[c], thresholds)),
            "AP50": float(_at(aps[c], thresholds, 0.5)),
            "AP75": float(_at(aps[c], thresholds, 0.75)),
            "ground_truths": int(num_gts[c]),
            "detections": num_dets[c],
            "recall": float(recalls[c]),
        }
        for c, name in enumerate(names)
    }
    if _index(thresholds, 0.5) is not None:
        results["pr_curves"] = {"recall": [round(float(r), 2) for r in RECALL_POINTS], "classes": curves}
    results["confusion_matrix"] = {
        "classes": names + ["background"],
        "score_threshold": DEFAULT_SCORE_THRESHOLD,
        "iou_threshold": DEFAULT_IOU_THRESHOLD,
        "matrix": count_confusions(images, num_classes, pairwise_rotated_iou).tolist(),
    }
    return results


def _index(thresholds, threshold):
    found = np.flatnonzero(np.abs(thresholds - threshold) < 1e-6)
    return int(found[0]) if found.size else None


def _at(values, thresholds, threshold):
    index = _index(thresholds, threshold)
    return np.nan if index is None else values[index]


def _mean_standard(values, thresholds):
    picked = np.array([_at(values, thresholds, t) for t in DOTA_IOU_THRESHOLDS])
    return np.nan if np.isnan(picked).any() else picked.mean()


def _precision_curves(tp, fp, num_gts, thresholds):
    """One class's `pr_curves` entry from its cumulative counts (T, K): 101 precisions per curve, 4 decimals."""
    precisions = np.array([precision_at_recall_points(t, f, num_gts) for t, f in zip(tp, fp)])
    entry = {}
    at50 = _index(thresholds, 0.5)
    if at50 is not None:
        entry["IoU=0.50"] = [round(float(v), 4) for v in precisions[at50]]
    standard = [_index(thresholds, t) for t in DOTA_IOU_THRESHOLDS]
    if None not in standard:
        entry["IoU=0.50:0.95"] = [round(float(v), 4) for v in precisions[standard].mean(axis=0)]
    return entry


def evaluate_dota_model(
    model,
    source,
    batch_size=8,
    iou_thresholds=None,
    eval_mode="area",
    difficulty_threshold=100,
    verbose=1,
    print_table=True,
    **predict_settings,
):
    """DOTA mAP of a rotated detector on every image of a `DotaSource` (patches scored as they are, no merge).

    Args:
        model: `predict` gives `boxes` (B, K, 5) rboxes in original pixels,
            `scores`, `labels` (B, K), `num_detections` (B,), padded with −1.
        source: has `image_ids`, `load_image(id)` (RGB), `annotations(id)`
            (`boxes`, `labels`, optional `difficult`) and `class_names`.
        batch_size: images per forward pass.
        iou_thresholds, eval_mode, difficulty_threshold: see `evaluate_dota`.
        verbose: Keras' progress bar. print_table: print the rich table.
        **predict_settings: post-processing overrides for `model.predict`.
    Returns: `evaluate_dota`'s dict.
    """
    ids = list(source.image_ids)
    detections = predict_images(
        model, lambda i: source.load_image(ids[i]), len(ids), batch_size, verbose, **predict_settings
    )
    annotations = [source.annotations(i) for i in ids]
    names = list(source.class_names)
    results = evaluate_dota(detections, annotations, len(names), names, iou_thresholds, eval_mode, difficulty_threshold)
    if print_table:
        print_dota_table(results)
    return results


def _format(value):
    return "—" if value is None or np.isnan(value) else f"{value:.3f}"


def print_dota_table(results, class_names=None, console=None, title="DOTA"):
    """Print an `evaluate_dota` dict's per-class rows (COCO's columns and the recall at 0.5), then its mAPs."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    per_class = results.get("per_class", {})
    table = Table(title=title)
    for header in ("class", "AP@[.5:.95]", "AP50", "AP75", "ground truths", "detections", "recall@.5"):
        table.add_column(header, justify="left" if header == "class" else "right")
    for name in class_names if class_names is not None else list(per_class):
        row = per_class[str(name)]
        aps = (_format(row[key]) for key in ("AP", "AP50", "AP75"))
        table.add_row(str(name), *aps, str(row["ground_truths"]), str(row["detections"]), _format(row["recall"]))
    table.add_section()
    means = (_format(results[key]) for key in ("mmAP", "mAP50", "mAP75"))
    table.add_row("mAP (mmAP, mAP50, mAP75)", *means, "", "", "")
    console.print(table)


def write_dota_submission(out_dir, merged, class_names=DOTA_CLASSES, zip_name=None):
    """Write the DOTA server's Task1 files and zip them (MMRotate's `merge_patches=True` output).

    Args:
        out_dir: folder, created if needed.
        merged: `{image_stem: {"boxes": (N, 5) rboxes, "scores": (N,),
            "labels": (N,)}}` in whole-image pixels (`merge_patch_detections`).
        class_names: names in label order; one `Task1_{name}.txt` each (empty
            ones included), lines `image score x1 y1 ... x4 y4` (score rounded
            to 2 decimals as MMRotate writes it, corners of `rboxes_to_polygons`
            with 2 decimals).
        zip_name: default `{basename(out_dir)}.zip`, written in `out_dir`.
    Returns: the zip file's path.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    lines = [[] for _ in class_names]
    for stem in sorted(merged):
        det = merged[stem]
        boxes, labels, scores = _image_arrays(det, stem, "Detections of image", True)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(f"Detections of image {stem} have labels outside [0, {len(class_names)}).")
        for polygon, label, score in zip(rboxes_to_polygons(boxes), labels, scores):
            coordinates = " ".join(f"{v:.2f}" for v in polygon)
            lines[label].append(f"{stem} {round(float(score), 2)} {coordinates}\n")
    files = []
    for name, rows in zip(class_names, lines):
        path = os.path.join(out_dir, f"Task1_{name}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(rows)
        files.append(path)
    zip_path = os.path.join(out_dir, zip_name or os.path.basename(os.path.normpath(out_dir)) + ".zip")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, os.path.basename(path))
    return zip_path
