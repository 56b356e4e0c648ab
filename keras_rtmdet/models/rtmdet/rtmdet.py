"""`RTMDet`, the object-detection task."""

import keras
from keras import ops

from keras_rtmdet.losses.detection_losses import rtmdet_detection_loss
from keras_rtmdet.losses.detection_targets import normalize_detection_targets
from keras_rtmdet.losses.dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from keras_rtmdet.models.dense_detector import DenseDetector
from keras_rtmdet.models.detector_variant import DETECTION_RECIPE
from keras_rtmdet.models.detector_variant import REFERENCE_BATCH
from keras_rtmdet.models.detector_variant import REFERENCE_LR
from keras_rtmdet.models.detector_variant import DetectorVariant
from keras_rtmdet.models.rtmdet.rtmdet_head import RTMDetSepBNHead
from keras_rtmdet.models.rtmdet.rtmdet_presets import RTMDET_PRESETS
from keras_rtmdet.ops.boxes import distance_to_boxes
from keras_rtmdet.ops.dense_postprocess import gather_rows

# Sizes of the recipe's augmentation strengths (Mosaic / MixUp scales differ from tiny to x).
MODEL_SIZES = ("tiny", "s", "m", "l", "x")


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class RTMDet(DenseDetector):
    """RTMDet object detector: CSPNeXt → CSPNeXtPAFPN → RTMDetSepBNHead.

    `call` maps padded pixel images to per-prior outputs; `predict` runs the
    whole reference inference (keep-ratio resize, pad with 114, normalise,
    decode, class-aware NMS) on raw images of any size and returns boxes in
    each original image's pixels.

    Args:
        backbone: a `CSPNeXt` (or any model returning C3..C5 features).
        neck: a `CSPNeXtPAFPN`.
        head: a `RTMDetSepBNHead`.
        class_names: optional list of `num_classes` names.
        image_size: (height, width) of the padded input `predict` uses,
            multiples of 32 (the largest stride); one int for a square.
        input_channel_order: channel order of the pixels `call`/`fit` take
            ("rgb" default; the network itself sees BGR like the reference).
        mean, std: normalisation in the network's (BGR) order.
        score_threshold: keep (prior, class) pairs scoring above it
            (reference test_cfg: 0.001 for COCO evaluation).
        nms_pre: candidates per level before NMS (reference: 30000).
        iou_threshold: class-aware NMS IoU (reference: 0.65).
        max_detections: detections per image (reference: 300).
        min_bbox_size: drop boxes whose width or height is not above it.
        max_candidates: static cap on candidates per image entering NMS.
        nms_method: "auto", "keras", "tensorflow" or "torchvision".
        bounding_box_format: format of the target boxes given to `fit`
            (a `keras.utils.bounding_boxes` format; default "xyxy" pixels).

    Inputs of `call`: (batch, H, W, 3) pixels in [0, 255], H and W multiples
    of 32. Outputs: dict with `cls_logits` (batch, N, num_classes) and
    `bbox_preds` (batch, N, 4) distances (left, top, right, bottom) in pixels
    from each prior, N = Σ_l (H/s_l)·(W/s_l), levels finest first, row-major.

    Example:
    >>> model = keras_rtmdet.RTMDet.from_preset("rtmdet_s_coco")
    >>> out = model.predict(image_rgb_uint8)      # any size
    >>> out["boxes"][0, : out["num_detections"][0]]   # xyxy, original pixels
    """

    variant = DetectorVariant(
        task="det",
        display_name="RTMDet",
        box_format="xyxy",
        predicts_masks=False,
        evaluation="coco",
        coco_iou_types=("bbox",),
        sliding_windows=False,
        sizes=MODEL_SIZES,
        preset_pattern="rtmdet_{size}_coco",
        learning_rate=REFERENCE_LR,
        learning_rate_batch=REFERENCE_BATCH,
        two_stage_recipe=True,
        run_defaults=DETECTION_RECIPE,
    )
    presets = RTMDET_PRESETS
    head_class = RTMDetSepBNHead

    def build_assigner(self):
        return DynamicSoftLabelAssigner(topk=13, soft_center_radius=3.0, iou_weight=3.0)

    def decode_candidates(self, outputs, candidates, priors, image_size):
        index = candidates["prior_index"]
        points = gather_rows(priors, index)[..., :2]
        distances = gather_rows(outputs["bbox_preds"], index)
        return distance_to_boxes(points, ops.cast(distances, "float32"), max_shape=image_size)

    def decode_dense_boxes(self, y_pred, priors):
        """(B, N, 4) unclamped xyxy boxes of every prior, in float32 (what the assigner and loss see)."""
        return distance_to_boxes(priors[None, :, :2], ops.cast(y_pred["bbox_preds"], "float32"))

    def normalize_targets(self, y, image_size):
        return normalize_detection_targets(y, self.bounding_box_format, image_size)

    def dense_losses(self, y_pred, targets, assignment, priors, cls_logits, boxes):
        """QFL + GIoU (weight 2)."""
        loss_cls, loss_bbox = rtmdet_detection_loss(cls_logits, boxes, assignment)
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

    def training_stages(
        self, source, image_size, batch_size, max_boxes, seed, shard, epochs, model_size="s", stage2_epochs=None,
        rect_labels=None,
    ):
        """RTMDet's two stages: Mosaic + MixUp + large-scale jitter, then the light last `stage2_epochs`.

        `model_size` picks the augmentation strengths (tiny/s/m/l/x);
        `stage2_epochs` defaults to 20/300 of `epochs` (`stage2_epochs_for`).
        `rect_labels` (RTMDet-R's) must be left unset.
        """
        from keras_rtmdet.data.training_stream import stage2_epochs_for
        from keras_rtmdet.data.training_stream import staged_epochs

        if model_size not in MODEL_SIZES:
            raise ValueError(f"model_size must be one of {MODEL_SIZES}, got {model_size!r}.")
        if rect_labels:
            raise ValueError(f"rect_labels applies to RTMDet-R's rotated recipe, not to an {self.variant.display_name}.")
        stage2_epochs = stage2_epochs_for(epochs) if stage2_epochs is None else int(stage2_epochs)
        return staged_epochs(
            source, self.variant.predicts_masks, model_size, image_size, batch_size, max_boxes, seed,
            switch_epoch=epochs - stage2_epochs, shard=shard,
        )

    @classmethod
    def from_arch(
        cls,
        deepen_factor,
        widen_factor,
        neck_num_csp_blocks,
        exp_on_reg,
        num_classes=80,
        **kwargs,
    ):
        """Build an RTMDet from the scaling factors of its configs.

        Args:
            deepen_factor, widen_factor: CSPNeXt scaling.
            neck_num_csp_blocks: blocks per neck CSP layer.
            exp_on_reg: exponential box distances (official m/l/x).
            num_classes: classes of the head.
            **kwargs: forwarded to `RTMDet` (thresholds, class names, ...).
        """
        head_kwargs = {"num_classes": num_classes, "exp_on_reg": exp_on_reg}
        return cls._from_scaling(deepen_factor, widen_factor, neck_num_csp_blocks, head_kwargs, **kwargs)
