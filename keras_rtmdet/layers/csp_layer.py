"""CSPNeXt blocks: channel attention, the CSPNeXt bottleneck and the CSP layer."""

import keras
from keras import ops

from keras_rtmdet.layers.conv_module import BN_EPSILON
from keras_rtmdet.layers.conv_module import BN_MOMENTUM
from keras_rtmdet.layers.conv_module import BatchNormBlock
from keras_rtmdet.layers.conv_module import ConvModule
from keras_rtmdet.layers.conv_module import DepthwiseSeparableConvModule
from keras_rtmdet.ops.reductions import spatial_mean


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class ChannelAttention(keras.layers.Layer):
    """Squeeze-excite style gate: `x * hard_sigmoid(fc(mean_hw(x)))`.

    The gate is computed in float32 (the reference disables autocast there).
    Hard sigmoid is PyTorch's: `clip(x / 6 + 1 / 2, 0, 1)`. The mean is a `spatial_mean`
    (TensorFlow's one-step mean over H·W loses RTMDet-x's parity at 640²).

    Input and output: (batch, H, W, C).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.fc = keras.layers.Conv2D(channels, 1, use_bias=True, dtype="float32", name="fc")
        self.fc.build((None, 1, 1, channels))

    def call(self, x):
        pooled = spatial_mean(ops.cast(x, "float32"))
        gate = ops.clip(self.fc(pooled) / 6.0 + 0.5, 0.0, 1.0)
        return x * ops.cast(gate, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class CSPNeXtBlock(BatchNormBlock):
    """3×3 ConvModule → depthwise-separable 5×5, with an optional residual.

    Input and output: (batch, H, W, filters). The residual is added only when
    `add_identity` is set and the input already has `filters` channels.
    """

    def __init__(
        self,
        filters,
        add_identity=True,
        kernel_size=5,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, **kwargs)
        self.filters = filters
        self.add_identity = add_identity
        self.kernel_size = kernel_size
        bn = self.bn_kwargs()
        self.conv1 = ConvModule(filters, 3, name="conv1", **bn)
        self.conv2 = DepthwiseSeparableConvModule(filters, kernel_size, name="conv2", **bn)
        self._residual = False

    def build(self, input_shape):
        self._residual = self.add_identity and input_shape[-1] == self.filters
        self.conv1.build(input_shape)
        mid = self.conv1.compute_output_shape(input_shape)
        self.conv2.build(mid)

    def call(self, x, training=None):
        out = self.conv2(self.conv1(x, training=training), training=training)
        return out + x if self._residual else out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "add_identity": self.add_identity,
                "kernel_size": self.kernel_size,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class CSPLayer(BatchNormBlock):
    """Cross-stage-partial layer with CSPNeXt blocks.

    `main_conv` (1×1) feeds `num_blocks` CSPNeXt blocks; `short_conv` (1×1)
    is the bypass; the two are concatenated main-first, optionally gated by
    channel attention, and fused by `final_conv` (1×1).

    Input: (batch, H, W, C_in). Output: (batch, H, W, filters).
    """

    def __init__(
        self,
        filters,
        num_blocks=1,
        add_identity=True,
        channel_attention=False,
        expand_ratio=0.5,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, **kwargs)
        self.filters = filters
        self.num_blocks = num_blocks
        self.add_identity = add_identity
        self.channel_attention = channel_attention
        self.expand_ratio = expand_ratio
        mid = int(filters * expand_ratio)
        bn = self.bn_kwargs()
        self.main_conv = ConvModule(mid, 1, name="main_conv", **bn)
        self.short_conv = ConvModule(mid, 1, name="short_conv", **bn)
        self.blocks = [
            CSPNeXtBlock(mid, add_identity=add_identity, name=f"blocks-{i}", **bn)
            for i in range(num_blocks)
        ]
        self.attention = ChannelAttention(name="attention") if channel_attention else None
        self.final_conv = ConvModule(filters, 1, name="final_conv", **bn)

    def build(self, input_shape):
        self.main_conv.build(input_shape)
        self.short_conv.build(input_shape)
        mid_shape = self.main_conv.compute_output_shape(input_shape)
        for block in self.blocks:
            block.build(mid_shape)
        cat_shape = tuple(mid_shape[:-1]) + (2 * mid_shape[-1],)
        if self.attention is not None:
            self.attention.build(cat_shape)
        self.final_conv.build(cat_shape)

    def call(self, x, training=None):
        main = self.main_conv(x, training=training)
        for block in self.blocks:
            main = block(main, training=training)
        short = self.short_conv(x, training=training)
        out = ops.concatenate([main, short], axis=-1)
        if self.attention is not None:
            out = self.attention(out)
        return self.final_conv(out, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "num_blocks": self.num_blocks,
                "add_identity": self.add_identity,
                "channel_attention": self.channel_attention,
                "expand_ratio": self.expand_ratio,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class SPPBottleneck(BatchNormBlock):
    """Spatial pyramid pooling: 1×1 conv, parallel stride-1 max pools, 1×1 conv.

    `concat([x, pool5(x), pool9(x), pool13(x)])` in that order (kernels from
    `pool_sizes`). Pools pad with −inf like PyTorch's, which Keras' `"same"`
    max pooling also does.

    Input: (batch, H, W, C_in). Output: (batch, H, W, filters).
    """

    def __init__(
        self,
        filters,
        pool_sizes=(5, 9, 13),
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, **kwargs)
        self.filters = filters
        self.pool_sizes = tuple(pool_sizes)
        self._bn = self.bn_kwargs()
        self.conv1 = None
        self.conv2 = ConvModule(filters, 1, name="conv2", **self._bn)
        self.pools = [
            keras.layers.MaxPooling2D(k, strides=1, padding="same", name=f"pool{k}")
            for k in self.pool_sizes
        ]

    def build(self, input_shape):
        mid = input_shape[-1] // 2
        self.conv1 = ConvModule(mid, 1, name="conv1", **self._bn)
        self.conv1.build(input_shape)
        mid_shape = self.conv1.compute_output_shape(input_shape)
        cat_shape = tuple(mid_shape[:-1]) + (mid * (1 + len(self.pool_sizes)),)
        self.conv2.build(cat_shape)

    def call(self, x, training=None):
        x = self.conv1(x, training=training)
        x = ops.concatenate([x] + [pool(x) for pool in self.pools], axis=-1)
        return self.conv2(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "pool_sizes": list(self.pool_sizes),
            }
        )
        return config
