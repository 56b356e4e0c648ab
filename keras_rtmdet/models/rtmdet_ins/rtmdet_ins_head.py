"""RTMDetInsSepBNHead: the RTMDet detection head plus dynamic mask kernels and prototypes."""

import keras
from keras import ops

from keras_rtmdet.layers.conv_module import BN_EPSILON
from keras_rtmdet.layers.conv_module import BN_MOMENTUM
from keras_rtmdet.models.rtmdet.rtmdet_head import RTMDetSepBNHead
from keras_rtmdet.models.rtmdet_ins.mask_feat_module import MaskFeatModule

# Leaves of a mmdet ConvModule's state (num_batches_tracked is dropped on reading).
_CONV_MODULE_LEAVES = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")


def dynamic_conv_param_counts(num_prototypes=8, dyconv_channels=8, num_dyconvs=3):
    """(weight_nums, bias_nums) of the per-instance dynamic 1×1 convs, layer by layer.

    Layer 0 sees `num_prototypes + 2` channels (the relative coordinates
    first), the last layer has one output (the mask logit).
    """
    weight_nums, bias_nums = [], []
    for i in range(num_dyconvs):
        c_in = num_prototypes + 2 if i == 0 else dyconv_channels
        c_out = 1 if i == num_dyconvs - 1 else dyconv_channels
        weight_nums.append(c_in * c_out)
        bias_nums.append(c_out)
    return weight_nums, bias_nums


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class RTMDetInsSepBNHead(RTMDetSepBNHead):
    """The RTMDet-Ins head.

    As `RTMDetSepBNHead`, with the reference's differences:

    * one tower per level (`cls_convs`, 3×3 kernels shared by the levels)
      feeds both `rtm_cls` and `rtm_reg`: in mmdet `reg_convs` are the very
      same modules as `cls_convs` (its `reg_convs.append(cls_convs)`), so the
      checkpoint's `reg_convs.*` keys are aliases;
    * distances are `relu(rtm_reg(feat)) * stride` (no `exp_on_reg`), and
      `rtm_reg`'s bias starts at 1;
    * a kernel tower per level (`kernel_convs`, not shared across levels)
      and `rtm_kernel`, 1×1 to the parameters of the `num_dyconvs` dynamic
      convs: all weights first, then all biases (169 by default);
    * `mask_head`, a `MaskFeatModule` giving `num_prototypes` prototype maps
      at the finest level's resolution.

    Output: dict with `cls_scores`, `bbox_preds`, `kernel_preds` (lists per
    level of (batch, H_l, W_l, num_gen_params)) and `mask_feat`
    (batch, H_0, W_0, num_prototypes).
    """

    def __init__(
        self,
        num_classes=80,
        in_channels=256,
        feat_channels=256,
        stacked_convs=2,
        strides=(8, 16, 32),
        pred_kernel_size=1,
        num_prototypes=8,
        dyconv_channels=8,
        num_dyconvs=3,
        mask_stacked_convs=4,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        kwargs.pop("exp_on_reg", None)
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            feat_channels=feat_channels,
            stacked_convs=stacked_convs,
            strides=strides,
            exp_on_reg=False,
            pred_kernel_size=pred_kernel_size,
            bn_epsilon=bn_epsilon,
            bn_momentum=bn_momentum,
            **kwargs,
        )
        self.num_prototypes = num_prototypes
        self.dyconv_channels = dyconv_channels
        self.num_dyconvs = num_dyconvs
        self.mask_stacked_convs = mask_stacked_convs
        weight_nums, bias_nums = dynamic_conv_param_counts(num_prototypes, dyconv_channels, num_dyconvs)
        self.weight_nums, self.bias_nums = weight_nums, bias_nums
        self.num_gen_params = sum(weight_nums) + sum(bias_nums)
        self.rtm_kernel = self._make_predictors("rtm_kernel", self.num_gen_params, 0.0)
        self.mask_head = MaskFeatModule(
            in_channels=in_channels,
            feat_channels=feat_channels,
            stacked_convs=mask_stacked_convs,
            num_levels=len(self.strides),
            num_prototypes=num_prototypes,
            **self.bn_kwargs(),
            name="mask_head",
        )

    # --- structure hooks ---

    def tower_names(self):
        # No separate regression tower: mmdet's reg_convs alias cls_convs.
        return ("cls_convs", "kernel_convs")

    def share_tower_convs(self, name):
        return name != "kernel_convs"

    def reg_bias_init(self):
        return 1.0

    def predictor_lists(self):
        return (self.rtm_cls, self.rtm_reg, self.rtm_kernel)

    def build(self, input_shape):
        super().build(input_shape)
        self.mask_head.build(input_shape)

    def regression_output(self, reg_feat, level):
        return ops.relu(self.rtm_reg[level](reg_feat)) * self.strides[level]

    def level_outputs(self, x, level, training=None):
        feat = self.run_tower("cls_convs", x, level, training)
        kernel_feat = self.run_tower("kernel_convs", x, level, training)
        return {
            "cls_scores": self.rtm_cls[level](feat),
            "bbox_preds": self.regression_output(feat, level),
            "kernel_preds": self.rtm_kernel[level](kernel_feat),
        }

    def call(self, features, training=None):
        outputs = super().call(features, training=training)
        outputs["mask_feat"] = self.mask_head(features, training=training)
        return outputs

    def compute_output_shape(self, input_shape):
        # Explicit, because the mask branch mixes levels: JAX cannot trace that on
        # independent unknown sizes.
        def per_level(channels):
            return [tuple(shape[:-1]) + (channels,) for shape in input_shape]

        return {
            "cls_scores": per_level(self.num_classes),
            "bbox_preds": per_level(4),
            "kernel_preds": per_level(self.num_gen_params),
            "mask_feat": self.mask_head.compute_output_shape(input_shape),
        }

    def aliased_checkpoint_keys(self, prefix):
        aliases = super().aliased_checkpoint_keys(prefix)
        for level in range(len(self.strides)):
            for i in range(self.stacked_convs):
                for leaf in _CONV_MODULE_LEAVES:
                    aliases[f"{prefix}reg_convs.{level}.{i}.{leaf}"] = f"{prefix}cls_convs.{level}.{i}.{leaf}"
        return aliases

    def get_config(self):
        config = super().get_config()
        config.pop("exp_on_reg")
        config.update(
            {
                "num_prototypes": self.num_prototypes,
                "dyconv_channels": self.dyconv_channels,
                "num_dyconvs": self.num_dyconvs,
                "mask_stacked_convs": self.mask_stacked_convs,
            }
        )
        return config
