"""RotatedRTMDetSepBNHead: the RTMDet head plus a per-level angle predictor."""

import keras

from keras_rtmdet.models.rtmdet.rtmdet_head import RTMDetSepBNHead


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class RotatedRTMDetSepBNHead(RTMDetSepBNHead):
    """The RTMDet-R head (MMRotate's `RotatedRTMDetSepBNHead`, le90, `PseudoAngleCoder`).

    As `RTMDetSepBNHead` (shared 3×3 tower convs, per-level BatchNorms,
    `exp_on_reg` per checkpoint: MMRotate tiny/s False, m/l True), plus
    `rtm_ang`, a 1×1 conv per level on the *regression* tower's features
    giving one raw angle in radians (no activation, no scale; initialised
    normal(0, 0.01), bias 0, so the first angles are ≈ 0).

    Input: list of (batch, H_l, W_l, in_channels).
    Output: dict with `cls_scores` (batch, H_l, W_l, num_classes) logits,
    `bbox_preds` (batch, H_l, W_l, 4) rotated distances (left, top, right,
    bottom) along the box's axes in pixels, and `angle_preds`
    (batch, H_l, W_l, 1), per level.
    """

    def __init__(self, num_classes=15, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self.rtm_ang = self._make_predictors("rtm_ang", 1, 0.0)

    def predictor_lists(self):
        return (self.rtm_cls, self.rtm_reg, self.rtm_ang)

    def level_outputs(self, x, level, training=None):
        cls_feat = self.run_tower("cls_convs", x, level, training)
        reg_feat = self.run_tower("reg_convs", x, level, training)
        return {
            "cls_scores": self.rtm_cls[level](cls_feat),
            "bbox_preds": self.regression_output(reg_feat, level),
            "angle_preds": self.rtm_ang[level](reg_feat),
        }
