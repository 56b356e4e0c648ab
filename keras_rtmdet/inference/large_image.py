"""Patch detections back into whole DOTA images: shift, then class-aware rotated NMS (IoU 0.1).

MMRotate's `DOTAMetric.merge_results` shifts each patch's rbox centres by the
window's top-left corner (parsed from `{stem}__{size}__{x}___{y}`) and runs
`nms_rotated` at IoU 0.1 per class over each original image. Here NMS is
`ops.rotated_nms.rotated_nms_keep` (suppress at IoU > 0.1, mmcv's CUDA rule),
run independently on groups of boxes whose axis-aligned hulls chain into
each other: greedy NMS never links boxes across such groups, so the result
is the one of a single NMS over the image, without its N×N IoU matrix.
"""

import keras
import numpy as np

from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.data.dota_split import patch_windows
from keras_rtmdet.data.dota_split import parse_patch_name

MERGE_IOU_THRESHOLD = 0.1
# The mean colour (BGR 104, 116, 124) in RGB: the split tool's padding.
DOTA_PAD_RGB = (124, 116, 104)
# Bound on batch × candidates² of one NMS call.
_NMS_PAIRS = 1 << 22
_COMPILED = {}


def compiled(fn, static_argnames=()):
    """`fn` under `jax.jit` on JAX, else `fn` itself.

    Eager JAX compiles every op for every new shape, and a `while_loop` on
    every call (seconds per NMS); one jitted function per shape is fast.
    """
    if keras.config.backend() != "jax":
        return fn
    if fn not in _COMPILED:
        import jax

        _COMPILED[fn] = jax.jit(fn, static_argnames=static_argnames)
    return _COMPILED[fn]


def _empty():
    return {"boxes": np.zeros((0, 5), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int32)}


def _check(boxes, scores, labels, where):
    boxes = np.asarray(boxes, np.float32)
    boxes = boxes.reshape(0, 5) if boxes.size == 0 else boxes
    scores, labels = np.asarray(scores, np.float32).reshape(-1), np.asarray(labels).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 5 or len(scores) != len(boxes) or len(labels) != len(boxes):
        raise ValueError(
            f"{where}: expected boxes (K, 5), scores (K,), labels (K,), got {boxes.shape}, {scores.shape}, {labels.shape}."
        )
    return boxes, scores, labels.astype(np.int32)


def _interval_groups(lo, hi):
    order = np.argsort(lo, kind="stable")
    reach = np.maximum.accumulate(hi[order])
    starts = np.flatnonzero(lo[order][1:] > reach[:-1]) + 1
    return np.split(order, starts)


def overlap_groups(boxes, labels):
    """Index groups that no rotated IoU links across: same label and chained hull overlaps.

    Splits each label's boxes by x-interval chains, then y, then x, ... until
    no group splits. Returns a list of int index arrays.
    """
    corners = rboxes_to_polygons(boxes).reshape(-1, 4, 2)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    pending = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    done = []
    while pending:
        group = pending.pop()
        for axis in (0, 1):
            parts = _interval_groups(lo[group, axis], hi[group, axis]) if len(group) > 1 else [None]
            if len(parts) > 1:
                pending.extend(group[part] for part in parts)
                break
        else:
            done.append(group)
    return done


def padded_size(n):
    """Candidates padded to 8, 16, ..., 1024, then multiples of 1024 (few distinct shapes to compile)."""
    size = 8
    while size < n and size < 1024:
        size *= 2
    return size if n <= size else -(-n // 1024) * 1024


def _nms_keep(boxes, scores, labels, valid, iou_threshold):
    # Imported here so that `keras_rtmdet.evaluation` (COCO included) loads without the rotated ops.
    from keras_rtmdet.ops.rotated_nms import rotated_nms_keep

    return rotated_nms_keep(boxes, scores, labels, valid, iou_threshold)


def rotated_nms_numpy(boxes, scores, labels, iou_threshold=MERGE_IOU_THRESHOLD):
    """Class-aware greedy rotated NMS of one image's boxes, in numpy in and out.

    Args:
        boxes: (K, 5) rboxes. scores: (K,). labels: (K,) int.
        iou_threshold: a box is suppressed by a kept higher-scored box of its
            class with rotated IoU > this.
    Returns: (N,) int64 indices of the kept boxes, by descending score
    (stable for ties).
    """
    boxes, scores, labels = _check(boxes, scores, labels, "rotated_nms_numpy")
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros(len(boxes), bool)
    by_size = {}
    for group in overlap_groups(boxes, labels):
        if len(group) == 1:
            keep[group] = True
        else:
            by_size.setdefault(padded_size(len(group)), []).append(group[np.argsort(-scores[group], kind="stable")])
    for size, groups in by_size.items():
        per_call = max(1, _NMS_PAIRS // (size * size))
        for start in range(0, len(groups), per_call):
            chunk = groups[start : start + per_call]
            rows = 1 << (len(chunk) - 1).bit_length()  # batch padded to a power of two too
            index = np.zeros((min(rows, per_call), size), np.int64)
            valid = np.zeros(index.shape, bool)
            for row, group in enumerate(chunk):
                index[row, : len(group)], valid[row, : len(group)] = group, True
            nms = compiled(_nms_keep, ("iou_threshold",))
            kept = keras.ops.convert_to_numpy(
                nms(boxes[index], scores[index], labels[index], valid, iou_threshold=float(iou_threshold))
            )
            keep[index[kept & valid]] = True
    return order[keep[order]]


def _patch_key(key):
    """(stem, x, y, scale) of a patch key: a patch name or an explicit tuple."""
    if isinstance(key, str):
        stem, size_or_rate, x, y = parse_patch_name(key)
        if isinstance(size_or_rate, float):
            # DOTA_devkit: the image was rescaled by the rate before cutting.
            return stem, x / size_or_rate, y / size_or_rate, size_or_rate
        return stem, float(x), float(y), 1.0
    if len(key) != 4:
        raise ValueError(f"A patch key is a patch name or (image_stem, x, y, scale), got {key!r}.")
    stem, x, y, scale = key
    if not scale > 0:
        raise ValueError(f"Patch {key!r}: the scale must be positive.")
    return stem, float(x), float(y), float(scale)


def to_image_pixels(boxes, x, y, scale=1.0):
    """Rboxes (K, 5) of a patch → the original image: divide (cx, cy, w, h) by `scale`, add (x, y) to the centre."""
    boxes = np.array(boxes, np.float64).reshape(-1, 5)
    boxes[:, :4] /= scale
    boxes[:, 0] += x
    boxes[:, 1] += y
    return boxes.astype(np.float32)


def merge_patch_detections(per_patch, iou_threshold=MERGE_IOU_THRESHOLD):
    """Merge patch detections into whole-image detections.

    Args:
        per_patch: iterable of `(key, boxes (K, 5), scores (K,), labels
            (K,))`, rboxes in the patch's pixels. `key` is a patch name
            (`P0003__1024__0___824`: shift by (0, 824); a DOTA_devkit rate
            name `P0003__0.5__0___412` divides by 0.5 too) or `(image_stem,
            x, y, scale)`: boxes divided by `scale` (the patch's pixels per
            original pixel, e.g. 0.5 for a 2048 window resized to 1024)
            then shifted by (x, y), the window's corner in original pixels.
        iou_threshold: the NMS threshold (MMRotate's merge: 0.1).
    Returns: `{image_stem: {"boxes": (N, 5) float32, "scores": (N,)
    float32, "labels": (N,) int32}}`, by descending score.
    """
    collected = {}
    for item in per_patch:
        if len(item) != 4:
            raise ValueError("per_patch items are (key, boxes, scores, labels).")
        key, boxes, scores, labels = item
        boxes, scores, labels = _check(boxes, scores, labels, f"Patch {key!r}")
        stem, x, y, scale = _patch_key(key)
        collected.setdefault(stem, []).append((to_image_pixels(boxes, x, y, scale), scores, labels))
    merged = {}
    for stem, parts in collected.items():
        boxes, scores, labels = (np.concatenate(field) for field in zip(*parts))
        if not len(boxes):
            merged[stem] = _empty()
            continue
        keep = rotated_nms_numpy(boxes, scores, labels, iou_threshold)
        merged[stem] = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    return merged


def split_padded(outputs):
    """Padded `predict` outputs → a list of per-image `{"boxes", "scores", "labels"}` (the valid rows)."""
    boxes, scores, labels = (np.asarray(outputs[k]) for k in ("boxes", "scores", "labels"))
    counts = outputs.get("num_detections")
    results = []
    for i in range(len(boxes)):
        rows = labels[i] >= 0
        if counts is not None:
            rows &= np.arange(labels.shape[1]) < int(np.asarray(counts)[i])
        results.append(
            {
                "boxes": boxes[i][rows].astype(np.float32),
                "scores": scores[i][rows].astype(np.float32),
                "labels": labels[i][rows].astype(np.int32),
            }
        )
    return results


class _PreprocessedBatches(keras.utils.PyDataset):
    """`model.preprocessor` batches of lazily loaded images, for a single `model.predict` call."""

    def __init__(self, model, load, count, batch_size):
        super().__init__()
        self.model, self.load, self.count, self.batch_size = model, load, count, batch_size

    def __len__(self):
        return -(-self.count // self.batch_size)

    def __getitem__(self, index):
        start = index * self.batch_size
        images = [self.load(i) for i in range(start, min(start + self.batch_size, self.count))]
        order = getattr(self.model, "input_channel_order", "rgb")
        prep = self.model.preprocessor(images, input_channel_order="rgb", output_channel_order=order)
        return ({key: prep[key] for key in ("images", "scale_factors", "original_sizes") if key in prep},)


def predict_images(model, load, count, batch_size=8, verbose=0, **predict_settings):
    """Per-image rotated detections of `model` on `count` RGB images, `load(i)` giving image i.

    A model with a `preprocessor` (the package's detectors) gets a single
    `predict` call over a `keras.utils.PyDataset` of preprocessed batches
    (bounded memory, one trace: each `predict` call re-applies the
    post-processing settings and so drops the compiled function); any other
    object with `predict(images, batch_size=..., verbose=..., **settings)`
    gets one call per batch.

    Returns: list of `count` dicts `boxes` (K, 5) rboxes in each image's
    pixels, `scores` (K,), `labels` (K,) int32.
    """
    if count == 0:
        return []
    if hasattr(model, "preprocessor"):
        dataset = _PreprocessedBatches(model, load, count, batch_size)
        return split_padded(model.predict(dataset, verbose=verbose, **predict_settings))
    results = []
    for start in range(0, count, batch_size):
        images = [load(i) for i in range(start, min(start + batch_size, count))]
        results.extend(split_padded(model.predict(images, batch_size=batch_size, verbose=verbose, **predict_settings)))
    return results


def crop_window(image, window, pad_value=DOTA_PAD_RGB):
    """The pixels of `window` (x0, y0, x1, y1) in `image` (H, W, 3), padded to full size with `pad_value` (None: not)."""
    x0, y0, x1, y1 = (int(v) for v in window)
    patch = image[y0:y1, x0:x1]
    if pad_value is None or patch.shape[:2] == (y1 - y0, x1 - x0):
        return patch
    padded = np.empty((y1 - y0, x1 - x0, image.shape[2]), image.dtype)
    padded[...] = np.asarray(pad_value, image.dtype)
    padded[: patch.shape[0], : patch.shape[1]] = patch
    return padded


def predict_large_image(
    model,
    image_rgb,
    patch_size=1024,
    gap=200,
    rates=(1.0,),
    batch_size=4,
    img_rate_thr=0.6,
    pad_value=DOTA_PAD_RGB,
    merge_iou_threshold=MERGE_IOU_THRESHOLD,
    verbose=0,
    **predict_settings,
):
    """Detect rotated objects in one large image by sliding windows, as split + predict + merge.

    The windows are the split tool's (`patch_windows`, per rate
    `int(patch_size / rate)` native pixels with gaps `int(gap / rate)`);
    windows reaching past the border are padded to full size with the
    split's mean colour, so the model's keep-ratio resize sees what it sees
    on split patches (a small image is not upscaled). The model's boxes are
    in each window's pixels (its `predict` undoes its own resize); they are
    shifted and merged with class-aware rotated NMS at `merge_iou_threshold`.

    Args:
        model: a rotated detector; `predict` gives `boxes` (B, K, 5),
            `scores`, `labels` (B, K), `num_detections` (B,), padded with −1.
        image_rgb: (H, W, 3) uint8 RGB.
        patch_size, gap, rates, img_rate_thr: the split settings (SS:
            1024, 200, (1.0,); MS: 1024, 500, (0.5, 1.0, 1.5)).
        batch_size: windows per forward pass.
        pad_value: RGB padding colour, or None to crop only.
        merge_iou_threshold: the merge's NMS threshold.
        verbose: passed to `model.predict`.
        **predict_settings: post-processing overrides for `model.predict`
            (its own `iou_threshold`, `score_threshold`, ...).
    Returns: `{"boxes": (N, 5) float32 rboxes in image pixels, "scores":
    (N,), "labels": (N,) int32}` by descending score.
    """
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an (H, W, 3) RGB image, got shape {image.shape}.")
    height, width = image.shape[:2]
    sizes = [int(patch_size / rate) for rate in rates]
    gaps = [int(gap / rate) for rate in rates]
    windows = patch_windows(width, height, sizes, gaps, img_rate_thr)
    detections = predict_images(
        model,
        lambda i: crop_window(image, windows[i], pad_value),
        len(windows),
        batch_size,
        verbose,
        **predict_settings,
    )
    per_patch = [
        ((None, int(window[0]), int(window[1]), 1.0), d["boxes"], d["scores"], d["labels"])
        for window, d in zip(windows, detections)
    ]
    return merge_patch_detections(per_patch, merge_iou_threshold).get(None, _empty())
