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


def normalize_mask_targets(y, num_slots, image_size, loss_stride=4):
    """GT masks for the Ins loss: `(masks (B, G, H/s, W/s) float32, centres (B, G, 2))`.

    `y["masks"]` is either (B, G, H, W) at the padded input size, sampled
    here at the stride-`s` pixel centres ``[s//2::s, s//2::s]`` (the
    reference's `mask_loss_stride`), its centres of mass computed first at
    full resolution; or already (B, G, H/s, W/s) so sampled, which then
    needs `y["mask_centers"]` (B, G, 2) (x, y) computed at full resolution
    (the training pipeline's output, 16× smaller per batch).
    """
    from keras_rtmdet.losses.dynamic_soft_label_assigner import mask_centers_of_mass

    if "masks" not in y:
        raise ValueError("Instance-segmentation targets need 'masks' (batch, N, H, W) besides 'boxes' and 'labels'.")
    masks = y["masks"]
    height, width = image_size
    if len(masks.shape) != 4 or masks.shape[1] != num_slots:
        raise ValueError(
            f"Target masks must be (batch, {num_slots}, H, W), one per box slot; got {tuple(masks.shape)}."
        )
    size = tuple(masks.shape[2:])
    start = loss_stride // 2
    if size == (height, width):
        centers = mask_centers_of_mass(masks)
        return ops.cast(masks[:, :, start::loss_stride, start::loss_stride], "float32"), centers
    if size == (-(-height // loss_stride), -(-width // loss_stride)):
        if "mask_centers" not in y:
            raise ValueError(
                f"Masks at stride {loss_stride} {size} need 'mask_centers' (batch, N, 2), the full-resolution "
                "centres of mass; or pass full-resolution masks."
            )
        centers = ops.cast(y["mask_centers"], "float32")
        if tuple(centers.shape[1:]) != (num_slots, 2):
            raise ValueError(f"'mask_centers' must be (batch, {num_slots}, 2); got {tuple(centers.shape)}.")
        return ops.cast(masks, "float32"), centers
    raise ValueError(
        f"Target masks of size {size} fit neither the input {(height, width)} nor its stride-{loss_stride} grid."
    )


def normalize_rotated_targets(y):
    """`y` → `{"boxes": (B, G, 5) float32 rboxes, "labels": (B, G) int32}` for RTMDet-R.

    Boxes are (cx, cy, w, h, angle) in pixels and radians, any angle
    convention (the IoU loss does not depend on it); label −1 pads. Boxes
    with w ≤ 0 or h ≤ 0 are treated as padding. Shapes are checked statically.
    """
    if not isinstance(y, dict) or "boxes" not in y or "labels" not in y:
        got = f"a dict with keys {sorted(y)}" if isinstance(y, dict) else type(y).__name__
        raise ValueError(
            "Rotated detection targets must be a dict {'boxes': (batch, N, 5) (cx, cy, w, h, angle), "
            f"'labels': (batch, N)}} padded with label -1; got {got}."
        )
    boxes, labels = y["boxes"], y["labels"]
    if len(boxes.shape) != 3 or boxes.shape[-1] != 5:
        raise ValueError(
            f"Rotated target boxes must be (batch, N, 5) (cx, cy, w, h, angle); got shape {tuple(boxes.shape)}."
        )
    if len(labels.shape) != 2 or labels.shape[1] != boxes.shape[1]:
        raise ValueError(
            f"Target labels must be (batch, N) matching boxes {tuple(boxes.shape)}; got {tuple(labels.shape)}."
        )
    boxes = ops.cast(boxes, "float32")
    labels = ops.cast(labels, "int32")
    has_area = ops.logical_and(boxes[..., 2] > 0, boxes[..., 3] > 0)
    return {"boxes": boxes, "labels": ops.where(has_area, labels, -ops.ones_like(labels))}
