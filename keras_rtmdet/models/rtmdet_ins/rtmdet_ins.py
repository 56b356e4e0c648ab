"""`RTMDetIns`, the instance-segmentation task."""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_rtmdet.losses.detection_targets import normalize_mask_targets
from keras_rtmdet.losses.mask_loss import rtmdet_mask_loss
from keras_rtmdet.models.rtmdet.rtmdet import RTMDet
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_head import RTMDetInsSepBNHead
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_presets import RTMDET_INS_PRESETS
from keras_rtmdet.ops.dense_postprocess import gather_rows
from keras_rtmdet.ops.dynamic_masks import dynamic_mask_logits
from keras_rtmdet.ops.dynamic_masks import paste_masks


def _per_image_resizes(batch, scale_factors, original_sizes):
    """[(scale_factor or None, original_size or None)] per image, as numpy (converted once)."""
    scales = None if scale_factors is None else ops.convert_to_numpy(scale_factors)
    sizes = None if original_sizes is None else ops.convert_to_numpy(original_sizes)
    return [(None if scales is None else scales[b], None if sizes is None else sizes[b]) for b in range(batch)]


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

    `predict` adds `masks` (B, K, H, W) bool in original-image pixels;
    `detect`/`postprocess` give `mask_logits` (B, K, H/8, W/8) per detection
    instead, which `masks_from_detections` turns into per-image binary masks.

    Training (`fit`): targets add `masks`, either (B, G, H, W) at the input
    size or (B, G, H/4, W/4) sampled at ``[2::4, 2::4]`` with `mask_centers`
    (B, G, 2) (what `keras_rtmdet.data.pipeline` emits); the loss adds the
    Dice `loss_mask` (weight 2) to RTMDet's QFL + GIoU, with the GT masks'
    centres of mass as the assigner's centres.

    Args (besides `RTMDet`'s):
        mask_threshold: on the mask probability (0.5).
        max_mask_positives: static cap of positives per image whose masks
            enter the loss (512); above it a fixed pseudo-random subset is
            reweighted (see `keras_rtmdet.losses.mask_loss`). Loss memory
            grows with batch · cap · (H/8 · W/8).
    """

    variant = dataclasses.replace(
        RTMDet.variant,
        task="ins",
        display_name="RTMDet-Ins",
        predicts_masks=True,
        coco_iou_types=("bbox", "segm"),
        preset_pattern="rtmdet_ins_{size}_coco",
    )
    presets = RTMDET_INS_PRESETS
    # The reference's `mask_loss_stride`: GT masks are compared at input/4.
    MASK_LOSS_STRIDE = 4
    head_class = RTMDetInsSepBNHead
    detection_field_inputs = ("mask_feat", "kernel_preds")

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
        max_mask_positives=512,
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
        self.max_mask_positives = int(max_mask_positives)

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
        """Per-image binary masks (n_i, H_i, W_i) from `detect`'s outputs.

        Upsamples the logits by the prototype stride to the padded input,
        rescales by `scale_factors` and crops to `original_sizes` as mmdet
        does, then thresholds at `mask_threshold` (`paste_masks`).
        """
        resizes = _per_image_resizes(detections["mask_logits"].shape[0], scale_factors, original_sizes)
        counts = ops.convert_to_numpy(detections["num_detections"])
        return [
            self._paste(detections["mask_logits"][b, : int(counts[b])], *resize) for b, resize in enumerate(resizes)
        ]

    def _paste(self, logits, scale_factor, original_size):
        return paste_masks(logits, self.strides[0], scale_factor, original_size, self.mask_threshold)

    def finalize_predictions(self, outputs, scale_factors=None, original_sizes=None):
        """Adds `masks` (B, K, H, W) bool at the original sizes, dropping `mask_logits`.

        H, W are the largest original height and width of the batch; image
        b's masks fill `[:n_b, :h_b, :w_b]`, the rest is False. Images that
        share their resize (same size) are pasted in one batched call on the
        device; the padded detections' logits (−1) paste to False. Only
        the slots some image of the batch fills are pasted and copied to the
        host: pasting all K slots of a (1, 100, 480, 640) batch cost 20–55 ms
        on an H100 against a 5–10 ms step.
        """
        logits = outputs["mask_logits"]
        out = super().finalize_predictions({k: v for k, v in outputs.items() if k != "mask_logits"})
        batch, slots = logits.shape[:2]
        filled = max(1, int(np.max(out["num_detections"], initial=0)))
        logits = logits[:, :filled]
        resizes = _per_image_resizes(batch, scale_factors, original_sizes)
        if len({tuple(None if v is None else tuple(np.ravel(v)) for v in resize) for resize in resizes}) == 1:
            pasted = [(slice(None), ops.convert_to_numpy(self._paste(logits, *resizes[0])))]
        else:
            pasted = [(b, ops.convert_to_numpy(self._paste(logits[b], *resizes[b]))) for b in range(batch)]
        height, width = max(m.shape[-2] for _, m in pasted), max(m.shape[-1] for _, m in pasted)
        masks = np.zeros((batch, slots, height, width), bool)
        for rows, m in pasted:
            masks[rows, :filled, : m.shape[-2], : m.shape[-1]] = m
        out["masks"] = masks
        return out

    loss_names = ("loss_cls", "loss_bbox", "loss_mask")

    def normalize_targets(self, y, image_size):
        """Adds the stride-4 `masks` and their full-resolution `centers` (the assigner's GT centres).

        `y` needs `masks`: (B, G, H, W) at the input size, or (B, G, H/4,
        W/4) sampled at ``[2::4, 2::4]`` with `mask_centers` (B, G, 2), as
        the training pipeline gives them.
        """
        targets = super().normalize_targets(y, image_size)
        num_slots = targets["boxes"].shape[1]
        targets["masks"], targets["centers"] = normalize_mask_targets(
            y, num_slots, image_size, self.MASK_LOSS_STRIDE
        )
        return targets

    def dense_losses(self, y_pred, targets, assignment, priors, cls_logits, boxes):
        losses = super().dense_losses(y_pred, targets, assignment, priors, cls_logits, boxes)
        if targets["masks"].shape[1] == 0:
            # Zero, but through every mask output: DDP requires each trainable weight to take part in the loss.
            unused = ops.sum(ops.cast(y_pred["mask_feat"], "float32")) + ops.sum(ops.cast(y_pred["kernel_preds"], "float32"))
            losses["loss_mask"] = unused * 0.0
            return losses
        losses["loss_mask"] = rtmdet_mask_loss(
            y_pred["mask_feat"],
            y_pred["kernel_preds"],
            priors,
            assignment,
            targets["masks"],
            self.head.weight_nums,
            self.head.bias_nums,
            mask_stride=self.strides[0],
            max_positives=self.max_mask_positives,
        )
        return losses

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
        config["max_mask_positives"] = self.max_mask_positives
        return config
