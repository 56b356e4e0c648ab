"""Class-aware non-maximum suppression behind one function.

`batched_nms_keep` picks a backend-native kernel when one exists
(`tf.image.non_max_suppression` on TensorFlow, `torchvision.ops.nms` on
PyTorch when torchvision is installed) and otherwise the pure `keras.ops`
implementation below, which is jit-friendly and is what JAX runs. Every path
gets the same inputs and returns the same mask; `tests/ops/nms_test.py`
checks that they agree.
"""

import keras
from keras import ops

from keras_rtmdet.ops.boxes import pairwise_iou

NMS_METHODS = ("auto", "keras", "tensorflow", "torchvision")


def class_offset_boxes(boxes, labels, valid):
    """Shift each class's boxes so that boxes of different classes never overlap.

    This is mmcv's `batched_nms` trick: `boxes + label · (max_coordinate + 1)`
    with the maximum over the image's candidate boxes. Using the same shifted
    boxes as the reference keeps IoU rounding identical to it.

    Args:
        boxes: (B, M, 4) xyxy. labels: (B, M) int. valid: (B, M) bool.
    Returns: (B, M, 4) shifted boxes.
    """
    neg = ops.full_like(boxes, -1e30)
    max_coord = ops.max(ops.where(valid[..., None], boxes, neg), axis=(1, 2))
    max_coord = ops.where(ops.any(valid, axis=1), max_coord, ops.zeros_like(max_coord))
    offsets = ops.cast(labels, boxes.dtype) * (max_coord[:, None] + 1.0)
    return boxes + offsets[..., None]


def nms_keep_keras(boxes, valid, iou_threshold):
    """Greedy NMS in `keras.ops` on score-sorted boxes.

    Greedy NMS keeps box i iff no *kept* earlier box overlaps it by more than
    the threshold. That rule has a unique fixed point, reached by iterating
    `keep = valid & ~any_j(keep_j & overlap_ji)` from `keep = valid`: after t
    rounds the first t boxes are final, and in practice the chains of
    suppression are short, so a few rounds suffice. Each round is one batched
    matrix-vector product, which maps well onto accelerators and `jit`.

    Memory: a (B, M, M) overlap matrix.

    Args:
        boxes: (B, M, 4) xyxy, sorted by descending score along M.
        valid: (B, M) bool, candidates taking part.
    Returns: (B, M) bool keep mask.
    """
    m = boxes.shape[1]
    iou = pairwise_iou(boxes, boxes)
    index = ops.arange(m)
    earlier = ops.expand_dims(index, 1) < ops.expand_dims(index, 0)
    overlap = ops.logical_and(iou > iou_threshold, ops.expand_dims(earlier, 0))
    overlap = ops.logical_and(overlap, ops.expand_dims(valid, 2))
    overlap = ops.cast(overlap, "float32")

    def body(keep, changed):
        hits = ops.einsum("bj,bji->bi", ops.cast(keep, "float32"), overlap)
        new_keep = ops.logical_and(valid, hits < 0.5)
        return new_keep, ops.any(ops.not_equal(new_keep, keep))

    keep, _ = ops.while_loop(
        lambda keep, changed: changed,
        body,
        (valid, ops.convert_to_tensor(True)),
        maximum_iterations=m,
    )
    return keep


def _resolve_method(method):
    if method not in NMS_METHODS:
        raise ValueError(f"Unknown NMS method {method!r}; choose one of {NMS_METHODS}.")
    if method != "auto":
        return method
    backend = keras.config.backend()
    if backend == "tensorflow":
        return "tensorflow"
    if backend == "torch":
        from keras_rtmdet.ops import nms_native

        if nms_native.torchvision_available():
            return "torchvision"
    return "keras"


def batched_nms_keep(boxes, scores, labels, valid, iou_threshold, method="auto"):
    """Class-aware NMS over padded, score-sorted candidates.

    Suppresses a box when a kept higher-scored box *of the same class*
    overlaps it with IoU > `iou_threshold` (strict, as mmcv).

    Args:
        boxes: (B, M, 4) xyxy pixels, sorted by descending `scores`.
        scores: (B, M) float.
        labels: (B, M) int class ids.
        valid: (B, M) bool; invalid slots neither survive nor suppress.
        iou_threshold: float.
        method: `"auto"`, `"keras"`, `"tensorflow"` or `"torchvision"`.
    Returns: (B, M) bool keep mask.
    """
    method = _resolve_method(method)
    boxes = ops.convert_to_tensor(boxes)
    scores = ops.convert_to_tensor(scores)
    labels = ops.convert_to_tensor(labels)
    valid = ops.convert_to_tensor(valid, "bool")
    shifted = class_offset_boxes(boxes, labels, valid)
    if method == "keras":
        return nms_keep_keras(shifted, valid, iou_threshold)
    from keras_rtmdet.ops import nms_native

    if method == "tensorflow":
        return nms_native.nms_keep_tensorflow(shifted, scores, valid, iou_threshold)
    return nms_native.nms_keep_torchvision(shifted, scores, valid, iou_threshold)
