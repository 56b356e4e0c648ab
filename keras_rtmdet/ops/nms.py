"""Class-aware non-maximum suppression behind one function.

`batched_nms_keep` picks a backend-native kernel when one exists
(`tf.image.non_max_suppression` on TensorFlow, `torchvision.ops.nms` on
PyTorch when torchvision is installed) and otherwise the pure `keras.ops`
implementation below, which is jit-friendly and is what JAX runs. Every path
gets the same inputs and returns the same mask; `tests/ops/test_nms.py`
checks that they agree.
"""

import keras
from keras import ops

from keras_rtmdet.ops.boxes import pairwise_iou
from keras_rtmdet.ops.graph_capture import bounded_while_loop
from keras_rtmdet.ops.graph_capture import capturing_graph

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


def nms_keep_keras(boxes, valid, iou_threshold, max_output=None):
    """Greedy NMS in `keras.ops` on score-sorted boxes, one kept box per step.

    Each step keeps, in every image, the first still-eligible box and drops
    the eligible boxes that overlap it by more than the threshold. It stops
    after `max_output` steps or when nothing is eligible, so it costs
    O(max_output · M) work and O(B · M) memory, never an (M, M) matrix, and
    it compiles under `jit` and into captured torch graphs (a
    `bounded_while_loop` with fixed shapes).

    Args:
        boxes: (B, M, 4) xyxy, sorted by descending score along M.
        valid: (B, M) bool, candidates taking part.
        max_output: keep at most this many boxes per image (default M).
    Returns: (B, M) bool keep mask.
    """
    m = boxes.shape[1]
    max_output = m if max_output is None else min(int(max_output), m)
    positions = ops.arange(m)

    def cond(eligible, keep, step):
        return ops.logical_and(step < max_output, ops.any(eligible))

    def body(eligible, keep, step):
        first = ops.argmax(ops.cast(eligible, "int32"), axis=1)
        selected = ops.logical_and(
            ops.expand_dims(positions, 0) == ops.expand_dims(first, 1),
            ops.any(eligible, axis=1, keepdims=True),
        )
        chosen = ops.take_along_axis(boxes, ops.reshape(first, (-1, 1, 1)), axis=1)
        overlaps = pairwise_iou(chosen, boxes)[:, 0, :] > iou_threshold
        eligible = ops.logical_and(eligible, ops.logical_not(ops.logical_or(overlaps, selected)))
        return eligible, ops.logical_or(keep, selected), step + 1

    _, keep, _ = bounded_while_loop(
        cond,
        body,
        (valid, ops.zeros_like(valid), ops.convert_to_tensor(0, "int32")),
        max_output,
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
    if backend == "torch" and not capturing_graph():
        # torchvision's kernel reads the candidates' count back to the host: not in a captured graph.
        from keras_rtmdet.ops import nms_native

        if nms_native.torchvision_available():
            return "torchvision"
    return "keras"


def batched_nms_keep(boxes, scores, labels, valid, iou_threshold, method="auto", max_output=None):
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
        max_output: the caller needs only this many survivors per image; the
            `keras` and `tensorflow` paths stop there (`torchvision` may keep
            more, all of them after these in score order).
    Returns: (B, M) bool keep mask.
    """
    method = _resolve_method(method)
    boxes = ops.convert_to_tensor(boxes)
    scores = ops.convert_to_tensor(scores)
    labels = ops.convert_to_tensor(labels)
    valid = ops.convert_to_tensor(valid, "bool")
    shifted = class_offset_boxes(boxes, labels, valid)
    if method == "keras":
        return nms_keep_keras(shifted, valid, iou_threshold, max_output)
    from keras_rtmdet.ops import nms_native

    if method == "tensorflow":
        return nms_native.nms_keep_tensorflow(shifted, scores, valid, iou_threshold, max_output)
    return nms_native.nms_keep_torchvision(shifted, scores, valid, iou_threshold)
