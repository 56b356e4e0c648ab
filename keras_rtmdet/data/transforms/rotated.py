"""RTMDet-R training transforms (MMRotate 1.x, spec §7.2) in TF ops.

Samples are dicts with `"image"` (H, W, 3) uint8 RGB, `"boxes"` (N, 5)
float32 rboxes `(cx, cy, w, h, angle)` and `"labels"` (N,) int32 (other keys
pass through). Box coordinates are continuous pixels with pixel (row i,
column j) covering [j, j+1) × [i, i+1); angles are radians, a positive angle
turning the width axis from +x towards +y (clockwise on screen). Boxes are
never clipped: an rbox may reach past the image.

* `resize_keep_ratio`: mmcv `Resize(keep_ratio=True)`; the boxes follow the
  geometric affine map (the minimum-area rectangle of the scaled box).
* `random_flip_rotated`: `RandomFlip(prob, [horizontal, vertical, diagonal])`.
* `random_rotate`: `RandomRotate(prob, angle_range, rect_obj_labels)`.
* `regularize_rboxes_le90`: MMRotate's `regularize_boxes('le90')`.

Padding is `geometric.pad_to` (bottom/right).
"""

import math

import tensorflow as tf

from keras_rtmdet.data.transforms import box_utils
from keras_rtmdet.data.transforms.geometric import image_size, keep_ratio_size, resize_image
from keras_rtmdet.data.transforms.random_ops import split_seed, uniform

FLIP_DIRECTIONS = ("horizontal", "vertical", "diagonal")
# RandomRotate's angles (degrees) for images holding axis-aligned-annotated classes.
RECT_ANGLES = (90.0, 180.0, -90.0, -180.0)
# mmcv.imrotate's border value in MMRotate's Rotate (not the 114 of Pad).
ROTATE_FILL = 0.0


def scale_rboxes(boxes, scale_x, scale_y):
    """The rboxes after scaling x by `scale_x` and y by `scale_y` (about the origin).

    A rectangle scaled non-uniformly is a parallelogram with half-axes
    a = S·(w/2)(cosθ, sinθ) and b = S·(h/2)(−sinθ, cosθ); its minimum-area
    enclosing rectangle has one side along a or along b, whichever gives the
    smaller area (along a on a tie, so a uniform scale keeps angle, w and h).

    Args: boxes (N, 5); scale_x, scale_y float scalars.
    Returns: (N, 5) float32 rboxes, the angle in (−π, π].
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scale_x, scale_y = tf.cast(scale_x, tf.float32), tf.cast(scale_y, tf.float32)
    cx, cy, w, h, angle = tf.unstack(boxes, 5, axis=-1)
    cos, sin = tf.cos(angle), tf.sin(angle)
    ax, ay = scale_x * cos * w / 2, scale_y * sin * w / 2
    bx, by = -scale_x * sin * h / 2, scale_y * cos * h / 2
    len_a, len_b = tf.sqrt(ax * ax + ay * ay), tf.sqrt(bx * bx + by * by)
    dot, cross = tf.abs(ax * bx + ay * by), tf.abs(ax * by - ay * bx)
    along_a = (2 * (len_a + tf.math.divide_no_nan(dot, len_a)), 2 * tf.math.divide_no_nan(cross, len_a))
    along_b = (2 * tf.math.divide_no_nan(cross, len_b), 2 * (len_b + tf.math.divide_no_nan(dot, len_b)))
    pick_a = along_a[0] * along_a[1] <= along_b[0] * along_b[1]
    new_w = tf.where(pick_a, along_a[0], along_b[0])
    new_h = tf.where(pick_a, along_a[1], along_b[1])
    new_angle = tf.where(pick_a, tf.atan2(ay, ax), tf.atan2(-bx, by))
    return tf.stack([cx * scale_x, cy * scale_y, new_w, new_h, new_angle], axis=-1)


def resize_keep_ratio(sample, size):
    """mmcv `Resize(scale=(size, size), keep_ratio=True)`: the longer side to `size`
    (`geometric.keep_ratio_size`), bilinear; boxes by `scale_rboxes` with the
    actual per-axis ratios."""
    h, w = image_size(sample)
    new_h, new_w = keep_ratio_size(h, w, (size, size))
    out = dict(sample)
    out["image"] = resize_image(sample["image"], new_h, new_w)
    out["boxes"] = scale_rboxes(
        sample["boxes"],
        tf.cast(new_w, tf.float32) / tf.cast(w, tf.float32),
        tf.cast(new_h, tf.float32) / tf.cast(h, tf.float32),
    )
    return out


def flip_rboxes(boxes, direction, height, width):
    """MMRotate `RotatedBoxes.flip_`: horizontal x' = W − x, θ' = −θ; vertical
    y' = H − y, θ' = −θ; diagonal both coordinates, θ unchanged."""
    if direction not in FLIP_DIRECTIONS:
        raise ValueError(f"direction must be one of {FLIP_DIRECTIONS}, got {direction!r}.")
    cx, cy, w, h, angle = tf.unstack(boxes, 5, axis=-1)
    if direction != "vertical":
        cx = tf.cast(width, boxes.dtype) - cx
    if direction != "horizontal":
        cy = tf.cast(height, boxes.dtype) - cy
    if direction != "diagonal":
        angle = -angle
    return tf.stack([cx, cy, w, h, angle], axis=-1)


def flip_rotated(sample, direction):
    """Mirror image and rboxes: `"horizontal"` (left-right), `"vertical"` (up-down) or `"diagonal"` (both)."""
    axes = {"horizontal": [1], "vertical": [0], "diagonal": [0, 1]}
    if direction not in axes:
        raise ValueError(f"direction must be one of {FLIP_DIRECTIONS}, got {direction!r}.")
    h, w = image_size(sample)
    out = dict(sample)
    out["image"] = tf.reverse(sample["image"], axis=axes[direction])
    out["boxes"] = flip_rboxes(sample["boxes"], direction, h, w)
    return out


def random_flip_rotated(sample, prob=0.75, seed=None):
    """mmcv `RandomFlip(prob, direction=[horizontal, vertical, diagonal])`: each
    direction with probability prob/3, no flip with 1 − prob."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}.")
    draw = uniform(seed)
    step = max(prob / len(FLIP_DIRECTIONS), 1e-12)
    none = len(FLIP_DIRECTIONS)
    index = tf.where(draw < prob, tf.minimum(tf.cast(draw / step, tf.int32), none - 1), none)
    branches = [lambda d=d: flip_rotated(sample, d) for d in FLIP_DIRECTIONS] + [lambda: dict(sample)]
    return tf.switch_case(index, branches)


def rotate_image(image, angle):
    """`mmcv.imrotate(image, angle_degrees, border_value=0)`, bilinear: clockwise on
    screen for a positive angle, about ((W−1)/2, (H−1)/2) in pixel indices (the
    point (W/2, H/2) of the box coordinates), same canvas size, border 0.

    Args: image (H, W, C) uint8; angle scalar float32 radians.
    """
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    cx = (tf.cast(w, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(h, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Output pixel -> input pixel: the inverse rotation about the centre.
    transform = tf.stack(
        [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy, 0.0, 0.0]
    )[tf.newaxis]
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[tf.newaxis],
        transforms=transform,
        output_shape=tf.stack([h, w]),
        fill_value=ROTATE_FILL,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
    return tf.cast(tf.clip_by_value(tf.round(rotated), 0.0, 255.0), image.dtype)


def centres_inside(boxes, height, width):
    """(N,) bool: MMRotate's `RotatedBoxes.is_inside`, the centre strictly inside the image."""
    height, width = tf.cast(height, boxes.dtype), tf.cast(width, boxes.dtype)
    cx, cy = boxes[:, 0], boxes[:, 1]
    return (cx > 0) & (cx < width) & (cy > 0) & (cy < height)


def rotate_rotated(sample, angle_degrees):
    """MMRotate `Rotate(angle)`: the image by `rotate_image`; box centres about
    (W/2, H/2) by the same angle, θ += angle; boxes whose centre leaves the
    image are dropped (with their labels), none is clipped."""
    angle = tf.cast(angle_degrees, tf.float32) * (math.pi / 180.0)
    h, w = image_size(sample)
    cx0, cy0 = tf.cast(w, tf.float32) / 2.0, tf.cast(h, tf.float32) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy, bw, bh, theta = tf.unstack(sample["boxes"], 5, axis=-1)
    dx, dy = cx - cx0, cy - cy0
    boxes = tf.stack([cx0 + cos * dx - sin * dy, cy0 + sin * dx + cos * dy, bw, bh, theta + angle], axis=-1)
    out = dict(sample)
    out["image"] = rotate_image(sample["image"], angle)
    out["boxes"] = boxes
    return box_utils.filter_instances(out, centres_inside(boxes, h, w))


def _rect_mask(labels, rect_labels):
    if not rect_labels:
        return tf.zeros_like(labels, tf.bool)
    return tf.reduce_any(labels[:, tf.newaxis] == tf.constant(list(rect_labels), labels.dtype), axis=1)


def draw_rotate_angle(labels, angle_range=180.0, rect_labels=(), seed=None):
    """RandomRotate's angle in degrees: U[−angle_range, angle_range), or one of
    `RECT_ANGLES` (each 1/4) when any label is in `rect_labels` (classes annotated
    as axis-aligned boxes, DOTA's storage-tank and roundabout)."""
    seed_angle, seed_rect = split_seed(seed, 2)
    angle = angle_range * (2.0 * uniform(seed_angle) - 1.0)
    rect_angle = tf.gather(tf.constant(RECT_ANGLES), uniform(seed_rect, (), 0, len(RECT_ANGLES), tf.int32))
    return tf.where(tf.reduce_any(_rect_mask(labels, rect_labels)), rect_angle, angle)


def random_rotate(sample, prob=0.5, angle_range=180.0, rect_labels=(), seed=None):
    """MMRotate `RandomRotate(prob, angle_range, rect_obj_labels=rect_labels)`:
    with probability `prob`, `rotate_rotated` by `draw_rotate_angle`."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}.")
    seed_apply, seed_angle = split_seed(seed, 2)
    angle = draw_rotate_angle(sample["labels"], angle_range, tuple(rect_labels), seed_angle)
    return tf.cond(uniform(seed_apply) < prob, lambda: rotate_rotated(sample, angle), lambda: dict(sample))


def regularize_rboxes_le90(boxes):
    """MMRotate `regularize_boxes('le90')` in TF: where w ≤ h, swap them and add
    π/2; then the angle into [−π/2, π/2) (floor-mod). Returns (N, 5), w ≥ h."""
    cx, cy, w, h, angle = tf.unstack(boxes, 5, axis=-1)
    keep = w > h
    turned = tf.where(keep, angle, angle + math.pi / 2)
    wrapped = tf.math.floormod(turned + math.pi / 2, math.pi) - math.pi / 2
    return tf.stack([cx, cy, tf.where(keep, w, h), tf.where(keep, h, w), wrapped], axis=-1)
