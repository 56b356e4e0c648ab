"""RTMDetSepBNHead: convs shared across levels, BatchNorm separate per level."""

import math

import keras
from keras import ops

from keras_rtmdet.layers.batch_norm_folding import conv_then_batch_norm
from keras_rtmdet.layers.conv_module import BN_EPSILON
from keras_rtmdet.layers.conv_module import BN_MOMENTUM
from keras_rtmdet.layers.conv_module import BatchNormBlock
from keras_rtmdet.layers.sync_batch_normalization import SyncBatchNormalization
from keras_rtmdet.utils.input_checks import check_num_classes

# Bias of the class logits at initialisation: sigmoid(b) = 0.01.
PRIOR_PROB = 0.01
CLS_PRIOR_BIAS = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)


def head_kernel_initializer():
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.01)


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class RTMDetSepBNHead(BatchNormBlock):
    """The RTMDet detection head.

    Per level: a classification tower and a regression tower of
    `stacked_convs` 3×3 conv-BN-SiLU blocks each, then 1×1 predictors
    `rtm_cls` (class logits) and `rtm_reg` (box distances). The 3×3 conv
    kernels are shared by all levels; the BatchNorms and the 1×1 predictors
    are per level.

    Args:
        num_classes: a positive integer.
        in_channels: channels of every input level.
        feat_channels: channels inside the towers.
        stacked_convs: 3×3 blocks per tower.
        strides: stride of every level, finest first.
        exp_on_reg: distances are `exp(conv) * stride` if True, else
            `conv * stride` (official det tiny/s: False; m/l/x: True).
        pred_kernel_size: kernel of the 1×1 predictors.
        bn_epsilon, bn_momentum: BatchNorm settings.

    Input: list of (batch, H_l, W_l, in_channels).
    Output: dict with `"cls_scores"`: list of (batch, H_l, W_l, num_classes)
    logits, and `"bbox_preds"`: list of (batch, H_l, W_l, 4) distances
    (left, top, right, bottom) in input pixels.
    """

    def __init__(
        self,
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        stacked_convs=2,
        strides=(8, 16, 32),
        exp_on_reg=False,
        pred_kernel_size=1,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        num_classes = check_num_classes(num_classes)
        super().__init__(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, **kwargs)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = tuple(strides)
        self.exp_on_reg = exp_on_reg
        self.pred_kernel_size = pred_kernel_size
        self.towers = {}
        for tower in self.tower_names():
            self.towers[tower] = self._make_tower(tower)
        self.rtm_cls = self._make_predictors("rtm_cls", num_classes, CLS_PRIOR_BIAS)
        self.rtm_reg = self._make_predictors("rtm_reg", 4, self.reg_bias_init())

    # --- structure hooks for the instance and rotated variants ---

    def tower_names(self):
        """The towers built by this head, in mmdet's module order."""
        return ("cls_convs", "reg_convs")

    def reg_bias_init(self):
        return 0.0

    def share_tower_convs(self, name):
        """Whether the 3×3 convs of tower `name` are shared by all levels (mmdet's `share_conv`)."""
        return True

    def _make_tower(self, name):
        """`{"convs": [level][i], "norms": [level][i]}`; shared convs repeat the level-0 objects."""

        def conv(level, i):
            return keras.layers.Conv2D(
                self.feat_channels,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer=head_kernel_initializer(),
                dtype=self.dtype_policy,
                name=f"{name}-{level}-{i}-conv",
            )

        levels = range(len(self.strides))
        if self.share_tower_convs(name):
            shared = [conv(0, i) for i in range(self.stacked_convs)]
            convs = [list(shared) for _ in levels]
        else:
            convs = [[conv(level, i) for i in range(self.stacked_convs)] for level in levels]
        norms = [
            [
                SyncBatchNormalization(
                    epsilon=self.bn_epsilon,
                    momentum=self.bn_momentum,
                    dtype=self.dtype_policy,
                    name=f"{name}-{level}-{i}-bn",
                )
                for i in range(self.stacked_convs)
            ]
            for level in levels
        ]
        return {"convs": convs, "norms": norms}

    def _make_predictors(self, name, filters, bias):
        return [
            keras.layers.Conv2D(
                filters,
                self.pred_kernel_size,
                padding="same",
                kernel_initializer=head_kernel_initializer(),
                bias_initializer=keras.initializers.Constant(bias),
                dtype=self.dtype_policy,
                name=f"{name}-{level}",
            )
            for level in range(len(self.strides))
        ]

    def build(self, input_shape):
        if len(input_shape) != len(self.strides):
            raise ValueError(
                f"{type(self).__name__} has {len(self.strides)} levels (strides "
                f"{self.strides}) but got {len(input_shape)} feature maps."
            )
        for tower in self.towers.values():
            for level, shape in enumerate(input_shape):
                for i, conv in enumerate(tower["convs"][level]):
                    in_shape = tuple(shape[:-1]) + ((self.in_channels if i == 0 else self.feat_channels),)
                    if not conv.built:
                        conv.build(in_shape)
                    tower["norms"][level][i].build(tuple(shape[:-1]) + (self.feat_channels,))
        feat_shape = (None, None, None, self.feat_channels)
        for predictors in self.predictor_lists():
            for layer in predictors:
                layer.build(feat_shape)

    def predictor_lists(self):
        return (self.rtm_cls, self.rtm_reg)

    def run_tower(self, name, x, level, training=None):
        tower = self.towers[name]
        for conv, norm in zip(tower["convs"][level], tower["norms"][level]):
            x = ops.silu(conv_then_batch_norm(x, conv, norm, training))
        return x

    def regression_output(self, reg_feat, level):
        dist = self.rtm_reg[level](reg_feat)
        if self.exp_on_reg:
            dist = ops.exp(dist)
        return dist * self.strides[level]

    def level_outputs(self, x, level, training=None):
        """The head's outputs for one level, `{output_name: (batch, H, W, D)}`."""
        cls_feat = self.run_tower("cls_convs", x, level, training)
        reg_feat = self.run_tower("reg_convs", x, level, training)
        return {"cls_scores": self.rtm_cls[level](cls_feat), "bbox_preds": self.regression_output(reg_feat, level)}

    def call(self, features, training=None):
        outputs = {}
        for level, x in enumerate(features):
            for key, value in self.level_outputs(x, level, training).items():
                outputs.setdefault(key, []).append(value)
        return outputs

    def class_branch_variables(self):
        """The weights that depend on the number of classes (`rtm_cls`)."""
        return [v for layer in self.rtm_cls for v in layer.weights]

    def aliased_checkpoint_keys(self, prefix):
        """Checkpoint keys that duplicate another key's tensor.

        mmdet's `state_dict` stores the level-shared conv kernels once per
        level. Returns `{alias_key: canonical_key}`.
        """
        aliases = {}
        for name in self.towers:
            if not self.share_tower_convs(name):
                continue
            for level in range(1, len(self.strides)):
                for i in range(self.stacked_convs):
                    aliases[f"{prefix}{name}.{level}.{i}.conv.weight"] = (
                        f"{prefix}{name}.0.{i}.conv.weight"
                    )
        return aliases

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "in_channels": self.in_channels,
                "feat_channels": self.feat_channels,
                "stacked_convs": self.stacked_convs,
                "strides": list(self.strides),
                "exp_on_reg": self.exp_on_reg,
                "pred_kernel_size": self.pred_kernel_size,
            }
        )
        return config
