"""The post-processing every dense detector shares: settings, candidate selection, NMS, padded detections.

`DensePostprocessing` turns `call`'s per-prior outputs into fixed-shape,
padded detections in `keras.ops` (compiled inside `predict`, traced into
exported graphs). A variant overrides the hooks: `decode_candidates` (its box
decoding), `rescale_boxes`, `box_size_mask`, `suppress` (its NMS) and
`detection_fields` (what it adds to each detection, e.g. masks).
"""

import contextlib

import numpy as np
from keras import ops

from keras_rtmdet.ops.dense_postprocess import gather_rows
from keras_rtmdet.ops.dense_postprocess import pad_detections
from keras_rtmdet.ops.dense_postprocess import select_candidates
from keras_rtmdet.ops.dense_postprocess import top_detections
from keras_rtmdet.ops.nms import NMS_METHODS
from keras_rtmdet.ops.nms import batched_nms_keep
from keras_rtmdet.ops.priors import level_sizes
from keras_rtmdet.ops.priors import point_priors
from keras_rtmdet.utils.input_checks import check_postprocess_settings

POSTPROCESS_KEYS = (
    "score_threshold",
    "nms_pre",
    "iou_threshold",
    "max_detections",
    "min_bbox_size",
    "max_candidates",
    "nms_method",
)
# Settings a compiled predict step takes as inputs (`thresholds`): a new value never recompiles it.
# `max_detections` is also its static output size, the cap a per-call value keeps below.
RUNTIME_SETTINGS = ("score_threshold", "iou_threshold", "min_bbox_size", "max_detections")


# `postprocess` outputs (and what a step passes through) that hold one value per image, not per detection slot.
PER_IMAGE_OUTPUTS = ("num_detections", "scale_factors")


def first_detections(outputs, count):
    """`outputs` with every per-detection field cut to its first `count` slots (a per-call `max_detections`)."""
    return {key: value if key in PER_IMAGE_OUTPUTS else value[:, :count] for key, value in outputs.items()}


def class_mask(classes, num_classes, class_names=None):
    """(num_classes,) float32 `class_mask` input of `postprocess`: 1 for `classes` (indices and/or names), all 1 for None."""
    if classes is None:
        return np.ones((num_classes,), np.float32)
    if isinstance(classes, (str, int, np.integer)):
        classes = [classes]
    names = list(class_names or [])
    mask = np.zeros((num_classes,), np.float32)
    for value in classes:
        if isinstance(value, str):
            if value not in names:
                raise ValueError(f"Unknown class {value!r}; the model's classes: {names or 'unnamed'}.")
            value = names.index(value)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < num_classes:
            raise ValueError(f"classes must hold class indices in [0, {num_classes}) or class names, got {value!r}.")
        mask[int(value)] = 1.0
    if not mask.any():
        raise ValueError("classes is empty: give at least one class to keep.")
    return mask


class DensePostprocessing:
    """Post-processing settings and the `keras.ops` path from per-prior outputs to padded detections.

    Mixed into `DenseDetector`; reads the model's `strides` and its settings
    (`POSTPROCESS_KEYS`), set through `set_postprocess`.
    """

    # The `nms_method` values `suppress` understands.
    nms_methods = NMS_METHODS
    # The NMS an exported graph without a native NMS operator runs (LiteRT; RTMDet-R's ONNX): plain
    # `keras.ops`, which every exporter traces into its format's own operators.
    graph_nms_method = "keras"

    def _init_postprocess(
        self,
        score_threshold,
        nms_pre,
        iou_threshold,
        max_detections,
        min_bbox_size,
        max_candidates,
        nms_method,
    ):
        self.set_postprocess(
            score_threshold=score_threshold,
            nms_pre=nms_pre,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            min_bbox_size=min_bbox_size,
            max_candidates=max_candidates,
            nms_method=nms_method,
        )

    def set_postprocess(self, **settings):
        """Change post-processing settings (see the class docstring).

        Every setting is checked (`check_postprocess_settings`) before any is
        changed: a refused call leaves the model as it was.
        """
        settings = check_postprocess_settings(settings, self.nms_methods)
        changed = False
        for key, value in settings.items():
            changed = changed or getattr(self, key, None) != value
            setattr(self, key, value)
        if changed:
            # Compiled predict functions bake the settings in; an unchanged model keeps its compiled one.
            self.predict_function = None

    @contextlib.contextmanager
    def postprocess_settings(self, **settings):
        """Temporarily override post-processing settings (`None` keeps the current one)."""
        settings = {k: v for k, v in settings.items() if v is not None}
        unknown = sorted(set(settings) - set(POSTPROCESS_KEYS))
        if unknown:
            raise ValueError(f"Unknown post-processing setting {unknown[0]!r}; known: {POSTPROCESS_KEYS}.")
        old = {k: getattr(self, k) for k in settings}
        self.set_postprocess(**settings)
        try:
            yield
        finally:
            self.set_postprocess(**old)

    def postprocess_config(self):
        return {key: getattr(self, key) for key in POSTPROCESS_KEYS}

    def priors(self, image_size):
        """(N, 4) priors (x, y, stride, stride) for a padded input size."""
        return point_priors(image_size, self.strides)

    def decode_candidates(self, outputs, candidates, priors, image_size):
        """Return (B, M, box_dim) candidate boxes in padded-input pixels."""
        raise NotImplementedError

    def rescale_boxes(self, boxes, scale_factors):
        """Map boxes from the padded input back to original-image pixels."""
        ws, hs = scale_factors[:, 0:1], scale_factors[:, 1:2]
        factors = ops.stack([ws, hs, ws, hs], axis=-1)
        return boxes / factors

    def clip_boxes_to_images(self, boxes, original_sizes):
        """xyxy `boxes` (B, M, 4) clipped to [0, w] × [0, h] of each image's `original_sizes` (B, 2) (h, w)."""
        sizes = ops.cast(original_sizes, boxes.dtype)
        heights, widths = sizes[:, 0:1], sizes[:, 1:2]
        limits = ops.stack([widths, heights, widths, heights], axis=-1)
        return ops.minimum(ops.maximum(boxes, 0.0), limits)

    def runtime_thresholds(self, thresholds=None):
        """`RUNTIME_SETTINGS` → value: `thresholds`' (scalars or tensors), else the model's settings."""
        thresholds = thresholds or {}
        return {key: thresholds.get(key, getattr(self, key)) for key in RUNTIME_SETTINGS}

    def box_size_mask(self, boxes, min_bbox_size):
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return ops.logical_and(w > min_bbox_size, h > min_bbox_size)

    def suppress(self, boxes, scores, labels, valid, iou_threshold=None, method=None):
        """(B, M) bool: the candidates class-aware NMS keeps.

        `iou_threshold` and `method` default to the model's `iou_threshold` and `nms_method`.
        """
        iou_threshold = self.iou_threshold if iou_threshold is None else iou_threshold
        return batched_nms_keep(
            boxes, scores, labels, valid, iou_threshold, method or self.nms_method, int(self.max_detections)
        )

    def detection_fields(self, outputs, fields, prior_index, priors, image_size, scale_factors):
        """Hook for subclasses to add per-detection outputs (e.g. masks)."""
        return fields

    def postprocess(self, outputs, image_size, scale_factors=None, thresholds=None, original_sizes=None):
        """Turn raw per-prior outputs into padded detections.

        Args:
            outputs: dict from `call` (`cls_logits` (B, N, C) and the
                variant's box outputs).
            image_size: (height, width) of the padded input, static ints.
            scale_factors: optional (B, 2) (w_scale, h_scale) of each image's
                resize; boxes are divided by them (original-image pixels).
            thresholds: optional values of `RUNTIME_SETTINGS` (scalar
                tensors in a compiled step); the model's settings otherwise.
                A `max_detections` here keeps that many of the K slots. Three
                more inputs `predict` passes, not model settings:
                `class_mask` (num_classes,) (`class_mask()`: the other
                classes score 0 before candidate selection),
                `agnostic_nms` (1: one NMS across classes) and
                `clip_boxes` (1: boxes clipped to `original_sizes`).
            original_sizes: optional (B, 2) (h, w) of the raw images,
                which a `clip_boxes` of 1 clips the rescaled boxes to.

        Returns: dict with `boxes` (B, K, 4), `scores` (B, K), `labels`
        (B, K) int32, padded with −1 after `num_detections` (B,) entries;
        K = the model's `max_detections`.
        """
        candidates = self.candidate_detections(outputs, image_size, scale_factors, thresholds, original_sizes)
        nms_labels = candidates["labels"]
        if thresholds and "agnostic_nms" in thresholds:
            # One class for the NMS: every box may suppress every other.
            nms_labels = nms_labels * (1 - ops.cast(thresholds["agnostic_nms"], nms_labels.dtype))
        keep = self.suppress(
            candidates["boxes"],
            candidates["scores"],
            nms_labels,
            candidates["valid"],
            self.runtime_thresholds(thresholds)["iou_threshold"],
        )
        # The caller's own `thresholds`: only a per-call `max_detections` masks slots.
        return self.finish_detections(outputs, candidates, keep, image_size, scale_factors, thresholds)

    def candidate_detections(self, outputs, image_size, scale_factors=None, thresholds=None, original_sizes=None):
        """The NMS input: the top (prior, class) candidates, decoded (`postprocess`' first half).

        With `original_sizes` and a `clip_boxes` threshold of 1, the rescaled
        boxes are clipped to each image (`clip_boxes_to_images`) before the
        box-size filter and the NMS see them, as torchvision's detectors do.
        The reference clips them to the padded canvas only, before the
        rescale (`decode_candidates`): its boxes may reach into the padding.

        Returns: dict of (B, M) `scores`, `labels`, `prior_index`, `valid`
        (score and box size) sorted by descending score, and `boxes`
        (B, M, box_dim) in original-image pixels when `scale_factors` is given.
        """
        class_mask = (thresholds or {}).get("class_mask")
        clip_boxes = (thresholds or {}).get("clip_boxes")
        thresholds = self.runtime_thresholds(thresholds)
        image_size = tuple(int(s) for s in image_size)
        sizes = level_sizes(image_size, self.strides)
        probs = ops.sigmoid(ops.cast(outputs["cls_logits"], "float32"))
        if class_mask is not None:
            probs = probs * ops.cast(class_mask, "float32")
        level_scores, start = [], 0
        for h, w in sizes:
            level_scores.append(probs[:, start : start + h * w, :])
            start += h * w
        if start != probs.shape[1]:
            raise ValueError(
                f"Outputs hold {probs.shape[1]} priors but an input of size {image_size} "
                f"gives {start}; pass the padded input's size."
            )
        candidates = select_candidates(
            level_scores, thresholds["score_threshold"], int(self.nms_pre), int(self.max_candidates)
        )
        boxes = self.decode_candidates(outputs, candidates, self.priors(image_size), image_size)
        if scale_factors is not None:
            boxes = self.rescale_boxes(boxes, ops.cast(scale_factors, boxes.dtype))
        if clip_boxes is not None and original_sizes is not None:
            # A step input, not a branch: one traced step serves both values.
            boxes = ops.where(clip_boxes > 0, self.clip_boxes_to_images(boxes, original_sizes), boxes)
        candidates["boxes"] = boxes
        candidates["valid"] = ops.logical_and(candidates["valid"], self.box_size_mask(boxes, thresholds["min_bbox_size"]))
        return candidates

    # The `call` outputs `detection_fields` reads, besides the candidates (exported graphs pass them on).
    detection_field_inputs = ()

    def finish_detections(self, outputs, candidates, keep, image_size, scale_factors=None, thresholds=None):
        """`postprocess`' second half: the best `max_detections` kept candidates, padded.

        Args:
            outputs: `call`'s outputs (only `detection_field_inputs` are read).
            candidates: `candidate_detections`' dict.
            keep: (B, M) bool, the NMS survivors.
            thresholds: as `postprocess`'; its `max_detections` may be below the model's.
        """
        image_size = tuple(int(s) for s in image_size)
        order, det_valid = top_detections(keep, candidates["scores"], int(self.max_detections))
        if thresholds and "max_detections" in thresholds:
            wanted = thresholds["max_detections"]
            det_valid = ops.logical_and(det_valid, ops.arange(det_valid.shape[1])[None, :] < wanted)
        fields = {
            "boxes": gather_rows(candidates["boxes"], order),
            "scores": ops.take_along_axis(candidates["scores"], order, axis=1),
            "labels": ops.cast(ops.take_along_axis(candidates["labels"], order, axis=1), "int32"),
        }
        prior_index = ops.take_along_axis(candidates["prior_index"], order, axis=1)
        fields = self.detection_fields(
            outputs, fields, prior_index, self.priors(image_size), image_size, scale_factors
        )
        return pad_detections(fields, det_valid, int(self.max_detections))
