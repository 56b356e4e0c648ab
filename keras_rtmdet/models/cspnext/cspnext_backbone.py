"""CSPNeXt, the backbone of RTMDet (MMDetection's `CSPNeXt`)."""

import keras

from keras_rtmdet.layers.conv_module import BN_EPSILON
from keras_rtmdet.layers.conv_module import BN_MOMENTUM
from keras_rtmdet.layers.conv_module import ConvModule
from keras_rtmdet.layers.csp_layer import CSPLayer
from keras_rtmdet.layers.csp_layer import SPPBottleneck

# One row per stage: in_channels, out_channels, num_blocks, add_identity,
# use_spp, before widen/deepen scaling (mmdet's `arch_settings`).
ARCH_SETTINGS = {
    "P5": [
        [64, 128, 3, True, False],
        [128, 256, 6, True, False],
        [256, 512, 6, True, False],
        [512, 1024, 3, False, True],
    ],
    "P6": [
        [64, 128, 3, True, False],
        [128, 256, 6, True, False],
        [256, 512, 6, True, False],
        [512, 768, 3, True, False],
        [768, 1024, 3, False, True],
    ],
}


def scaled_blocks(num_blocks, deepen_factor):
    """`max(round(n·d), 1)` with Python's half-to-even `round`, as mmdet."""
    return max(round(num_blocks * deepen_factor), 1)


def stage_channels(arch, widen_factor):
    """Output channels of the stem and of every stage, after width scaling."""
    stem = int(ARCH_SETTINGS[arch][0][0] * widen_factor)
    return [stem] + [int(row[1] * widen_factor) for row in ARCH_SETTINGS[arch]]


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class CSPNeXt(keras.Model):
    """CSPNeXt backbone: a 3-conv stem, then stages of stride-2 conv + CSP layer.

    Args:
        arch: `"P5"` (4 stages, outputs at strides 8/16/32) or `"P6"`
            (5 stages, up to stride 64).
        deepen_factor: float, block-count multiplier (tiny 0.167, s 0.33,
            m 0.67, l 1.0, x 1.33).
        widen_factor: float, channel multiplier (tiny 0.375, s 0.5, m 0.75,
            l 1.0, x 1.25).
        out_indices: which outputs to return; 0 is the stem, i the i-th stage.
        expand_ratio: CSP hidden-channel ratio (0.5).
        channel_attention: gate each CSP layer with channel attention.
        spp_pool_sizes: kernels of the SPP bottleneck in the last stage.
        bn_epsilon, bn_momentum: BatchNorm settings (1e-5, 0.9).
        image_shape: input shape without the batch, (None, None, 3) for any size.

    Input: (batch, H, W, 3) normalised BGR images. Output: a list of feature
    maps (batch, H/s, W/s, C_s) for the `out_indices`; also exposed as the
    dict `pyramid_outputs` (`"P3"` = stride 8, ...).

    Example:
    >>> backbone = CSPNeXt(deepen_factor=0.33, widen_factor=0.5)
    >>> [f.shape for f in backbone(np.zeros((1, 640, 640, 3)))]
    [(1, 80, 80, 128), (1, 40, 40, 256), (1, 20, 20, 512)]
    """

    def __init__(
        self,
        arch="P5",
        deepen_factor=1.0,
        widen_factor=1.0,
        out_indices=(2, 3, 4),
        expand_ratio=0.5,
        channel_attention=True,
        spp_pool_sizes=(5, 9, 13),
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        image_shape=(None, None, 3),
        dtype=None,
        **kwargs,
    ):
        if arch not in ARCH_SETTINGS:
            raise ValueError(f"Unknown CSPNeXt arch {arch!r}; choose one of {sorted(ARCH_SETTINGS)}.")
        num_outputs = len(ARCH_SETTINGS[arch]) + 1
        if not out_indices or any(i < 0 or i >= num_outputs for i in out_indices):
            raise ValueError(
                f"out_indices {tuple(out_indices)} must lie in [0, {num_outputs - 1}] for arch {arch}."
            )
        # === Layers ===
        bn = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, dtype=dtype)
        stem_channels = int(ARCH_SETTINGS[arch][0][0] * widen_factor)
        image_input = keras.Input(shape=image_shape, name="images")
        x = ConvModule(stem_channels // 2, 3, strides=2, name="stem-0", **bn)(image_input)
        x = ConvModule(stem_channels // 2, 3, name="stem-1", **bn)(x)
        x = ConvModule(stem_channels, 3, name="stem-2", **bn)(x)
        outputs = [x]
        for i, (_, out_ch, blocks, add_identity, use_spp) in enumerate(ARCH_SETTINGS[arch]):
            out_ch = int(out_ch * widen_factor)
            stage = f"stage{i + 1}"
            x = ConvModule(out_ch, 3, strides=2, name=f"{stage}-0", **bn)(x)
            index = 1
            if use_spp:
                x = SPPBottleneck(out_ch, spp_pool_sizes, name=f"{stage}-1", **bn)(x)
                index = 2
            x = CSPLayer(
                out_ch,
                num_blocks=scaled_blocks(blocks, deepen_factor),
                add_identity=add_identity,
                channel_attention=channel_attention,
                expand_ratio=expand_ratio,
                name=f"{stage}-{index}",
                **bn,
            )(x)
            outputs.append(x)
        selected = [outputs[i] for i in out_indices]

        # === Functional Model ===
        super().__init__(inputs=image_input, outputs=selected, dtype=dtype, **kwargs)

        # === Config ===
        self.arch = arch
        self.deepen_factor = deepen_factor
        self.widen_factor = widen_factor
        self.out_indices = tuple(out_indices)
        self.expand_ratio = expand_ratio
        self.channel_attention = channel_attention
        self.spp_pool_sizes = tuple(spp_pool_sizes)
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.image_shape = tuple(image_shape)
        self.strides = tuple(2 ** (i + 1) for i in out_indices)
        self.out_channels = tuple(stage_channels(arch, widen_factor)[i] for i in out_indices)
        self.pyramid_outputs = {f"P{i + 1}": out for i, out in zip(out_indices, selected)}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "arch": self.arch,
            "deepen_factor": self.deepen_factor,
            "widen_factor": self.widen_factor,
            "out_indices": list(self.out_indices),
            "expand_ratio": self.expand_ratio,
            "channel_attention": self.channel_attention,
            "spp_pool_sizes": list(self.spp_pool_sizes),
            "bn_epsilon": self.bn_epsilon,
            "bn_momentum": self.bn_momentum,
            "image_shape": list(self.image_shape),
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
