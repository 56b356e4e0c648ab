"""The functions an exported detector serves, as Keras models over a trained RTMDet, RTMDet-Ins or RTMDet-R.

Every export format is built from three stages of one detector (weights shared):

* `"raw"`: uint8 images (B, H, W, 3) → every prior's decoded `boxes`
  (B, N, 4) xyxy in the input images' pixels (RTMDet-R: (B, N, 5) rboxes
  cx, cy, w, h, angle in radians; every stage's boxes are the model's
  `variant.box_format`) and class `scores` (B, N, C)
  (sigmoid), plus RTMDet-Ins' `kernel_preds` (B, N, G) and `mask_feat`
  (B, H_t/8, W_t/8, P): the NMS is left to the server.
* `"candidates"`: images → the NMS input of `DenseDetector.postprocess`: the
  (B, M) top (prior, class) pairs by score, decoded and rescaled to the
  input images, with what the last stage needs.
* `"front"`: both of the above from one pass of the network (an ONNX export
  writes it once and cuts the raw or the candidate graph out of it).
* `"detections"`: candidates + the NMS survivors `keep` (B, M) → the padded
  detections `boxes` (B, K, 4), `scores`, `labels`, `num_detections` (B,)
  and RTMDet-Ins' `masks` (B, K, H, W) bool, as `predict` returns them.
* `"end_to_end"`: images → those detections in one graph, the NMS the
  model's `graph_nms_method` (plain `keras.ops`: a loop of elementwise ops,
  no NMS operator), for formats without a native NMS that fits (LiteRT;
  ONNX for a model whose NMS is not axis-aligned, `variant.axis_aligned_nms`:
  RTMDet-R's rotated NMS).

An end-to-end export chains candidates → a format's native NMS →
detections, or traces `"end_to_end"`; a model whose NMS is the server's
exports `"raw"`. Images in
one batch share their size; H and W are fixed at export, or dynamic where
the backend's exporter allows it (TensorFlow).
"""

import keras
from keras import ops

from keras_rtmdet.ops.letterbox import fitted_size
from keras_rtmdet.ops.letterbox import letterbox
from keras_rtmdet.ops.dynamic_masks import paste_masks

SERVING_STAGES = ("raw", "candidates", "front", "detections", "end_to_end")
# `candidate_detections`' keys, as exported names (the NMS reads the first four).
CANDIDATE_NAMES = (
    "candidate_boxes",
    "candidate_scores",
    "candidate_labels",
    "candidate_valid",
    "candidate_prior_index",
)
DETECTION_NAMES = ("boxes", "scores", "labels", "num_detections")


def serving_names(detector, stage):
    """(input names, output names) of a stage, in the order its function takes and returns them.

    The per-prior outputs RTMDet-Ins adds (`kernel_preds`, `mask_feat`) are
    both raw outputs and inputs of its mask decoding after the NMS.
    """
    fields = tuple(detector.detection_field_inputs)
    masks = ("masks",) if fields else ()
    if stage == "raw":
        return ("images",), ("boxes", "scores", *fields)
    if stage == "candidates":
        return ("images",), (*CANDIDATE_NAMES, *fields)
    if stage == "front":
        return ("images",), ("boxes", "scores", *fields, *CANDIDATE_NAMES)
    if stage == "detections":
        inputs = tuple(name for name in CANDIDATE_NAMES if name != "candidate_valid")
        return (*inputs, "keep", *fields), (*DETECTION_NAMES, *masks)
    if stage == "end_to_end":
        return ("images",), (*DETECTION_NAMES, *masks)
    raise ValueError(f"Unknown serving stage {stage!r}; one of {SERVING_STAGES}.")


class ServingGraph(keras.Model):
    """One serving stage of `detector` (see the module docstring).

    Args:
        detector: an `RTMDet`, `RTMDetIns` or `RTMDetRotated`,
            post-processing settings as they should be served.
        stage: one of `SERVING_STAGES`.
        input_size: (H, W) of the served images, or None for any size
            (TensorFlow only: the resize size is then computed in the graph).
        channel_order: `"rgb"` or `"bgr"`, the order of the served images.

    `call` takes the stage's inputs (`serving_names`): the images tensor, or
    a list of tensors for `"detections"`; it returns a tuple in the order of
    the stage's output names.
    """

    def __init__(self, detector, stage, input_size=None, channel_order="rgb", **kwargs):
        super().__init__(**kwargs)
        if stage not in SERVING_STAGES:
            raise ValueError(f"Unknown serving stage {stage!r}; one of {SERVING_STAGES}.")
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}.")
        self.detector = detector
        self.stage = stage
        self.input_size = None if input_size is None else tuple(int(s) for s in input_size)
        self.channel_order = channel_order
        self.input_names, self.output_names = serving_names(detector, stage)

    @property
    def image_size(self):
        return tuple(self.detector.image_size)

    def call(self, inputs):
        if self.stage == "detections":
            return self._detections(dict(zip(self.input_names, inputs, strict=True)))
        images = inputs
        flip = self.channel_order != self.detector.input_channel_order
        padded, scale_factors = letterbox(images, self.image_size, flip_channels=flip)
        outputs = self.detector(padded, training=False)
        fields = tuple(outputs[name] for name in self.detector.detection_field_inputs)
        if self.stage in ("raw", "front"):
            raw = (self._decoded_priors(outputs, scale_factors), ops.sigmoid(outputs["cls_logits"]), *fields)
            if self.stage == "raw":
                return raw
        found = self.detector.candidate_detections(outputs, self.image_size, scale_factors)
        if self.stage == "end_to_end":
            return self._end_to_end(outputs, found)
        candidates = tuple(found[name.removeprefix("candidate_")] for name in CANDIDATE_NAMES)
        return (*raw, *candidates) if self.stage == "front" else (*candidates, *fields)

    def _end_to_end(self, outputs, candidates):
        detector = self.detector
        keep = detector.suppress(
            candidates["boxes"], candidates["scores"], candidates["labels"], candidates["valid"],
            method=detector.graph_nms_method,
        )
        fields = {name: outputs[name] for name in detector.detection_field_inputs}
        tensors = {f"candidate_{name}": value for name, value in candidates.items()}
        return self._detections({**tensors, **fields, "keep": keep})

    def _decoded_priors(self, outputs, scale_factors):
        """(B, N, 4) xyxy of every prior, clamped to the padded input, in original pixels (RTMDet-R: (B, N, 5))."""
        detector = self.detector
        priors = detector.priors(self.image_size)
        every = ops.zeros_like(outputs["cls_logits"][..., 0], "int32") + ops.arange(0, priors.shape[0], dtype="int32")
        boxes = detector.decode_candidates(outputs, {"prior_index": every}, priors, self.image_size)
        return detector.rescale_boxes(boxes, scale_factors)

    def _detections(self, tensors):
        detector = self.detector
        candidates = {name.removeprefix("candidate_"): tensors[name] for name in CANDIDATE_NAMES if name in tensors}
        outputs = {name: tensors[name] for name in detector.detection_field_inputs}
        detections = detector.finish_detections(outputs, candidates, tensors["keep"], self.image_size)
        result = tuple(detections[name] for name in DETECTION_NAMES)
        if "mask_logits" not in detections:
            return result
        return (*result, self._masks(detections["mask_logits"]))

    def _masks(self, mask_logits):
        """(B, K, H, W) bool masks at the served images' size (`RTMDetIns.finalize_predictions`)."""
        if self.input_size is None:
            raise NotImplementedError("Masks at a dynamic image size are not supported; export a fixed input_size.")
        height, width = self.input_size
        _, _, w_scale, h_scale = fitted_size(height, width, self.image_size)
        return paste_masks(
            mask_logits,
            self.detector.strides[0],
            (w_scale, h_scale),
            (height, width),
            self.detector.mask_threshold,
        )
