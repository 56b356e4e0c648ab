"""RTMDet's test-time resize and pad inside a graph (`keras.ops`), for exported models.

`RTMDetPreprocessor` runs on the host with OpenCV; an exported model takes
raw uint8 images instead and must do the same inside its graph. The sizes
follow the preprocessor exactly (scale `min(L / max(h, w), S / min(h, w))`,
new size `int(w·s + 0.5)` × `int(h·s + 0.5)`, padding 114 at the bottom and
right). The resize is bilinear with half-pixel centres and no antialiasing,
rounded to whole grey levels: cv2's `INTER_LINEAR`, but in floating point
where cv2 uses 11-bit fixed-point weights, so a resized pixel can differ from
OpenCV's by one grey level. Images already at their resized size are not
resampled at all (bit-exact).

The resize is two gathers and a lerp per axis rather than
`keras.ops.image.resize`: the same numbers on every backend, and a graph that
every exporter takes with a symbolic batch size (JAX's resize needs a
concrete one).
"""

import numpy as np
from keras import ops


def fitted_size(height, width, image_size):
    """(new_h, new_w, w_scale, h_scale) of the keep-ratio resize; Python numbers when the size is static."""
    target_h, target_w = image_size
    long_edge, short_edge = max(image_size), min(image_size)
    if isinstance(height, int) and isinstance(width, int):
        scale = min(long_edge / max(height, width), short_edge / min(height, width))
        new_w = min(max(int(width * scale + 0.5), 1), target_w)
        new_h = min(max(int(height * scale + 0.5), 1), target_h)
        return new_h, new_w, new_w / width, new_h / height
    # float64, as the Python arithmetic of the static case and of the preprocessor.
    h, w = ops.cast(height, "float64"), ops.cast(width, "float64")
    scale = ops.minimum(long_edge / ops.maximum(h, w), short_edge / ops.minimum(h, w))
    new_w = ops.clip(ops.floor(w * scale + 0.5), 1.0, float(target_w))
    new_h = ops.clip(ops.floor(h * scale + 0.5), 1.0, float(target_h))
    factors = (ops.cast(new_w / w, "float32"), ops.cast(new_h / h, "float32"))
    return ops.cast(new_h, "int32"), ops.cast(new_w, "int32"), *factors


def _sample_positions(in_size, out_size):
    """Rows (low, high, frac) that output pixel i interpolates, as cv2 / `align_corners=False`.

    Pixel i samples the input at `(i + ½)·in/out − ½`, clamped to [0, in − 1].
    """
    if isinstance(in_size, int) and isinstance(out_size, int):
        src = np.clip((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0, in_size - 1)
        low = np.floor(src)
        return low.astype(np.int32), np.minimum(low + 1, in_size - 1).astype(np.int32), (src - low).astype(np.float32)
    size = ops.cast(in_size, "float64")
    steps = ops.cast(ops.arange(0, out_size), "float64")
    src = ops.clip((steps + 0.5) * (size / ops.cast(out_size, "float64")) - 0.5, 0.0, size - 1.0)
    low = ops.floor(src)
    high = ops.minimum(low + 1.0, size - 1.0)
    return ops.cast(low, "int32"), ops.cast(high, "int32"), ops.cast(src - low, "float32")


def _resize_axis(x, axis, in_size, out_size):
    """Linear resampling of (B, H, W, C) `x` along `axis` (1 or 2) from `in_size` to `out_size` pixels."""
    shape = (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1)
    low, high, frac = (ops.reshape(ops.convert_to_tensor(v), shape) for v in _sample_positions(in_size, out_size))
    # take_along_axis, not take: torch's `take` squeezes the axis, which its ONNX exporter writes as an invalid Squeeze.
    below = ops.take_along_axis(x, low, axis=axis)
    above = ops.take_along_axis(x, high, axis=axis)
    return below + (above - below) * frac


def letterbox(images, image_size, pad_value=114.0, flip_channels=False):
    """Keep-ratio resize and pad a batch of same-size raw images.

    Args:
        images: (B, H, W, 3) uint8 (or float) pixels; H and W static, or
            dynamic on TensorFlow (a `None` dimension of a traced function).
        image_size: (H_t, W_t), the padded network input.
        pad_value: value of the padding pixels.
        flip_channels: reverse the channel order (RGB ↔ BGR) on the way.

    Returns: `(padded, scale_factors)`: (B, H_t, W_t, 3) float32 pixels and
    (B, 2) float32 (w_scale, h_scale).
    """
    image_size = tuple(int(s) for s in image_size)
    x = ops.cast(images, "float32")
    height, width = images.shape[1], images.shape[2]
    dynamic = height is None or width is None
    if dynamic:
        shape = ops.shape(images)
        height, width = shape[1], shape[2]
    new_h, new_w, w_scale, h_scale = fitted_size(height, width, image_size)
    if dynamic or (new_h, new_w) != (height, width):
        x = _resize_axis(x, 1, height, new_h)
        x = _resize_axis(x, 2, width, new_w)
        x = ops.clip(ops.round(x), 0.0, 255.0)
    if flip_channels:
        x = ops.flip(x, axis=-1)
    target_h, target_w = image_size
    x = ops.pad(x, [[0, 0], [0, target_h - new_h], [0, target_w - new_w], [0, 0]], constant_values=pad_value)
    # A dynamic pad leaves the spatial sizes unknown to the tracer; they are the static target.
    x = ops.reshape(x, (-1, target_h, target_w, 3))
    factors = ops.stack([ops.convert_to_tensor(w_scale, "float32"), ops.convert_to_tensor(h_scale, "float32")])
    return x, ops.zeros_like(x[:, 0, 0, :2]) + factors
