"""Drawing detections (boxes or rotated boxes with class name and score, and instance masks) on RGB images."""

import colorsys

import cv2
import numpy as np

from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons

# Successive multiples of the golden ratio spread hues evenly for any number
# of classes, so neighbouring class indices get clearly different colours.
_GOLDEN_RATIO = 0.618033988749895


def class_color(label):
    """The RGB colour (3 ints in [0, 255]) of class index `label`; the same on every run."""
    hue = (int(label) * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def label_text(label, score=None, class_names=None):
    """`"<class name> 0.87"`, `"class 17 0.87"` without a name for the label, or the name alone without a score."""
    label = int(label)
    if class_names is not None and 0 <= label < len(class_names):
        name = class_names[label]
    else:
        name = f"class {label}"
    return name if score is None else f"{name} {float(score):.2f}"


def draw_detections(
    image, boxes, scores, labels, class_names=None, thickness=None, font_scale=None, masks=None, mask_alpha=0.45
):
    """Draw boxes and "name score" labels (and masks) on a copy of an image.

    Args:
        image: (H, W, 3) uint8 RGB image; not modified.
        boxes: (K, 4) x1, y1, x2, y2 in the image's pixels, or (K, 5) rotated
            boxes (cx, cy, w, h, angle) in pixels and radians (clockwise on
            screen), drawn as their polygons.
        scores: (K,) scores, or None for ground truth (labels then show the class name only).
        labels: (K,) class indices; entries below 0 (padding) are skipped.
        class_names: optional sequence mapping class index to name.
        thickness, font_scale: line width and text size; by default they
            grow with the image so labels stay legible.
        masks: optional (K, H, W) bool (or 0/1) instance masks, one per box,
            drawn as a semi-transparent fill of the class colour with a
            contour of it, under the boxes and labels.
        mask_alpha: opacity of the mask fill, in [0, 1].

    Returns: the annotated (H, W, 3) uint8 RGB image.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}.")
    boxes = np.asarray(boxes, np.float64)
    boxes = boxes.reshape(-1, 5 if boxes.ndim == 2 and boxes.shape[1] == 5 else 4)
    with_scores = scores is not None
    scores = np.asarray(scores if with_scores else np.zeros(len(boxes)), np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"Got {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels.")
    height, width = image.shape[:2]
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (len(boxes), height, width):
            raise ValueError(
                f"Expected masks of shape {(len(boxes), height, width)} (one per box, the image's size), "
                f"got {masks.shape}."
            )
        if not 0.0 <= mask_alpha <= 1.0:
            raise ValueError(f"mask_alpha must be in [0, 1], got {mask_alpha}.")
    size = max(height, width) / 640.0
    thickness = thickness or max(1, int(round(2 * size)))
    font_scale = font_scale or max(0.35, 0.5 * size)
    canvas = np.ascontiguousarray(image.copy())
    # Lowest score first, so the most confident boxes (and masks) end up on top.
    order = [i for i in np.argsort(scores, kind="stable") if labels[i] >= 0]
    if masks is not None:
        for i in order:
            draw_mask(canvas, masks[i], class_color(labels[i]), mask_alpha, max(1, thickness // 2))
    extents = {}
    for i in order:
        if not np.all(np.isfinite(boxes[i])):
            continue
        draw = _draw_rotated if boxes.shape[1] == 5 else _draw_one
        extents[i] = draw(canvas, boxes[i], class_color(labels[i]), thickness)
    # Labels last, the most confident placed first, each where it hides no label placed before it.
    placed = []
    for i in reversed(order):
        if i in extents:
            text = label_text(labels[i], scores[i] if with_scores else None, class_names)
            placed.append(_draw_label(canvas, extents[i], text, class_color(labels[i]), font_scale, placed))
    return canvas


def draw_mask(canvas, mask, color, alpha=0.45, thickness=1):
    """Blend `color` into `canvas` (H, W, 3) uint8, in place, where `mask` (H, W) is set, and outline it.

    The contours include those of holes, so a ring reads as a ring.
    """
    mask = np.asarray(mask).astype(bool)
    if not mask.any():
        return canvas
    region = canvas[mask].astype(np.float32)
    canvas[mask] = np.round((1.0 - alpha) * region + alpha * np.asarray(color, np.float32)).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, color, thickness, cv2.LINE_AA)
    return canvas


def _draw_one(canvas, box, color, thickness):
    """The box's rectangle; returns its extent (x1, y1, x2, y2) in int pixels, kept in the image."""
    height, width = canvas.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in np.clip(box, -1, [width, height, width, height]))
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    return x1, y1, x2, y2


def _draw_rotated(canvas, rbox, color, thickness):
    """The rotated box's polygon; returns the polygon's extent (x1, y1, x2, y2), kept in the image."""
    corners = rboxes_to_polygons(rbox[None]).reshape(4, 2).astype(np.float64)
    height, width = canvas.shape[:2]
    # Sub-pixel vertices (4 fraction bits); far-away corners are clamped to stay in int32.
    points = np.round(np.clip(corners, -4 * max(height, width), 5 * max(height, width)) * 16).astype(np.int32)
    cv2.polylines(canvas, [points], True, color, thickness, cv2.LINE_AA, shift=4)
    low = np.clip(corners.min(axis=0), -1, [width, height])
    high = np.clip(corners.max(axis=0), -1, [width, height])
    return tuple(int(round(v)) for v in (*low, *high))


def _overlap(a, b):
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _label_places(extent, label_w, label_h, width, height):
    """Where a label may go, in order of preference: above the box, inside its top edge, below it, inside its
    bottom edge; each moved into the image."""
    x1, y1, _, y2 = extent
    left = min(max(x1, 0), max(width - label_w, 0))
    for top in (y1 - label_h, y1, y2, y2 - label_h):
        top = min(max(top, 0), max(height - label_h, 0))
        yield left, top, left + label_w, top + label_h


def _draw_label(canvas, extent, text, color, font_scale, placed):
    """A filled "name score" tag by the box of `extent`, at the first place that covers none of the `placed`
    tags (else the one covering least); returns the tag's rectangle."""
    height, width = canvas.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, 1)
    places = list(_label_places(extent, text_w + 2, text_h + baseline + 2, width, height))
    left, top, right, bottom = min(places, key=lambda place: sum(_overlap(place, other) for other in placed))
    cv2.rectangle(canvas, (left, top), (right, bottom), color, cv2.FILLED)
    luminance = (0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]) / 255.0
    text_color = (0, 0, 0) if luminance > 0.6 else (255, 255, 255)
    cv2.putText(canvas, text, (left + 1, top + text_h + 1), font, font_scale, text_color, 1, cv2.LINE_AA)
    return left, top, right, bottom
