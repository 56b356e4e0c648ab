"""Validation and normalisation of detection targets (`y` of `fit`)."""

import warnings

import keras
from keras import ops


def normalize_detection_targets(y, bounding_box_format, image_size):
    """`y` → `{"boxes": (B, G, 4) float32 xyxy pixels, "labels": (B, G) int32}`.

    Accepts `{"boxes", "labels"}` padded with label −1 (keras-cv's key
    `"classes"` is taken for `"labels"` with a warning) with boxes in
    `bounding_box_format` (any of `keras.utils.bounding_boxes`'
    formats; `rel_*` ones are relative to `image_size`).

    Boxes with no area (x2 ≤ x1 or y2 ≤ y1) can be no one's target: they are
    treated as padding, as the reference's annotation parsing drops them.
    Shapes are checked statically, so a wrong input fails before tracing.
    """
    if not isinstance(y, dict):
        raise ValueError(
            "Detection targets must be a dict {'boxes': (batch, N, 4), 'labels': (batch, N)} "
            f"padded with label -1; got {type(y).__name__}."
        )
    if "labels" not in y and "classes" in y:
        warnings.warn("Detection targets use the key 'classes'; keras_rtmdet reads it as 'labels'.")
        y = dict(y, labels=y["classes"])
    missing = {"boxes", "labels"} - set(y)
    if missing:
        raise ValueError(f"Detection targets lack {sorted(missing)}; expected keys 'boxes' and 'labels'.")
    boxes, labels = y["boxes"], y["labels"]
    if len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"Target boxes must be (batch, N, 4); got shape {tuple(boxes.shape)}.")
    if len(labels.shape) != 2 or labels.shape[1] != boxes.shape[1]:
        raise ValueError(
            f"Target labels must be (batch, N) matching boxes {tuple(boxes.shape)}; got {tuple(labels.shape)}."
        )
    boxes = ops.cast(boxes, "float32")
    if bounding_box_format != "xyxy":
        height, width = image_size
        boxes = keras.utils.bounding_boxes.convert_format(
            boxes, source=bounding_box_format, target="xyxy", height=height, width=width
        )
    labels = ops.cast(labels, "int32")
    has_area = ops.logical_and(boxes[..., 2] > boxes[..., 0], boxes[..., 3] > boxes[..., 1])
    labels = ops.where(has_area, labels, -ops.ones_like(labels))
    return {"boxes": boxes, "labels": labels}
