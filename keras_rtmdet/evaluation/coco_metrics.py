"""COCO box / mask AP of a detector with pycocotools, as in the reference's `CocoMetric`.

Detections come from `model.predict` (numpy, padded): `boxes` (B, K, 4) xyxy in
original-image pixels, `scores` (B, K), `labels` (B, K) contiguous class
indices, −1 after `num_detections` (B,) entries, and optionally `masks`
(B, K, H, W) bool in original-image pixels. COCO results use `bbox` =
[x, y, w, h] floats and the dataset's own category ids.
"""

import contextlib
import io

import numpy as np

from keras_rtmdet.evaluation.confusion_matrix import DEFAULT_IOU_THRESHOLD
from keras_rtmdet.evaluation.confusion_matrix import DEFAULT_SCORE_THRESHOLD
from keras_rtmdet.evaluation.confusion_matrix import confusion_matrix
from keras_rtmdet.evaluation.per_class_metrics import RECALL_POINTS
from keras_rtmdet.evaluation.per_class_metrics import per_class_metrics
from keras_rtmdet.evaluation.per_class_metrics import precision_recall_curves
from keras_rtmdet.utils.mask_rle import encode_mask

IOU_TYPES = ("bbox", "segm")

# pycocotools' `stats` order (COCOeval.summarize); the AR names assume the
# standard maxDets (1, 10, 100).
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# Key prefix of each IoU type in `evaluate_coco`'s merged dict.
IOU_TYPE_PREFIX = {"bbox": "", "segm": "segm_"}


def detections_to_coco(image_ids, detections, category_ids, image_sizes=None):
    """Turn padded detections into a list of COCO result dicts.

    Args:
        image_ids: (B,) COCO image ids, one per row of `detections`.
        detections: dict of numpy arrays: `boxes` (B, K, 4) xyxy pixels,
            `scores` (B, K), `labels` (B, K) (−1 = padding), optional
            `num_detections` (B,) and `masks` (B, K, H, W) bool.
        category_ids: `category_ids[label]` is the COCO category id of
            contiguous label `label`.
        image_sizes: optional (B, 2) (height, width) of each image: its masks
            are cut to `[:height, :width]` before encoding. `predict` pads the
            masks of a batch to its largest image, and an RLE must have the
            size of its ground-truth image (pycocotools matches the run
            lengths column by column, so a padded RLE scores as garbage).

    Returns: list of `{"image_id", "category_id", "bbox": [x, y, w, h],
    "score"}` (+ `"segmentation"`: RLE when `masks` is given).
    """
    boxes = np.asarray(detections["boxes"], dtype=np.float64)
    scores = np.asarray(detections["scores"], dtype=np.float64)
    labels = np.asarray(detections["labels"])
    counts = detections.get("num_detections")
    masks = detections.get("masks")
    image_ids = list(image_ids)
    if len(image_ids) != boxes.shape[0]:
        raise ValueError(f"Got {len(image_ids)} image ids for {boxes.shape[0]} rows of detections.")
    if image_sizes is not None and len(image_sizes) != len(image_ids):
        raise ValueError(f"Got {len(image_sizes)} image sizes for {len(image_ids)} images.")
    results = []
    for i, image_id in enumerate(image_ids):
        count = labels.shape[1] if counts is None else int(np.asarray(counts)[i])
        for k in range(count):
            label = int(labels[i, k])
            if label < 0:
                continue
            x0, y0, x1, y1 = boxes[i, k]
            result = {
                "image_id": int(image_id),
                "category_id": int(category_ids[label]),
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "score": float(scores[i, k]),
            }
            if masks is not None:
                mask = masks[i][k]
                if image_sizes is not None:
                    height, width = (int(v) for v in image_sizes[i])
                    mask = mask[:height, :width]
                result["segmentation"] = encode_mask(mask)
            results.append(result)
    return results


def _category_names(coco_gt, class_names):
    cat_ids = coco_gt.getCatIds()
    if class_names is None:
        return {c: coco_gt.cats[c].get("name", str(c)) for c in cat_ids}
    if isinstance(class_names, dict):
        return {c: class_names.get(c, coco_gt.cats[c].get("name", str(c))) for c in cat_ids}
    if len(class_names) != len(cat_ids):
        raise ValueError(f"Got {len(class_names)} class names for {len(cat_ids)} categories.")
    return dict(zip(cat_ids, class_names))


def _empty_stats(coco_gt, image_ids, names):
    # No detection at all: every class with ground truth has AP 0, the others none.
    stats = {key: 0.0 for key in STAT_KEYS}
    per_class = {}
    for cat_id, name in names.items():
        truths = len(coco_gt.getAnnIds(imgIds=image_ids or [], catIds=[cat_id], iscrowd=False))
        ap = 0.0 if truths else float("nan")
        per_class[name] = {"AP": ap, "AP50": ap, "AP75": ap, "ground_truths": truths, "detections": 0}
    stats["per_class_AP"] = {name: row["AP"] for name, row in per_class.items()}
    stats["per_class"] = per_class
    stats["pr_curves"] = {"recall": [round(float(r), 2) for r in RECALL_POINTS], "classes": {}}
    return stats


def coco_evaluate(coco_gt, results, iou_type="bbox", max_dets=(1, 10, 100), image_ids=None, class_names=None):
    """COCO AP/AR of `results` against `coco_gt` (pycocotools `COCOeval`, its output silenced).

    Args:
        coco_gt: `pycocotools.coco.COCO` ground truth (crowd annotations are
            ignore regions: a detection matched to one is neither TP nor FP).
        results: list of COCO result dicts (`detections_to_coco`); may be empty.
        iou_type: `"bbox"` or `"segm"` (results need `"segmentation"` RLEs;
            their `bbox` is dropped so that, as in mmdet, the small/medium/
            large split uses the mask area).
        max_dets: pycocotools `maxDets`, three detection caps per image.
            `COCOeval.evaluate` sorts them, so their order does not matter:
            the reference mmdet config's `proposal_nums=(100, 1, 10)` is the
            standard (1, 10, 100) (it does *not* compute AP50/AP75/size APs at
            maxDets[2] = 10, as the unsorted tuple suggests). With the sorted
            caps (m0, m1, m2), the 12 stats are pycocotools': `AP` at 100
            detections (found by value; −1 if 100 is not a cap), `AP50`,
            `AP75`, `APs`, `APm`, `APl`, `AR100`, `ARs`, `ARm`, `ARl` at m2,
            `AR1` at m0, `AR10` at m1 (the names assume the standard caps).
        image_ids: the images to evaluate (default: all of `coco_gt`'s).
        class_names: names for `per_class_AP`: a dict {category id: name} or
            a list in the order of `coco_gt.getCatIds()` (default: the
            categories' names in `coco_gt`).

    Returns: dict of the 12 stats (floats; −1 where pycocotools has nothing
    to measure, e.g. `APl` without large objects; all 0 when `results` is
    empty), `per_class_AP` {name: AP@[.5:.95] at 100 detections (the
    largest cap if 100 is not one; mmdet's table uses the largest too)}, NaN
    for classes without ground truth, `per_class` {name: {"AP", "AP50",
    "AP75", "ground_truths", "detections"}} and `pr_curves`
    (`per_class_metrics.precision_recall_curves`).
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}.")
    if len(max_dets) != 3:
        raise ValueError(f"max_dets must hold 3 values (pycocotools' summary), got {max_dets!r}.")
    names = _category_names(coco_gt, class_names)
    image_ids = None if image_ids is None else [int(i) for i in image_ids]
    if not results:
        # COCO.loadRes cannot build a result set from an empty list.
        return _empty_stats(coco_gt, image_ids, names)
    if iou_type == "segm":
        if any("segmentation" not in r for r in results):
            raise ValueError("segm evaluation needs a 'segmentation' in every result.")
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    else:
        # loadRes writes `area`, `id`, ... into the dicts it gets.
        results = [dict(r) for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.params.maxDets = [int(m) for m in max_dets]
        if image_ids is not None:
            evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {key: float(value) for key, value in zip(STAT_KEYS, evaluator.stats)}
    stats["per_class"] = per_class_metrics(evaluator, names)
    stats["per_class_AP"] = {name: row["AP"] for name, row in stats["per_class"].items()}
    stats["pr_curves"] = precision_recall_curves(evaluator, names)
    return stats


def _format(value):
    # pycocotools' −1 means "nothing to measure" (e.g. no large objects).
    return "—" if value is None or np.isnan(value) or value == -1 else f"{value:.3f}"


def print_coco_table(stats, console=None, title="COCO bbox"):
    """Print the 12 stats (AP beside AR) and the per-class AP table of a `coco_evaluate` dict with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    summary = Table(title=title)
    for header, justify in (("metric", "left"), ("value", "right")) * 2:
        summary.add_column(header, justify=justify)
    half = len(STAT_KEYS) // 2
    for ap_key, ar_key in zip(STAT_KEYS[:half], STAT_KEYS[half:]):
        summary.add_row(ap_key, _format(stats[ap_key]), ar_key, _format(stats[ar_key]))
    console.print(summary)
    per_class = stats.get("per_class") or {}
    if per_class:
        table = Table(title="per class")
        table.add_column("class")
        for header in ("AP@[.5:.95]", "AP50", "AP75", "ground truths", "detections"):
            table.add_column(header, justify="right")
        for name, row in per_class.items():
            aps = (_format(row[key]) for key in ("AP", "AP50", "AP75"))
            table.add_row(str(name), *aps, str(row["ground_truths"]), str(row["detections"]))
        console.print(table)


def confusion_matrix_record(source, results):
    """The box confusion matrix of `results` on a `DetectionSource`, as JSON: classes, thresholds, counts."""
    names = list(source.class_names) if source.class_names else [str(c) for c in source.category_ids]
    matrix = confusion_matrix(source.coco, results, list(source.category_ids), source.image_ids)
    return {
        "classes": names + ["background"],
        "score_threshold": DEFAULT_SCORE_THRESHOLD,
        "iou_threshold": DEFAULT_IOU_THRESHOLD,
        "matrix": matrix.tolist(),
    }


def has_segmentations(coco_gt):
    """Whether a ground truth can be scored with `iou_type="segm"`: its annotations have
    `segmentation`s (True for one without annotations, where every AP is trivially 0)."""
    annotations = coco_gt.dataset.get("annotations", [])
    return not annotations or any("segmentation" in a for a in annotations)


def _check_iou_types(iou_types):
    iou_types = (iou_types,) if isinstance(iou_types, str) else tuple(iou_types)
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if unknown or not iou_types:
        raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {iou_types!r}.")
    return iou_types


def predict_source(model, source, batch_size=8, with_masks=False, verbose=1, **postprocess_settings):
    """Run `model` over every image of `source`, returning COCO result dicts.

    Images are read with `source.load_image` at their own size; the model's
    preprocessor resizes and pads them on the host (a batch of many sizes),
    and `predict_preprocessed_batch` runs `predict`'s compiled step with the
    settings of the `postprocess_settings` block (thresholds are inputs of
    that step: evaluating at other thresholds compiles nothing new).
    """
    from rich.progress import Progress

    image_ids = list(source.image_ids)
    results = []
    progress = Progress(disable=not verbose, transient=False)
    with progress, model.postprocess_settings(**postprocess_settings):
        task = progress.add_task("COCO evaluation", total=len(image_ids))
        for start in range(0, len(image_ids), batch_size):
            chunk = image_ids[start : start + batch_size]
            images = [source.load_image(i) for i in chunk]
            prep = model.preprocessor(
                images,
                input_channel_order="rgb",
                output_channel_order=model.input_channel_order,
            )
            out = model.predict_preprocessed_batch({"images": prep["images"], "scale_factors": prep["scale_factors"]})
            out = model.finalize_predictions(out, prep["scale_factors"], prep["original_sizes"])
            if with_masks and "masks" not in out:
                raise ValueError(f"iou_types asks for 'segm' but {type(model).__name__} outputs no masks.")
            if not with_masks:
                out.pop("masks", None)
            sizes = [image.shape[:2] for image in images]
            results.extend(detections_to_coco(chunk, out, source.category_ids, sizes))
            progress.advance(task, len(chunk))
    return results


def evaluate_coco(
    model, source, batch_size=8, iou_types=("bbox",), verbose=1, print_table=True, **postprocess_settings
):
    """COCO evaluation of `model` on every image of a `DetectionSource`.

    Args:
        model: a detector (`DenseDetector`), predictions in original pixels.
        source: a `DetectionSource` (its `coco` holds the ground truth).
        batch_size: images per forward pass.
        iou_types: `"bbox"` and/or `"segm"` (needs a model that outputs
            `masks` (B, K, H, W) bool).
        verbose: show a rich progress bar.
        print_table: print the stats and per-class AP with rich.
        **postprocess_settings: overrides for this run (`score_threshold`,
            `iou_threshold`, `max_detections`, ...); the defaults are the
            reference's test_cfg (0.001, 0.65, 300).

    Returns: the `coco_evaluate` dicts of every IoU type, merged: bbox keys
    as they are (`AP`, ..., `per_class_AP`, `per_class`, `pr_curves`), segm
    keys prefixed `segm_` (`segm_AP`, ...), and `confusion_matrix` of the
    boxes (`confusion_matrix_record`).
    """
    iou_types = _check_iou_types(iou_types)
    results = predict_source(model, source, batch_size, "segm" in iou_types, verbose, **postprocess_settings)
    class_names = dict(zip(source.category_ids, source.class_names)) if source.class_names else None
    merged = {"confusion_matrix": confusion_matrix_record(source, results)}
    for iou_type in iou_types:
        stats = coco_evaluate(
            source.coco, results, iou_type=iou_type, image_ids=source.image_ids, class_names=class_names
        )
        if print_table:
            print_coco_table(stats, title=f"COCO {iou_type}")
        prefix = IOU_TYPE_PREFIX[iou_type]
        merged.update({prefix + key: value for key, value in stats.items()})
    return merged
