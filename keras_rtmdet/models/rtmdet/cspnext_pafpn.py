"""CSPNeXtPAFPN, the path-aggregation neck of RTMDet."""

import keras
from keras import ops

from keras_rtmdet.layers.conv_module import BN_EPSILON
from keras_rtmdet.layers.conv_module import BN_MOMENTUM
from keras_rtmdet.layers.conv_module import BatchNormBlock
from keras_rtmdet.layers.conv_module import ConvModule
from keras_rtmdet.layers.csp_layer import CSPLayer


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class CSPNeXtPAFPN(BatchNormBlock):
    """Top-down then bottom-up feature fusion over the backbone's C3..Cn.

    The *reduced* top-down tensors (not the raw inputs) are the laterals of
    the bottom-up path, and every concat is `[resampled, lateral]`, as mmdet.

    Args:
        in_channels: channels of the input levels, finest first.
        out_channels: channels of every output level.
        num_csp_blocks: CSPNeXt blocks per CSP layer (not depth-scaled).
        expand_ratio: CSP hidden-channel ratio.
        bn_epsilon, bn_momentum: BatchNorm settings.

    Input: list of (batch, H_l, W_l, in_channels[l]), strides doubling.
    Output: list of (batch, H_l, W_l, out_channels), same strides.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        num_csp_blocks=3,
        expand_ratio=0.5,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, **kwargs)
        self.in_channels = tuple(in_channels)
        self.out_channels = out_channels
        self.num_csp_blocks = num_csp_blocks
        self.expand_ratio = expand_ratio
        bn = self.bn_kwargs()
        csp = dict(num_blocks=num_csp_blocks, add_identity=False, expand_ratio=expand_ratio, **bn)
        n = len(self.in_channels)
        self.reduce_layers = []
        self.top_down_blocks = []
        for idx in range(n - 1, 0, -1):
            k = n - 1 - idx
            self.reduce_layers.append(
                ConvModule(self.in_channels[idx - 1], 1, name=f"reduce_layers-{k}", **bn)
            )
            self.top_down_blocks.append(
                CSPLayer(self.in_channels[idx - 1], name=f"top_down_blocks-{k}", **csp)
            )
        self.downsamples = []
        self.bottom_up_blocks = []
        for idx in range(n - 1):
            self.downsamples.append(
                ConvModule(self.in_channels[idx], 3, strides=2, name=f"downsamples-{idx}", **bn)
            )
            self.bottom_up_blocks.append(
                CSPLayer(self.in_channels[idx + 1], name=f"bottom_up_blocks-{idx}", **csp)
            )
        self.out_convs = [
            ConvModule(out_channels, 3, name=f"out_convs-{i}", **bn) for i in range(n)
        ]

    def build(self, input_shape):
        def shape(channels):
            return (None, None, None, channels)

        ch = self.in_channels
        n = len(ch)
        for k, idx in enumerate(range(n - 1, 0, -1)):
            self.reduce_layers[k].build(shape(ch[idx]))
            self.top_down_blocks[k].build(shape(2 * ch[idx - 1]))
        for idx in range(n - 1):
            self.downsamples[idx].build(shape(ch[idx]))
            self.bottom_up_blocks[idx].build(shape(2 * ch[idx]))
        for conv, c in zip(self.out_convs, ch):
            conv.build(shape(c))

    def _upsample(self, x):
        return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)

    def call(self, inputs, training=None):
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f"CSPNeXtPAFPN expects {len(self.in_channels)} feature maps, got {len(inputs)}."
            )
        n = len(inputs)
        inner = [inputs[-1]]
        for k, idx in enumerate(range(n - 1, 0, -1)):
            high = self.reduce_layers[k](inner[0], training=training)
            inner[0] = high
            merged = ops.concatenate([self._upsample(high), inputs[idx - 1]], axis=-1)
            inner.insert(0, self.top_down_blocks[k](merged, training=training))
        outs = [inner[0]]
        for idx in range(n - 1):
            down = self.downsamples[idx](outs[-1], training=training)
            merged = ops.concatenate([down, inner[idx + 1]], axis=-1)
            outs.append(self.bottom_up_blocks[idx](merged, training=training))
        return [conv(x, training=training) for conv, x in zip(self.out_convs, outs)]

    def compute_output_shape(self, input_shape):
        return [tuple(s[:-1]) + (self.out_channels,) for s in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": list(self.in_channels),
                "out_channels": self.out_channels,
                "num_csp_blocks": self.num_csp_blocks,
                "expand_ratio": self.expand_ratio,
            }
        )
        return config
