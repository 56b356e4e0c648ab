"""Conv followed by BatchNorm, computed at inference as one convolution with a folded kernel and bias.

At inference BatchNorm is an affine map per channel, ``y = (z - moving_mean) * scale + beta`` with
``scale = gamma / sqrt(moving_variance + epsilon)``; on ``z = conv(x, kernel)`` it folds into the conv:
``y = conv(x, kernel * scale) + (beta - moving_mean * scale)``. One convolution and one bias add replace a
convolution and BatchNorm's four elementwise passes over the feature map (subtract, multiply, multiply,
add) where nothing fuses them: TensorFlow graphs without XLA and torch eager (rtmdet_tiny at 640×640 on
CPU: 6-8 % faster). XLA already fuses BatchNorm into one pass after the conv, so under JAX it gains
nothing. The result is mathematically equal; in float32 it differs by float rounding only (~1e-6 relative).

The folded weights are computed on every call from the variables (in float32, then cast to the conv's
compute dtype, so mixed precision policies keep working), so they always follow the current weights;
the conv's and BatchNorm's variables and configs are unchanged (weights files and checkpoint conversion
are the same with or without folding). Training (``training`` truthy) runs the conv, then BatchNorm with
its batch statistics, exactly as without folding.

`batch_norm_folding(False)` turns folding off, e.g. to compare against the unfolded graph. The switch is
read when a call is traced: a compiled function (`jax.jit`, `tf.function`, a model's compiled predict
step, an exported artifact) keeps the setting it was traced with, and the switch is not part of any
trace cache's key (`jax.jit` of the same Python function again reuses the trace made under the other setting).
"""

import contextlib

import keras
from keras import ops

_folding_enabled = True


def batch_norm_folding_enabled():
    """Whether conv → BatchNorm pairs traced now at inference are folded into one conv (default True)."""
    return _folding_enabled


@contextlib.contextmanager
def batch_norm_folding(enabled):
    """Context manager: fold conv → BatchNorm at inference (`enabled=True`) or not, in what is traced inside."""
    global _folding_enabled
    previous = _folding_enabled
    _folding_enabled = bool(enabled)
    try:
        yield
    finally:
        _folding_enabled = previous


def folded_conv_weights(conv, norm):
    """(kernel, bias) of the one convolution equal to `norm(conv(x), training=False)`.

    Args:
        conv: a built `keras.layers.Conv2D` or `keras.layers.DepthwiseConv2D`, channels last.
        norm: a built `keras.layers.BatchNormalization` on the conv's output channels.

    Returns: the kernel (the conv's kernel shape) and the bias (output channels,), in the conv's
    compute dtype.
    """
    # Under a mixed policy the enclosing layer hands out the kernel already rounded to the compute
    # dtype (Keras has no public way to read it in full precision there): the folded kernel is rounded
    # once more, which the mixed-precision tests bound.
    kernel = ops.cast(conv.kernel, "float32")
    conv_bias = ops.cast(conv.bias, "float32") if conv.use_bias else 0.0
    moving_mean = ops.cast(norm.moving_mean, "float32")
    scale = ops.rsqrt(ops.cast(norm.moving_variance, "float32") + norm.epsilon)
    if norm.scale:
        scale = scale * ops.cast(norm.gamma, "float32")
    bias = (conv_bias - moving_mean) * scale
    if norm.center:
        bias = bias + ops.cast(norm.beta, "float32")
    # Output channel o of a Conv2D is the kernel's last axis; of a DepthwiseConv2D with kernel
    # (kh, kw, C, M) it is c * M + m, so the scale reshaped to (C, M) lines up with the kernel's last two axes.
    scale_shape = (1, 1) + tuple(kernel.shape[2:]) if isinstance(conv, keras.layers.DepthwiseConv2D) else (-1,)
    kernel = kernel * ops.reshape(scale, scale_shape)
    return ops.cast(kernel, conv.compute_dtype), ops.cast(bias, conv.compute_dtype)


def conv_then_batch_norm(x, conv, norm, training=None):
    """`norm(conv(x), training=training)`, as one folded convolution at inference while folding is enabled.

    Args:
        x: the conv's input (batch, H, W, C_in), in the conv's compute dtype.
        conv, norm: as for `folded_conv_weights`.
        training: the mode; truthy runs the conv and then BatchNorm in training mode, unchanged.
    """
    if training or not batch_norm_folding_enabled():
        return norm(conv(x), training=training)
    kernel, bias = folded_conv_weights(conv, norm)
    conv_op = ops.depthwise_conv if isinstance(conv, keras.layers.DepthwiseConv2D) else ops.conv
    outputs = conv_op(
        x,
        kernel,
        strides=conv.strides,
        padding=conv.padding,
        data_format=conv.data_format,
        dilation_rate=conv.dilation_rate,
    )
    return ops.add(outputs, bias)
