"""Convolution blocks of the RTMDet family, laid out like mmcv's `ConvModule`.

Every block is NHWC. Convolutions with a stride above one pad explicitly and
symmetrically (`k // 2` on every side) the way PyTorch does, because Keras'
`"same"` padding is asymmetric for even inputs and shifts the output by one
pixel against the reference weights.
"""

import keras
from keras import ops

from keras_rtmdet.layers.batch_norm_folding import conv_then_batch_norm
from keras_rtmdet.layers.sync_batch_normalization import SyncBatchNormalization

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


class BatchNormBlock(keras.layers.Layer):
    """Base of the blocks made of conv-BN units: carries their BatchNorm settings.

    Args:
        bn_epsilon, bn_momentum: BatchNorm settings (Keras momentum, i.e.
            1 − PyTorch momentum). The RTMDet configs give 1e-5 and 0.9.
    """

    def __init__(self, bn_epsilon=BN_EPSILON, bn_momentum=BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum

    def bn_kwargs(self):
        """Keyword arguments that give a sub-block the same settings and dtype."""
        return dict(bn_epsilon=self.bn_epsilon, bn_momentum=self.bn_momentum, dtype=self.dtype_policy)

    def get_config(self):
        config = super().get_config()
        config.update({"bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum})
        return config


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class ConvModule(BatchNormBlock):
    """Conv2D (no bias) → BatchNorm → SiLU, as mmcv's `ConvModule`.

    At inference the BatchNorm is folded into the conv (`batch_norm_folding`).

    Args:
        filters: int, output channels.
        kernel_size: int, square kernel size (odd).
        strides: int, the stride.
        groups: int, 1 for a dense conv, or the input channel count for a
            depthwise conv (the only grouped case RTMDet uses).
        activation: `"silu"` or `None`.
        bn_epsilon, bn_momentum: BatchNorm settings (Keras momentum, i.e.
            1 − PyTorch momentum). The RTMDet configs give 1e-5 and 0.9.

    Input: (batch, H, W, C_in). Output: (batch, ceil(H/s), ceil(W/s), filters).
    """

    def __init__(
        self,
        filters,
        kernel_size=1,
        strides=1,
        groups=1,
        activation="silu",
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, **kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.groups = groups
        self.activation = activation
        explicit_pad = strides > 1
        padding = "valid" if explicit_pad else "same"
        self._pad = kernel_size // 2 if explicit_pad else 0
        if groups == 1:
            self.conv = keras.layers.Conv2D(
                filters,
                kernel_size,
                strides=strides,
                padding=padding,
                use_bias=False,
                dtype=self.dtype_policy,
                name="conv",
            )
        else:
            self.conv = keras.layers.DepthwiseConv2D(
                kernel_size,
                strides=strides,
                padding=padding,
                use_bias=False,
                dtype=self.dtype_policy,
                name="conv",
            )
        self.bn = SyncBatchNormalization(
            epsilon=bn_epsilon,
            momentum=bn_momentum,
            dtype=self.dtype_policy,
            name="bn",
        )

    def build(self, input_shape):
        if self.groups not in (1, input_shape[-1]):
            raise ValueError(
                f"ConvModule supports groups=1 or depthwise groups equal to the "
                f"input channels; got groups={self.groups} for "
                f"{input_shape[-1]} input channels."
            )
        if self.groups != 1 and self.filters != input_shape[-1]:
            raise ValueError(
                "A depthwise ConvModule keeps the channel count: filters="
                f"{self.filters} but the input has {input_shape[-1]} channels."
            )
        padded = list(input_shape)
        for axis in (1, 2):
            if padded[axis] is not None:
                padded[axis] += 2 * self._pad
        self.conv.build(tuple(padded))
        out_shape = self.conv.compute_output_shape(tuple(padded))
        self.bn.build(out_shape)

    def call(self, x, training=None):
        if self._pad:
            p = self._pad
            x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        x = conv_then_batch_norm(x, self.conv, self.bn, training)
        if self.activation == "silu":
            x = ops.silu(x)
        elif self.activation is not None:
            raise ValueError(f"Unknown activation {self.activation!r}.")
        return x

    def compute_output_shape(self, input_shape):
        def out(size):
            if size is None:
                return None
            return -(-size // self.strides)

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "groups": self.groups,
                "activation": self.activation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class DepthwiseSeparableConvModule(BatchNormBlock):
    """Depthwise k×k ConvModule then pointwise 1×1 ConvModule, each with BN+SiLU.

    Input: (batch, H, W, C_in). Output: (batch, H/s, W/s, filters).
    """

    def __init__(
        self,
        filters,
        kernel_size=5,
        strides=1,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, **kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.depthwise_conv = None
        self.pointwise_conv = ConvModule(
            filters, 1, name="pointwise_conv", **self.bn_kwargs()
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        self.depthwise_conv = ConvModule(
            channels,
            self.kernel_size,
            strides=self.strides,
            groups=channels,
            name="depthwise_conv",
            **self.bn_kwargs(),
        )
        self.depthwise_conv.build(input_shape)
        mid_shape = self.depthwise_conv.compute_output_shape(input_shape)
        self.pointwise_conv.build(mid_shape)

    def call(self, x, training=None):
        return self.pointwise_conv(self.depthwise_conv(x, training=training), training=training)

    def compute_output_shape(self, input_shape):
        shape = self.pointwise_conv.compute_output_shape(input_shape)
        if self.strides == 1:
            return shape

        def out(size):
            return None if size is None else -(-size // self.strides)

        return (shape[0], out(shape[1]), out(shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
            }
        )
        return config
