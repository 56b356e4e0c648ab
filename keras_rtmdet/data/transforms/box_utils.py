"""Box and instance helpers shared by the transforms.

Boxes are (N, 4) float32 xyxy in pixels; masks (N, H, W) uint8 0/1. Filtering
a sample always drops the matching labels and masks with the boxes.
"""

import tensorflow as tf

INSTANCE_KEYS = ("boxes", "labels", "masks", "mask_centers")


def clip_boxes(boxes, height, width):
    """Clamp x to [0, width] and y to [0, height] (mmdet `clip_`)."""
    height = tf.cast(height, boxes.dtype)
    width = tf.cast(width, boxes.dtype)
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    return tf.stack(
        [
            tf.clip_by_value(x1, 0.0, width),
            tf.clip_by_value(y1, 0.0, height),
            tf.clip_by_value(x2, 0.0, width),
            tf.clip_by_value(y2, 0.0, height),
        ],
        axis=-1,
    )


def is_inside(boxes, height, width):
    """(N,) bool: mmdet `is_inside(all_inside=False)`.

    Applied to clipped boxes this keeps the boxes that still overlap the image:
    a box clipped onto an edge collapses to x1 == width (or x2 == 0) and goes.
    """
    height = tf.cast(height, boxes.dtype)
    width = tf.cast(width, boxes.dtype)
    return (
        (boxes[:, 0] < width)
        & (boxes[:, 1] < height)
        & (boxes[:, 2] > 0)
        & (boxes[:, 3] > 0)
    )


def filter_instances(sample, keep):
    """The sample with only the instances where `keep` (N,) bool is True."""
    return gather_instances(sample, tf.reshape(tf.where(keep), (-1,)))


def filter_small_boxes(sample, min_wh=(1.0, 1.0), drop_if_emptied=True):
    """mmdet `FilterAnnotations(min_gt_bbox_wh=min_wh)` (by box): keep the instances whose
    box is wider than `min_wh[0]` and taller than `min_wh[1]` (strictly).

    Returns `(sample, keep)`, `keep` a bool scalar: False when the sample had
    instances and none is left and `drop_if_emptied` (mmdet's default
    `keep_empty=True`, which the Ins configs use: the transform returns None
    and mmengine re-draws another index; here, `filter` on `keep`). A sample
    that had no instance to begin with is kept, as mmdet returns it unchanged.
    """
    boxes = sample["boxes"]
    wide = (boxes[:, 2] - boxes[:, 0] > min_wh[0]) & (boxes[:, 3] - boxes[:, 1] > min_wh[1])
    emptied = tf.logical_and(tf.size(wide) > 0, tf.logical_not(tf.reduce_any(wide)))
    keep = tf.logical_not(tf.logical_and(tf.constant(bool(drop_if_emptied)), emptied))
    return filter_instances(sample, wide), keep


def gather_instances(sample, indices):
    """The sample with the instances `indices` (K,) int, in that order."""
    out = dict(sample)
    for key in INSTANCE_KEYS:
        if key in sample:
            out[key] = tf.gather(sample[key], indices)
    return out


def scale_boxes(boxes, scale_x, scale_y):
    scale = tf.cast(tf.stack([scale_x, scale_y, scale_x, scale_y]), boxes.dtype)
    return boxes * scale


def translate_boxes(boxes, dx, dy):
    offset = tf.cast(tf.stack([dx, dy, dx, dy]), boxes.dtype)
    return boxes + offset


def flip_boxes_horizontal(boxes, width):
    """Mirror about the vertical axis of an image `width` px wide."""
    width = tf.cast(width, boxes.dtype)
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([width - x2, y1, width - x1, y2], axis=-1)


def box_areas(boxes):
    """(N,) areas of (N, 4) xyxy boxes, or of (N, 5) rotated boxes (cx, cy, w, h, angle): w·h."""
    if boxes.shape[-1] == 5:
        return boxes[:, 2] * boxes[:, 3]
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def masks_to_boxes(masks):
    """(N, H, W) 0/1 masks -> (N, 4) float32 tight xyxy boxes, zeros for empty masks.

    As mmdet `BitmapMasks.get_bboxes`: x2 / y2 are one past the last pixel.
    """
    masks = tf.cast(masks, tf.bool)
    cols = tf.reduce_any(masks, axis=1)
    rows = tf.reduce_any(masks, axis=2)

    def first_last(flags):
        size = tf.shape(flags)[1]
        index = tf.range(size)[tf.newaxis]
        first = tf.reduce_min(tf.where(flags, index, size), axis=1)
        last = tf.reduce_max(tf.where(flags, index, -1), axis=1) + 1
        return first, last

    x1, x2 = first_last(cols)
    y1, y2 = first_last(rows)
    boxes = tf.cast(tf.stack([x1, y1, x2, y2], axis=-1), tf.float32)
    present = tf.reduce_any(cols, axis=1)[:, tf.newaxis]
    return tf.where(present, boxes, tf.zeros_like(boxes))
