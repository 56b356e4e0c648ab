"""YOLOX HSV colour jitter with OpenCV's uint8 HSV convention, in TF ops.

`tf.image.rgb_to_hsv` works on floats in [0, 1]; the reference jitters the
uint8 HSV image of `cv2.cvtColor` (H in [0, 180), S and V in [0, 255]) and
the integer rounding matters, so both conversions are written out here the
way OpenCV computes them.
"""

import tensorflow as tf

from keras_rtmdet.data.transforms.random_ops import split_seed, uniform

# OpenCV's RGB2HSV_b fixed-point tables: hdiv[d] = round((180 << 12) / (6 d)),
# sdiv[v] = round((255 << 12) / v), hsv_shift = 12.
_HSV_SHIFT = 12
_HALF = 1 << (_HSV_SHIFT - 1)


def _rounded_quotient(numerator, divisor):
    """round(numerator / max(divisor, 1)) as int32 for int32 divisors in 0..255."""
    quotient = numerator / tf.cast(tf.maximum(divisor, 1), tf.float32)
    return tf.cast(tf.round(quotient), tf.int32)


def rgb_to_hsv_uint8(image):
    """(..., 3) uint8 RGB -> (..., 3) int32 HSV, H in [0, 180), bit-exact with
    `cv2.cvtColor(image, cv2.COLOR_RGB2HSV)`."""
    return tf.stack(_rgb_to_hsv_channels(image), axis=-1)


def _rgb_to_hsv_channels(image):
    """`rgb_to_hsv_uint8` as three int32 channels (h, s, v)."""
    r, g, b = (tf.cast(c, tf.int32) for c in tf.unstack(image, 3, axis=-1))
    v = tf.maximum(tf.maximum(r, g), b)
    diff = v - tf.minimum(tf.minimum(r, g), b)
    # round((255 << 12) / v) and round((180 << 12) / (6 diff)): float32 division gives the
    # same integers as OpenCV's float64 tables for every divisor 1..255 (checked
    # exhaustively; faster than a table gather). A zero divisor only meets a zero
    # numerator below (diff = 0, then h = 0), so its value does not matter.
    sdiv = _rounded_quotient(1044480.0, v)
    hdiv = _rounded_quotient(122880.0, diff)
    s = tf.bitwise.right_shift(diff * sdiv + _HALF, _HSV_SHIFT)
    # OpenCV tests v == r first, then v == g.
    h = tf.where(v == r, g - b, tf.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = tf.bitwise.right_shift(h * hdiv + _HALF, _HSV_SHIFT)
    h = tf.where(h < 0, h + 180, h)
    return h, s, v


# Which of (v, v(1-s), v(1-s·f), v(1-s(1-f))) is R, G, B in each of the 6 hue sectors (OpenCV's sector_data).
_SECTOR_R = (0, 2, 1, 1, 3, 0)
_SECTOR_G = (3, 0, 0, 2, 1, 1)
_SECTOR_B = (1, 1, 3, 0, 0, 2)


def hsv_uint8_to_rgb(hsv):
    """(..., 3) int HSV (H in [0, 180), S, V in [0, 255]) -> uint8 RGB, as
    `cv2.cvtColor(hsv.astype(uint8), cv2.COLOR_HSV2RGB)`.

    This is OpenCV's scalar float path; its SIMD path (used on wide rows)
    rounds differently and differs from it, and from this, by one level on
    about a third of the pixels.
    """
    return _hsv_channels_to_rgb(*tf.unstack(hsv, 3, axis=-1))


def _hsv_channels_to_rgb(h, s, v, hue_in_range=False):
    """`hsv_uint8_to_rgb` of three int channels. `hue_in_range`: h is known to be in
    [0, 180), so the wrap-around steps are no-ops and are skipped."""
    h = tf.cast(h, tf.float32) * (6.0 / 180.0)
    s = tf.cast(s, tf.float32) * (1.0 / 255.0)
    v = tf.cast(v, tf.float32) * (1.0 / 255.0)
    if hue_in_range:
        # h·6/180 < 6 for h <= 179: floormod is the identity and every sector is valid.
        sector = tf.cast(h, tf.int32)
        f = h - tf.cast(sector, tf.float32)
    else:
        h = tf.math.floormod(h, 6.0)
        sector = tf.cast(tf.floor(h), tf.int32)
        in_range = (sector >= 0) & (sector < 6)
        sector = tf.where(in_range, sector, 0)
        f = tf.where(in_range, h - tf.cast(sector, tf.float32), 0.0)
    # With s == 0 (grey), p, q and t are exactly v: no separate case needed.
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    is_sector = [sector == k for k in range(5)]

    def channel(sector_map):
        # Select v, p, q or t (indices 0..3) per sector as `sector_map` says (elementwise, no gathers).
        values = (v, p, q, t)
        out = values[sector_map[5]]
        for k in range(5):
            out = tf.where(is_sector[k], values[sector_map[k]], out)
        return tf.cast(tf.clip_by_value(tf.round(out * 255.0), 0.0, 255.0), tf.uint8)

    return tf.stack([channel(_SECTOR_R), channel(_SECTOR_G), channel(_SECTOR_B)], axis=-1)


def apply_hsv_gains(image, gains):
    """Shift a uint8 RGB image by integer HSV `gains` (3,): H mod 180, S and V clipped."""
    h, s, v = _rgb_to_hsv_channels(image)
    gains = tf.cast(gains, tf.int32)
    h = tf.math.floormod(h + gains[0], 180)
    s = tf.clip_by_value(s + gains[1], 0, 255)
    v = tf.clip_by_value(v + gains[2], 0, 255)
    return _hsv_channels_to_rgb(h, s, v, hue_in_range=True)


def hsv_gains(hue=5, saturation=30, value=30, seed=None):
    """U(-1, 1)^3 · [hue, saturation, value] · Bernoulli(0.5)^3, truncated to int (numpy int16 cast)."""
    seed_u, seed_b = split_seed(seed, 2)
    gains = uniform(seed_u, (3,), -1.0, 1.0) * tf.constant([hue, saturation, value], tf.float32)
    gains *= tf.cast(uniform(seed_b, (3,), 0, 2, tf.int32), tf.float32)
    return tf.cast(gains, tf.int32)


def yolox_hsv(sample, hue=5, saturation=30, value=30, seed=None):
    """mmdet `YOLOXHSVRandomAug`: random HSV gains on the image; boxes untouched."""
    out = dict(sample)
    out["image"] = apply_hsv_gains(sample["image"], hsv_gains(hue, saturation, value, seed))
    return out
