"""Means over large feature-map axes that are accurate on every backend.

TensorFlow's CPU kernel for a reduction over non-innermost axes of an NHWC
tensor (a "column" reduction: H·W values per channel) is an order of magnitude
less accurate in float32 than torch's and XLA's: 1.8e-6 against 1.4e-7
relative for the mean of a 160² map. Through the CSPNeXt stages' channel
attention that error grew to 4e-4 of the neck outputs of RTMDet-x (issue 18).
Reducing one axis at a time keeps each partial sum short, which brings
TensorFlow to 2e-7; it is plain `keras.ops`, so it exports as a chain of
ReduceMeans. torch and XLA are as accurate in one step, and faster.
"""

import keras
from keras import ops


def staged_mean(x, axes, keepdims=False):
    """The mean of `x` over `axes`, reduced one axis at a time (last axis first).

    Args:
        x: a tensor.
        axes: the axes to reduce (ints, negative allowed).
        keepdims: keep the reduced axes with size 1.
    Returns: the mean, of `x`'s dtype; equal to `ops.mean(x, axis=axes)` up to
    float rounding (every stage averages equal-sized groups).
    """
    rank = len(x.shape)
    for axis in sorted({a % rank for a in axes}, reverse=True):
        x = ops.mean(x, axis=axis, keepdims=True)
    if not keepdims:
        x = ops.squeeze(x, axis=tuple(sorted({a % rank for a in axes})))
    return x


def accurate_mean(x, axes, keepdims=False):
    """`ops.mean(x, axis=axes)`, staged on TensorFlow (`staged_mean`), in one step elsewhere."""
    if keras.config.backend() == "tensorflow":
        return staged_mean(x, axes, keepdims=keepdims)
    return ops.mean(x, axis=tuple(axes), keepdims=keepdims)


def spatial_mean(x, keepdims=True):
    """The per-channel mean of an NHWC map, (B, H, W, C) → (B, 1, 1, C) (or (B, C))."""
    return accurate_mean(x, (1, 2), keepdims=keepdims)
