"""TensorFlow SavedModel export with serving signatures on raw uint8 images.

Signatures (both take `images` (B, H, W, 3) uint8 and share the weights):

* `serving_default`: end-to-end detections, padded as `predict` pads them:
  `boxes` (B, K, 4) xyxy in the input images' pixels (RTMDet-R: (B, K, 5)
  rboxes cx, cy, w, h, angle in radians), `scores` (B, K), `labels` (B, K)
  int32 (−1 after `num_detections` (B,)); RTMDet-Ins adds `masks`
  (B, K, H, W) bool. RTMDet's NMS is TensorFlow's
  `combined_non_max_suppression` (which TF-TRT turns into TensorRT's NMS
  plugin); RTMDet-Ins needs the kept candidates' indices for their masks,
  which the combined op does not return, and RTMDet-R's boxes are rotated
  (`variant.axis_aligned_nms` False), so both run the model's own
  class-aware NMS (`suppress`: `tf.image.non_max_suppression` per image,
  RTMDet-R's `non_max_suppression_overlaps` on rotated IoUs).
* `raw`: every prior's decoded `boxes` (B, N, 4) (RTMDet-R: (B, N, 5)) and
  `scores` (B, N, C) (and RTMDet-Ins' `kernel_preds`, `mask_feat`), the NMS
  left to the server.

Needs the TensorFlow backend: Keras on torch exports SavedModels only
through torch_xla, and on JAX through jax2tf, which this graph (its NMS) does
not pass; `keras_rtmdet.export.export` re-runs the export under TensorFlow
for models of the other backends.
"""

import keras

from keras_rtmdet.export.serving_graph import CANDIDATE_NAMES
from keras_rtmdet.export.serving_graph import ServingGraph


def combined_nms(detector, candidates):
    """RTMDet's class-aware NMS and top-K as one `tf.image.combined_non_max_suppression`.

    Each (prior, class) candidate scores only in its own class, so the op's
    per-class NMS is the model's class-aware one, and `max_total_size` =
    `max_detections` its top-K. Padded slots are −1 as in `predict`.
    """
    import tensorflow as tf

    max_detections = int(detector.max_detections)
    classes = tf.range(detector.num_classes, dtype=candidates["labels"].dtype)
    member = tf.logical_and(candidates["labels"][..., None] == classes, candidates["valid"][..., None])
    class_scores = tf.where(member, candidates["scores"][..., None], -1.0)
    boxes, scores, labels, count = tf.image.combined_non_max_suppression(
        candidates["boxes"][:, :, None, :],
        class_scores,
        max_output_size_per_class=max_detections,
        max_total_size=max_detections,
        iou_threshold=float(detector.iou_threshold),
        score_threshold=-0.5,
        pad_per_class=False,
        clip_boxes=False,
    )
    filled = tf.range(max_detections)[None, :] < count[:, None]
    return {
        "boxes": tf.where(filled[..., None], boxes, -1.0),
        "scores": tf.where(filled, scores, -1.0),
        "labels": tf.where(filled, tf.cast(labels, tf.int32), -1),
        "num_detections": tf.cast(count, tf.int32),
    }


class ServingFunctions:
    """The two signatures' functions over one detector."""

    def __init__(self, detector, input_size=None, channel_order="rgb"):
        self.detector = detector
        self.raw_graph = ServingGraph(detector, "raw", input_size, channel_order)
        self.candidate_graph = ServingGraph(detector, "candidates", input_size, channel_order)
        self.detection_graph = ServingGraph(detector, "detections", input_size, channel_order)

    def raw(self, images):
        return dict(zip(self.raw_graph.output_names, self.raw_graph(images), strict=True))

    def end_to_end(self, images):
        detector = self.detector
        found = dict(zip(self.candidate_graph.output_names, self.candidate_graph(images), strict=True))
        candidates = {name.removeprefix("candidate_"): found[name] for name in CANDIDATE_NAMES}
        if not detector.detection_field_inputs and detector.variant.axis_aligned_nms:
            return combined_nms(detector, candidates)
        keep = detector.suppress(candidates["boxes"], candidates["scores"], candidates["labels"], candidates["valid"])
        found["keep"] = keep
        inputs = [found[name] for name in self.detection_graph.input_names]
        return dict(zip(self.detection_graph.output_names, self.detection_graph(inputs), strict=True))


def export_saved_model(detector, path, input_size=None, batch_size=None, channel_order="rgb"):
    """Write a SavedModel with the `serving_default` and `raw` signatures (module docstring)."""
    if keras.config.backend() != "tensorflow":
        raise RuntimeError(
            "SavedModel export runs on the TensorFlow backend; use keras_rtmdet.export.export, "
            "which re-runs it under KERAS_BACKEND=tensorflow."
        )
    import tensorflow as tf

    if detector.detection_field_inputs and input_size is None:
        raise ValueError(
            f"{type(detector).__name__} exports masks at the served images' size: give a fixed input_size (H, W)."
        )
    height, width = input_size if input_size is not None else (None, None)
    spec = tf.TensorSpec((batch_size, height, width, 3), tf.uint8, name="images")
    functions = ServingFunctions(detector, input_size, channel_order)
    archive = keras.export.ExportArchive()
    archive.track(detector)
    archive.add_endpoint("serving_default", functions.end_to_end, input_signature=[spec])
    archive.add_endpoint("raw", functions.raw, input_signature=[spec])
    archive.write_out(path, verbose=False)
    return path

