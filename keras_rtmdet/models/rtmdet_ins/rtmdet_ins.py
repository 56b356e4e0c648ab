"""`RTMDetIns`, the instance-segmentation task."""

import keras

from keras_rtmdet.models.dense_detector import flatten_levels
from keras_rtmdet.models.rtmdet.rtmdet import RTMDet
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_head import RTMDetInsSepBNHead


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class RTMDetIns(RTMDet):
    """RTMDet-Ins: CSPNeXt → CSPNeXtPAFPN → RTMDetInsSepBNHead.

    Outputs of `call`: those of `RTMDet` (`cls_logits`, `bbox_preds`, with
    the Ins head's `relu` distances), plus `kernel_preds` (batch, N,
    num_gen_params) — each prior's dynamic-conv parameters, weights first —
    and `mask_feat` (batch, H/8, W/8, num_prototypes), the prototypes.

    The post-processing defaults are the reference Ins `test_cfg`
    (score 0.05, nms_pre 1000, IoU 0.6, 100 detections); `mask_threshold`
    binarises the sigmoid of the mask logits.

    Status: the mask post-processing (dynamic convs per kept instance) and
    the mask loss are not implemented yet; `predict`/`detect` give boxes only.
    """

    presets = {}
    head_class = RTMDetInsSepBNHead

    def __init__(
        self,
        backbone,
        neck,
        head,
        score_threshold=0.05,
        nms_pre=1000,
        iou_threshold=0.6,
        max_detections=100,
        mask_threshold=0.5,
        **kwargs,
    ):
        super().__init__(
            backbone,
            neck,
            head,
            score_threshold=score_threshold,
            nms_pre=nms_pre,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            **kwargs,
        )
        self.mask_threshold = mask_threshold

    @staticmethod
    def _build_outputs(backbone, neck, head, normalized):
        raw = head(neck(backbone(normalized)))
        return {
            "cls_logits": flatten_levels(raw["cls_scores"]),
            "bbox_preds": flatten_levels(raw["bbox_preds"]),
            "kernel_preds": flatten_levels(raw["kernel_preds"]),
            "mask_feat": raw["mask_feat"],
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        raise NotImplementedError("RTMDetIns training (the mask loss) is not implemented yet.")

    @classmethod
    def from_arch(cls, deepen_factor, widen_factor, neck_num_csp_blocks, num_classes=80, **kwargs):
        """Build an RTMDet-Ins from the scaling factors of its configs.

        Args:
            deepen_factor, widen_factor: CSPNeXt scaling.
            neck_num_csp_blocks: blocks per neck CSP layer.
            num_classes: classes of the head.
            **kwargs: forwarded to `RTMDetIns`; `exp_on_reg` is accepted
                and ignored (the Ins head has none), so the detection
                presets' `arch` dicts can be passed as they are.
        """
        kwargs.pop("exp_on_reg", None)
        head_kwargs = {"num_classes": num_classes}
        return cls._from_scaling(deepen_factor, widen_factor, neck_num_csp_blocks, head_kwargs, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["mask_threshold"] = self.mask_threshold
        return config
