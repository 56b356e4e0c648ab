"""`RTMDetIns`, the instance-segmentation task."""

import keras
from keras import ops

from keras_rtmdet.models.dense_detector import flatten_levels
from keras_rtmdet.ops.dense_postprocess import gather_rows
from keras_rtmdet.ops.dynamic_masks import dynamic_mask_logits
from keras_rtmdet.ops.dynamic_masks import paste_masks
from keras_rtmdet.models.rtmdet.rtmdet import RTMDet
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_head import RTMDetInsSepBNHead
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_presets import RTMDET_INS_PRESETS


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

    `detect`/`postprocess` add `mask_logits` (B, K, H/8, W/8) per detection;
    `masks_from_detections` turns them into per-image binary masks.
    Status: the mask loss is not implemented, and `predict` does not yet
    return masks at the original image sizes.
    """

    presets = RTMDET_INS_PRESETS
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

    def detection_fields(self, outputs, fields, prior_index, priors, image_size, scale_factors):
        """Adds `mask_logits` (B, K, H/8, W/8): each detection's mask logits on the prototype grid."""
        head = self.head
        fields["mask_logits"] = dynamic_mask_logits(
            outputs["mask_feat"],
            gather_rows(outputs["kernel_preds"], prior_index),
            gather_rows(priors, prior_index),
            head.weight_nums,
            head.bias_nums,
            mask_stride=self.strides[0],
        )
        return fields

    def masks_from_detections(self, detections, scale_factors=None, original_sizes=None):
        """Per-image binary masks (n_i, H, W) from `detect`'s outputs (eager).

        Upsamples the logits by the prototype stride to the padded input,
        rescales by `scale_factors` and crops to `original_sizes` as mmdet
        does, then thresholds at `mask_threshold`.
        """
        masks = []
        for b in range(detections["mask_logits"].shape[0]):
            n = int(ops.convert_to_numpy(detections["num_detections"][b]))
            masks.append(
                paste_masks(
                    detections["mask_logits"][b, :n],
                    self.strides[0],
                    None if scale_factors is None else ops.convert_to_numpy(scale_factors[b]),
                    None if original_sizes is None else ops.convert_to_numpy(original_sizes[b]),
                    self.mask_threshold,
                )
            )
        return masks

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
