"""MaskFeatModule: the prototype (mask feature) branch of RTMDet-Ins."""

import keras
from keras import ops

from keras_rtmdet.layers.conv_module import BN_EPSILON
from keras_rtmdet.layers.conv_module import BN_MOMENTUM
from keras_rtmdet.layers.conv_module import BatchNormBlock
from keras_rtmdet.layers.conv_module import ConvModule
from keras_rtmdet.models.rtmdet.rtmdet_head import head_kernel_initializer
from keras_rtmdet.ops.upsample import upsample_bilinear


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class MaskFeatModule(BatchNormBlock):
    """Mask prototypes from the neck outputs, at the finest level's resolution.

    The coarser levels (level l is 2**l times coarser) are upsampled
    bilinearly (half-pixel centres, as PyTorch's `align_corners=False`) to
    the finest level's size and
    concatenated after it; `fusion_conv` (1×1 with bias, no norm or
    activation) brings the `num_levels · in_channels` channels to
    `feat_channels`; `stacked_convs` 3×3 conv-BN-SiLU blocks follow, then
    `projection` (1×1 with bias, no activation) to `num_prototypes`.

    Args:
        in_channels: channels of every input level.
        feat_channels: channels inside the module.
        stacked_convs: number of 3×3 blocks (reference: 4).
        num_levels: number of input levels (reference: 3).
        num_prototypes: output channels (reference: 8).
        bn_epsilon, bn_momentum: BatchNorm settings.

    Input: list of (batch, H_l, W_l, in_channels), finest first.
    Output: (batch, H_0, W_0, num_prototypes).
    """

    def __init__(
        self,
        in_channels=256,
        feat_channels=256,
        stacked_convs=4,
        num_levels=3,
        num_prototypes=8,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, **kwargs)
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.num_levels = num_levels
        self.num_prototypes = num_prototypes
        self.fusion_conv = keras.layers.Conv2D(
            feat_channels,
            1,
            kernel_initializer=head_kernel_initializer(),
            dtype=self.dtype_policy,
            name="fusion_conv",
        )
        self.convs = [
            ConvModule(feat_channels, 3, **self.bn_kwargs(), name=f"stacked_convs-{i}")
            for i in range(stacked_convs)
        ]
        # mmdet's head init draws every Conv2d of the head from N(0, 0.01), these too.
        for conv in self.convs:
            conv.conv.kernel_initializer = head_kernel_initializer()
        self.projection = keras.layers.Conv2D(
            num_prototypes,
            1,
            kernel_initializer=head_kernel_initializer(),
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, input_shape):
        if len(input_shape) != self.num_levels:
            raise ValueError(f"MaskFeatModule expects {self.num_levels} levels, got {len(input_shape)}.")
        spatial = tuple(input_shape[0][:-1])
        self.fusion_conv.build(spatial + (self.num_levels * self.in_channels,))
        for conv in self.convs:
            conv.build(spatial + (self.feat_channels,))
        self.projection.build(spatial + (self.feat_channels,))

    def call(self, features, training=None):
        # Level l is 2**l times coarser; the exact ratio holds for inputs that are
        # multiples of the largest stride, where this equals mmdet's resize to size.
        fused = [features[0]] + [upsample_bilinear(level, 2**l) for l, level in enumerate(features) if l > 0]
        x = self.fusion_conv(ops.concatenate(fused, axis=-1))
        for conv in self.convs:
            x = conv(x, training=training)
        return self.projection(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (self.num_prototypes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": self.in_channels,
                "feat_channels": self.feat_channels,
                "stacked_convs": self.stacked_convs,
                "num_levels": self.num_levels,
                "num_prototypes": self.num_prototypes,
            }
        )
        return config
