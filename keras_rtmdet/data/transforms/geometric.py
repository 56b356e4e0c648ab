"""Resize, crop, flip and pad a sample (image, boxes, labels, masks) in TF ops.

All functions take and return a sample dict (see `detection_source`):
`"image"` (H, W, 3) uint8, `"boxes"` (N, 4) float32 xyxy px, `"labels"` (N,)
int32, optional `"masks"` (N, H, W) uint8; H, W and N are dynamic.
"""

import tensorflow as tf

from keras_rtmdet.data.transforms import box_utils
from keras_rtmdet.data.transforms.random_ops import split_seed, uniform


def image_size(sample):
    """(height, width) int32 scalars of the sample's image."""
    shape = tf.shape(sample["image"])
    return shape[0], shape[1]


def place_on_canvas(image, top, left, height, width, fill):
    """Put `image` (h, w, C) with its top-left corner at (top, left) on a
    `height` x `width` canvas filled with `fill`; what falls outside is cut.

    One op for pasting (mosaic), padding (top = left = 0) and cropping
    (negative top / left), so the three agree to the pixel.
    """
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    y0, x0 = tf.maximum(-top, 0), tf.maximum(-left, 0)
    y1 = tf.maximum(tf.minimum(h, height - top), y0)
    x1 = tf.maximum(tf.minimum(w, width - left), x0)
    visible = image[y0:y1, x0:x1]
    pad_top = tf.clip_by_value(top, 0, height)
    pad_left = tf.clip_by_value(left, 0, width)
    paddings = [
        [pad_top, height - pad_top - (y1 - y0)],
        [pad_left, width - pad_left - (x1 - x0)],
        [0, 0],
    ]
    return tf.pad(visible, paddings, constant_values=tf.cast(fill, image.dtype))


def resize_image(image, height, width):
    """Bilinear (half-pixel centres, no antialiasing, as cv2 INTER_LINEAR), rounded to uint8.

    A resize to the same size is the identity (every source coordinate is an
    integer, weights 0): it is skipped (common: Mosaic and MixUp at ratio 1).
    """

    def resize():
        resized = tf.image.resize(image, tf.stack([height, width]), method="bilinear")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    return tf.cond(_same_size(image, 0, height, width), lambda: tf.identity(image), resize)


def _same_size(tensor, axis, height, width):
    shape = tf.shape(tensor)
    return tf.logical_and(tf.equal(shape[axis], height), tf.equal(shape[axis + 1], width))


def resize_masks(masks, height, width):
    """Nearest-neighbour resize of (N, H, W) masks (mmdet resizes bitmaps with 'nearest')."""

    def resize():
        # One spare channel because the resize op rejects zero channels (N = 0).
        channels_last = tf.transpose(tf.pad(masks, [[0, 1], [0, 0], [0, 0]]), [1, 2, 0])
        resized = tf.image.resize(channels_last, tf.stack([height, width]), method="nearest")
        return tf.transpose(resized, [2, 0, 1])[:-1]

    return tf.cond(_same_size(masks, 1, height, width), lambda: tf.identity(masks), resize)


def resize_sample(sample, height, width, box_scale=None):
    """Resize image and masks to `height` x `width`; scale the boxes.

    `box_scale` (sx, sy) defaults to the actual size ratio (mmdet `Resize`);
    Mosaic passes its un-rounded ratio instead, as mmdet does.
    """
    h, w = image_size(sample)
    out = dict(sample)
    out["image"] = resize_image(sample["image"], height, width)
    if box_scale is None:
        box_scale = (
            tf.cast(width, tf.float32) / tf.cast(w, tf.float32),
            tf.cast(height, tf.float32) / tf.cast(h, tf.float32),
        )
    out["boxes"] = box_utils.scale_boxes(sample["boxes"], *box_scale)
    if "masks" in sample:
        out["masks"] = resize_masks(sample["masks"], height, width)
    return out


def keep_ratio_size(height, width, scale):
    """New (height, width) of mmcv `rescale_size`: factor
    min(max(scale) / max(h, w), min(scale) / min(h, w)), sizes int(x·factor + 0.5).

    Float64 because mmcv computes in Python floats and the +0.5 rounding
    is sensitive to the last bit.
    """
    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    scale = [tf.cast(s, tf.float64) for s in scale]
    long_edge, short_edge = tf.maximum(*scale), tf.minimum(*scale)
    factor = tf.minimum(long_edge / tf.maximum(h, w), short_edge / tf.minimum(h, w))
    new_h = tf.cast(tf.floor(h * factor + 0.5), tf.int32)
    new_w = tf.cast(tf.floor(w * factor + 0.5), tf.int32)
    return tf.maximum(new_h, 1), tf.maximum(new_w, 1)


def random_resize(sample, scale=(1280, 1280), ratio_range=(0.5, 2.0), seed=None):
    """mmdet `RandomResize(scale, ratio_range, keep_ratio=True)`.

    ratio ~ U(ratio_range); target (int(scale_w·r), int(scale_h·r)); the image
    is rescaled to fit it with `keep_ratio_size`, boxes scaled then clipped to
    the new image (not filtered), masks resized with nearest.
    """
    h, w = image_size(sample)
    new_h, new_w = draw_resize_size(h, w, scale, ratio_range, seed)
    out = resize_sample(sample, new_h, new_w)
    out["boxes"] = box_utils.clip_boxes(out["boxes"], new_h, new_w)
    return out


def draw_resize_size(height, width, scale, ratio_range, seed=None):
    """The (new_h, new_w) of `random_resize`: ratio ~ U(ratio_range), keep-ratio fit to int(scale·ratio)."""
    ratio = uniform(seed, (), ratio_range[0], ratio_range[1], tf.float64)
    target = [tf.cast(tf.floor(float(s) * ratio), tf.int32) for s in scale]
    return keep_ratio_size(height, width, target)


def draw_crop(height, width, crop_size, seed=None):
    """(offset_y, offset_x, crop_h, crop_w) of `random_crop` on a `height` x `width` image:
    crop min(crop, size), offsets uniform over the integers [0, margin]."""
    crop_h, crop_w = tf.minimum(crop_size[0], height), tf.minimum(crop_size[1], width)
    seed_y, seed_x = split_seed(seed, 2)
    offset_y = uniform(seed_y, (), 0, height - crop_h + 1, tf.int32)
    offset_x = uniform(seed_x, (), 0, width - crop_w + 1, tf.int32)
    return offset_y, offset_x, crop_h, crop_w


def _finish_crop(out, boxes, offset_y, offset_x, crop_h, crop_w, allow_negative_crop, recompute_bbox):
    """Translate, clip and filter the (already image/mask cropped) sample's boxes, as `random_crop`."""
    boxes = box_utils.translate_boxes(boxes, -offset_x, -offset_y)
    out["boxes"] = box_utils.clip_boxes(boxes, crop_h, crop_w)
    valid = box_utils.is_inside(out["boxes"], crop_h, crop_w)
    out = box_utils.filter_instances(out, valid)
    if recompute_bbox and "masks" in out:
        out["boxes"] = box_utils.masks_to_boxes(out["masks"])
    keep = tf.logical_or(tf.constant(allow_negative_crop), tf.reduce_any(valid))
    return out, keep


def crop_at(sample, offset_y, offset_x, crop_h, crop_w, allow_negative_crop=False, recompute_bbox=False):
    """The deterministic part of `random_crop`: crop at the given offsets. Returns (sample, keep)."""
    out = dict(sample)
    out["image"] = sample["image"][offset_y : offset_y + crop_h, offset_x : offset_x + crop_w]
    if "masks" in sample:
        out["masks"] = sample["masks"][:, offset_y : offset_y + crop_h, offset_x : offset_x + crop_w]
    return _finish_crop(out, sample["boxes"], offset_y, offset_x, crop_h, crop_w, allow_negative_crop, recompute_bbox)


def random_crop(sample, crop_size=(640, 640), allow_negative_crop=False, recompute_bbox=False, seed=None):
    """mmdet `RandomCrop(crop_size, crop_type='absolute')`.

    The crop is min(crop_h, h) x min(crop_w, w) at offsets drawn uniformly
    from the integers [0, margin]. Boxes are translated, clipped and filtered
    with `is_inside`; with `recompute_bbox` they are then replaced by the
    bounding boxes of the cropped masks.

    Returns `(sample, keep)`: `keep` is a bool scalar, False when no box
    survives and negative crops are not allowed. mmdet then re-draws another
    image; here, `filter` on `keep` (the epoch gets shorter instead).
    """
    h, w = image_size(sample)
    offset_y, offset_x, crop_h, crop_w = draw_crop(h, w, crop_size, seed)
    return crop_at(sample, offset_y, offset_x, crop_h, crop_w, allow_negative_crop, recompute_bbox)


def _resize_scale(in_size, out_size):
    """TF's float32 resize scale in / out (as the resize kernels compute it)."""
    return tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)


def _bilinear_taps(offset, size, in_size, out_size):
    """TF resize_bilinear's (half-pixel centres) lower / upper source indices and weights
    for output indices [offset, offset + size) of a resize from `in_size` to `out_size`."""
    source = (tf.cast(tf.range(offset, offset + size), tf.float32) + 0.5) * _resize_scale(in_size, out_size) - 0.5
    floor = tf.floor(source)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(source), tf.int32), in_size - 1)
    return lower, upper, source - floor


def _bilinear_window(image, new_h, new_w, offset_y, offset_x, crop_h, crop_w):
    """Separable bilinear of only the window, in the order of TF's kernel (x lerp, then y lerp)."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    y_lower, y_upper, y_lerp = _bilinear_taps(offset_y, crop_h, h, new_h)
    x_lower, x_upper, x_lerp = _bilinear_taps(offset_x, crop_w, w, new_w)
    first_row = y_lower[0]
    rows = image[first_row : y_upper[-1] + 1]
    left = tf.cast(tf.gather(rows, x_lower, axis=1), tf.float32)
    right = tf.cast(tf.gather(rows, x_upper, axis=1), tf.float32)
    columns = left + (right - left) * x_lerp[tf.newaxis, :, tf.newaxis]
    top = tf.gather(columns, y_lower - first_row)
    bottom = tf.gather(columns, y_upper - first_row)
    window = top + (bottom - top) * y_lerp[:, tf.newaxis, tf.newaxis]
    return tf.cast(tf.clip_by_value(tf.round(window), 0.0, 255.0), tf.uint8)


def resize_window_image(image, new_h, new_w, offset_y, offset_x, crop_h, crop_w):
    """Window [offset_y, +crop_h) x [offset_x, +crop_w) of `resize_image(image, new_h, new_w)`.

    When the resized image is large (more than 3 windows), only the window is
    computed, by separable bilinear sampling of the source rows / columns under
    it with TF's formula (output index i samples (i + 0.5)·in/new − 0.5, indices
    clamped at the border); else the whole image is resized (TF's kernel is
    faster per pixel) and cut. Both agree with resize-then-crop up to float
    rounding (≤ 1 level; in practice identical).
    """
    large = tf.cast(new_h, tf.int64) * tf.cast(new_w, tf.int64) > 3 * tf.cast(crop_h, tf.int64) * tf.cast(crop_w, tf.int64)

    def whole():
        return resize_image(image, new_h, new_w)[offset_y : offset_y + crop_h, offset_x : offset_x + crop_w]

    return tf.cond(
        large, lambda: _bilinear_window(image, new_h, new_w, offset_y, offset_x, crop_h, crop_w), whole
    )


def resize_window_masks(masks, new_h, new_w, offset_y, offset_x, crop_h, crop_w):
    """The same window of `resize_masks(masks, new_h, new_w)` (nearest, TF's index rule), by gathering."""
    h, w = tf.shape(masks)[1], tf.shape(masks)[2]

    def indices(offset, size, scale, in_size):
        out = tf.cast(tf.range(offset, offset + size), tf.float32)
        index = tf.cast(tf.floor((out + 0.5) * scale), tf.int32)
        return tf.clip_by_value(index, 0, in_size - 1)

    rows = indices(offset_y, crop_h, _resize_scale(h, new_h), h)
    cols = indices(offset_x, crop_w, _resize_scale(w, new_w), w)
    return tf.gather(tf.gather(masks, rows, axis=1), cols, axis=2)


def resize_crop_at(sample, new_h, new_w, offset_y, offset_x, crop_h, crop_w, allow_negative_crop=False,
                   recompute_bbox=False):
    """`crop_at(random_resize's output for size (new_h, new_w), ...)` computing only the window."""
    h, w = image_size(sample)
    out = dict(sample)
    out["image"] = resize_window_image(sample["image"], new_h, new_w, offset_y, offset_x, crop_h, crop_w)
    if "masks" in sample:
        out["masks"] = resize_window_masks(sample["masks"], new_h, new_w, offset_y, offset_x, crop_h, crop_w)
    boxes = box_utils.scale_boxes(
        sample["boxes"],
        tf.cast(new_w, tf.float32) / tf.cast(w, tf.float32),
        tf.cast(new_h, tf.float32) / tf.cast(h, tf.float32),
    )
    boxes = box_utils.clip_boxes(boxes, new_h, new_w)
    return _finish_crop(out, boxes, offset_y, offset_x, crop_h, crop_w, allow_negative_crop, recompute_bbox)


def draw_resize_crop(height, width, scale, ratio_range, crop_size, seed_resize=None, seed_crop=None):
    """The random draws of `random_resize` then `random_crop`: (new_h, new_w, offset_y, offset_x, crop_h, crop_w)."""
    new_h, new_w = draw_resize_size(height, width, scale, ratio_range, seed_resize)
    return (new_h, new_w) + tuple(draw_crop(new_h, new_w, crop_size, seed_crop))


def random_resize_crop(sample, scale=(1280, 1280), ratio_range=(0.5, 2.0), crop_size=(640, 640),
                       allow_negative_crop=False, recompute_bbox=False, seed=None, seeds=None):
    """`random_crop(random_resize(sample, scale, ratio_range), crop_size, ...)` fused.

    Same draws and semantics (`seeds` = (seed_resize, seed_crop) gives exactly the
    draws of the two-step version with those seeds; else they are split from
    `seed`), but only the crop window of the resized image and masks is computed.
    Returns (sample, keep) as `random_crop`.
    """
    seed_resize, seed_crop = seeds if seeds is not None else split_seed(seed, 2)
    h, w = image_size(sample)
    draws = draw_resize_crop(h, w, scale, ratio_range, crop_size, seed_resize, seed_crop)
    return resize_crop_at(sample, *draws, allow_negative_crop=allow_negative_crop, recompute_bbox=recompute_bbox)


def flip_horizontal(sample):
    """Mirror image, masks and boxes left-right."""
    out = dict(sample)
    out["image"] = tf.reverse(sample["image"], axis=[1])
    out["boxes"] = box_utils.flip_boxes_horizontal(sample["boxes"], image_size(sample)[1])
    if "masks" in sample:
        out["masks"] = tf.reverse(sample["masks"], axis=[2])
    return out


def random_flip(sample, prob=0.5, seed=None):
    """mmdet `RandomFlip(prob, direction='horizontal')`."""
    flip = uniform(seed) < prob
    return tf.cond(flip, lambda: flip_horizontal(sample), lambda: dict(sample))


def pad_to(sample, size=(640, 640), value=114):
    """mmdet `Pad(size)`: pad bottom/right with `value` (masks with 0) to `size` (h, w).

    The image must not be larger than `size` (it follows a crop to `size`).
    The output image and masks get the static shape `size`.
    """
    height, width = size
    out = dict(sample)
    image = place_on_canvas(sample["image"], 0, 0, height, width, value)
    out["image"] = tf.ensure_shape(image, [height, width, 3])
    if "masks" in sample:
        h, w = image_size(sample)
        masks = tf.pad(sample["masks"], [[0, 0], [0, height - h], [0, width - w]])
        out["masks"] = tf.ensure_shape(masks, [None, height, width])
    return out
