"""`RTMDetRotated`, the rotated (oriented) object-detection task."""

import keras
from keras import ops

from keras_rtmdet.losses.detection_targets import normalize_rotated_targets
from keras_rtmdet.losses.rotated_assigner import RotatedDynamicSoftLabelAssigner
from keras_rtmdet.losses.rotated_losses import rtmdet_rotated_loss
from keras_rtmdet.models.dense_detector import DenseDetector
from keras_rtmdet.models.detector_variant import ROTATED_BATCH
from keras_rtmdet.models.detector_variant import ROTATED_LR
from keras_rtmdet.models.detector_variant import ROTATED_RECIPE
from keras_rtmdet.models.detector_variant import DetectorVariant
from keras_rtmdet.models.rtmdet_rotated.rotated_rtmdet_head import RotatedRTMDetSepBNHead
from keras_rtmdet.models.rtmdet_rotated.rtmdet_rotated_presets import RTMDET_ROTATED_PRESETS
from keras_rtmdet.ops.dense_postprocess import gather_rows
from keras_rtmdet.ops.rotated_boxes import distance_to_rboxes
from keras_rtmdet.ops.rotated_boxes import rescale_rboxes
from keras_rtmdet.ops.rotated_nms import ROTATED_NMS_METHODS
from keras_rtmdet.ops.rotated_nms import rotated_nms_keep

# Rotated NMS builds a (max_candidates)² IoU matrix per image. MMRotate keeps
# up to nms_pre=2000 per level (6000 in all) before its NMS and 2000
# detections after it; mmdeploy's cap of 2000 candidates is the default here,
# and max_candidates=6000 gives MMRotate's output when more boxes qualify.
DEFAULT_ROTATED_MAX_CANDIDATES = 2000
ROTATED_BOX_FORMAT = "xywha"


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class RTMDetRotated(DenseDetector):
    """RTMDet-R: CSPNeXt → CSPNeXtPAFPN → RotatedRTMDetSepBNHead (MMRotate 1.x, le90).

    Boxes are rboxes `(cx, cy, w, h, angle)`: pixels, radians, a positive
    angle turning the width axis from +x towards +y (clockwise on screen),
    angles in [−π/2, π/2) (w and h are not swapped: w < h can occur).

    Outputs of `call`: `cls_logits` (batch, N, num_classes), `bbox_preds`
    (batch, N, 4) rotated distances (left, top, right, bottom) in pixels
    along each box's axes, and `angle_preds` (batch, N, 1) raw radians.

    `predict` runs MMRotate's inference (keep-ratio resize to `image_size`,
    pad 114, BGR normalisation, multi-label top-`nms_pre` per level above
    `score_threshold`, `distance2obb` decoding, rescale to the original image,
    class-aware rotated NMS at `iou_threshold`) and returns `boxes`
    (B, K, 5) rboxes in original pixels, `scores`, `labels`,
    `num_detections`. The defaults are MMRotate's DOTA test_cfg (score 0.05,
    nms_pre 2000, rotated IoU 0.1, 2000 detections). For whole DOTA scenes,
    split them into 1024 patches and merge (`keras_rtmdet.inference.predict_large_image`).

    Training (`fit`): targets `{"boxes": (B, G, 5) rboxes, "labels": (B, G)}`
    padded with label −1; the loss is QFL + rotated IoU loss (weight 2)
    against `RotatedDynamicSoftLabelAssigner` targets.

    Args (besides `DenseDetector`'s, whose box-format argument does not apply):
        nms_method: `"auto"` (TensorFlow's overlap NMS on TF, else the
            `keras.ops` one), `"keras"` or `"tensorflow"`.
    """

    variant = DetectorVariant(
        task="rot",
        display_name="RTMDet-R",
        box_format=ROTATED_BOX_FORMAT,
        predicts_masks=False,
        evaluation="dota",
        coco_iou_types=(),
        sliding_windows=True,
        sizes=("tiny", "s", "m", "l"),
        preset_pattern="rtmdet_r_{size}_dota",
        learning_rate=ROTATED_LR,
        learning_rate_batch=ROTATED_BATCH,
        two_stage_recipe=False,
        run_defaults=ROTATED_RECIPE,
        axis_aligned_nms=False,
    )
    presets = RTMDET_ROTATED_PRESETS
    head_class = RotatedRTMDetSepBNHead
    nms_methods = ROTATED_NMS_METHODS
    graph_nms_method = "greedy"

    def __init__(
        self,
        backbone,
        neck,
        head,
        image_size=(1024, 1024),
        score_threshold=0.05,
        nms_pre=2000,
        iou_threshold=0.1,
        max_detections=2000,
        max_candidates=DEFAULT_ROTATED_MAX_CANDIDATES,
        bounding_box_format=ROTATED_BOX_FORMAT,
        **kwargs,
    ):
        if bounding_box_format != ROTATED_BOX_FORMAT:
            raise ValueError(
                f"RTMDetRotated takes (cx, cy, w, h, angle) boxes (bounding_box_format={ROTATED_BOX_FORMAT!r}); "
                f"got {bounding_box_format!r}."
            )
        super().__init__(
            backbone,
            neck,
            head,
            image_size=image_size,
            score_threshold=score_threshold,
            nms_pre=nms_pre,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            max_candidates=max_candidates,
            bounding_box_format=bounding_box_format,
            **kwargs,
        )

    def build_assigner(self):
        return RotatedDynamicSoftLabelAssigner(topk=13, soft_center_radius=3.0, iou_weight=3.0)

    # --- post-processing hooks ---

    def decode_candidates(self, outputs, candidates, priors, image_size):
        index = candidates["prior_index"]
        points = gather_rows(priors, index)[..., :2]
        distances = ops.cast(gather_rows(outputs["bbox_preds"], index), "float32")
        angles = ops.cast(gather_rows(outputs["angle_preds"], index), "float32")[..., 0]
        return distance_to_rboxes(points, distances, angles)

    def rescale_boxes(self, boxes, scale_factors):
        return rescale_rboxes(boxes, 1.0 / scale_factors[:, 0:1], 1.0 / scale_factors[:, 1:2])

    def box_size_mask(self, boxes, min_bbox_size):
        return ops.logical_and(boxes[..., 2] > min_bbox_size, boxes[..., 3] > min_bbox_size)

    def suppress(self, boxes, scores, labels, valid, iou_threshold=None, method=None):
        iou_threshold = self.iou_threshold if iou_threshold is None else iou_threshold
        return rotated_nms_keep(
            boxes, scores, labels, valid, iou_threshold, method or self.nms_method, max_output=int(self.max_detections)
        )

    # --- training hooks ---

    def decode_dense_boxes(self, y_pred, priors):
        """(B, N, 5) rboxes of every prior, float32."""
        distances = ops.cast(y_pred["bbox_preds"], "float32")
        angles = ops.cast(y_pred["angle_preds"], "float32")[..., 0]
        return distance_to_rboxes(priors[None, :, :2], distances, angles)

    def target_boxes_in_pixels(self, boxes, image_size):
        return boxes

    def normalize_targets(self, y, image_size):
        return normalize_rotated_targets(y)

    def dense_losses(self, y_pred, targets, assignment, priors, cls_logits, boxes):
        """QFL + rotated IoU loss (weight 2)."""
        loss_cls, loss_bbox = rtmdet_rotated_loss(cls_logits, boxes, assignment)
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

    def training_stages(
        self, source, image_size, batch_size, max_boxes, seed, shard, epochs, rect_labels=None, stage2_epochs=None,
        model_size=None,
    ):
        """MMRotate's one stage: random flips and rotations of the rboxes (`rotated_train_pipeline`).

        `rect_labels`: labels annotated as axis-aligned boxes, rotated by
        multiples of 90° only (default: the source's `rect_labels`, else its
        DOTA rect classes by name). `stage2_epochs` must be unset or 0 and
        `model_size` is unused (one set of augmentation strengths).
        """
        from keras_rtmdet.data.training_stream import rotated_epochs
        from keras_rtmdet.utils.dota_classes import DOTA_RECT_CLASSES

        if stage2_epochs:
            raise ValueError("RTMDet-R trains in one stage (no Mosaic/MixUp): stage2_epochs does not apply.")
        if rect_labels is None:
            labels = getattr(source, "rect_labels", None)
            rect_labels = (
                [int(label) for label in labels] if labels is not None
                else [i for i, name in enumerate(source.class_names) if name in DOTA_RECT_CLASSES]
            )
        return rotated_epochs(source, image_size, batch_size, max_boxes, seed, rect_labels, shard)

    @classmethod
    def from_arch(cls, deepen_factor, widen_factor, neck_num_csp_blocks, exp_on_reg, num_classes=15, **kwargs):
        """Build an RTMDet-R from the scaling factors of its configs (see `RTMDet.from_arch`)."""
        head_kwargs = {"num_classes": num_classes, "exp_on_reg": exp_on_reg}
        return cls._from_scaling(deepen_factor, widen_factor, neck_num_csp_blocks, head_kwargs, **kwargs)
