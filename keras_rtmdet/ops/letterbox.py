"""RTMDet's test-time resize and pad inside a graph (`keras.ops`), for `predict` on the device and exported models.

`RTMDetPreprocessor` runs on the host with OpenCV; an exported model takes
raw uint8 images instead and must do the same inside its graph. The sizes
follow the preprocessor exactly (scale `min(L / max(h, w), S / min(h, w))`,
new size `int(w·s + 0.5)` × `int(h·s + 0.5)`, padding 114 at the bottom and
right), and so do the pixels: the resize is OpenCV's uint8 `INTER_LINEAR`
arithmetic, reproduced (`resize_like_cv2`).

OpenCV resizes uint8 images in fixed point: 11-bit weights (rounded
`w · 2048`), a horizontal pass into int32 rows, then its SIMD vertical pass
`((b0·(r0 >> 4)) >> 16 + (b1·(r1 >> 4)) >> 16 + 2) >> 2`, with the vertical
weights not clamped at the borders (rows are). A float resize differs from
it by one grey level at ~10 % of the pixels; this one is bit-exact with
cv2's vectorised path (x86 SSE/AVX, ARM NEON; its scalar fallback rounds
differently). Every step is a gather, a product or a `floor` of float32
values below 2**24, hence exact, and exports on every backend (no integer
division or shifts, which ONNX and jax2onnx handle poorly).
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


def _cv2_taps(in_size, out_size, clamp):
    """Per output pixel: source indices (i0, i1) and fixed-point weights (w0, w1), as OpenCV's `resize`.

    `clamp`: the horizontal pass sets the weight to (2048, 0) at the borders;
    the vertical one keeps the raw fraction and only clamps the rows.
    """
    if isinstance(in_size, int) and isinstance(out_size, int):
        scale = 1.0 / (out_size / in_size)  # cv2's scale_x = 1 / inv_scale_x
        src = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
        low = np.floor(src)
        frac = src - low
        if clamp:
            outside = (low < 0) | (low >= in_size - 1)
            frac = np.where(outside, np.float32(0), frac)
            low = np.clip(low, 0, in_size - 1)
        w0 = np.round((np.float32(1) - frac) * np.float32(2048))
        w1 = np.round(frac * np.float32(2048))
        i0, i1 = np.clip(low, 0, in_size - 1), np.clip(low + 1, 0, in_size - 1)
        return i0.astype(np.int32), i1.astype(np.int32), w0.astype(np.float32), w1.astype(np.float32)
    size = ops.cast(in_size, "float64")
    scale = 1.0 / (ops.cast(out_size, "float64") / size)
    src = ops.cast((ops.cast(ops.arange(0, out_size), "float64") + 0.5) * scale - 0.5, "float32")
    low = ops.floor(src)
    frac = src - low
    last = ops.cast(size, "float32") - 1.0
    if clamp:
        outside = ops.logical_or(low < 0, low >= last)
        frac = ops.where(outside, ops.zeros_like(frac), frac)
        low = ops.clip(low, 0.0, last)
    w0, w1 = ops.round((1.0 - frac) * 2048.0), ops.round(frac * 2048.0)
    i0, i1 = ops.clip(low, 0.0, last), ops.clip(low + 1.0, 0.0, last)
    return ops.cast(i0, "int32"), ops.cast(i1, "int32"), w0, w1


def _gather(x, index, axis):
    shape = (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1)
    # take_along_axis, not take: torch's `take` squeezes the axis, which its ONNX exporter writes as an invalid Squeeze.
    return ops.take_along_axis(x, ops.reshape(ops.convert_to_tensor(index), shape), axis=axis)


def _weights(w, axis):
    return ops.reshape(ops.convert_to_tensor(w, "float32"), (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1))


def _times_weight_shift16(weight, q):
    """`floor(weight · q / 2**16)` exactly in float32, for weight ≤ 2048 and q < 2**15.

    The product can exceed 2**24 (float32's exact integers), so the weight is
    split in bytes: every partial value stays below 2**24.
    """
    high = ops.floor(weight / 256.0)
    low = weight - high * 256.0
    partial = high * q
    carried = ops.floor(partial / 256.0)
    return carried + ops.floor(((partial - carried * 256.0) * 256.0 + low * q) / 65536.0)


def resize_like_cv2(x, in_size, out_size):
    """(B, H, W, C) float32 integer pixels → `cv2.resize(..., INTER_LINEAR)` of their uint8 image.

    Args:
        in_size, out_size: (H, W) and (H', W'), ints or scalar tensors.
    """
    x0, x1, a0, a1 = _cv2_taps(in_size[1], out_size[1], clamp=True)
    rows = _gather(x, x0, 2) * _weights(a0, 2) + _gather(x, x1, 2) * _weights(a1, 2)
    y0, y1, b0, b1 = _cv2_taps(in_size[0], out_size[0], clamp=False)
    upper = ops.floor(_gather(rows, y0, 1) / 16.0)
    lower = ops.floor(_gather(rows, y1, 1) / 16.0)
    total = _times_weight_shift16(_weights(b0, 1), upper) + _times_weight_shift16(_weights(b1, 1), lower)
    return ops.clip(ops.floor((total + 2.0) / 4.0), 0.0, 255.0)


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
        x = resize_like_cv2(x, (height, width), (new_h, new_w))
    if flip_channels:
        x = ops.flip(x, axis=-1)
    target_h, target_w = image_size
    x = ops.pad(x, [[0, 0], [0, target_h - new_h], [0, target_w - new_w], [0, 0]], constant_values=pad_value)
    # A dynamic pad leaves the spatial sizes unknown to the tracer; they are the static target.
    x = ops.reshape(x, (-1, target_h, target_w, 3))
    factors = ops.stack([ops.convert_to_tensor(w_scale, "float32"), ops.convert_to_tensor(h_scale, "float32")])
    return x, ops.zeros_like(x[:, 0, 0, :2]) + factors
