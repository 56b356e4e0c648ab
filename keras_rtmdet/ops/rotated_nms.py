"""Class-aware rotated NMS behind one function, `rotated_nms_keep`.

The (B, M, M) same-class IoU matrix is computed with the exact
`rotated_iou` in row chunks; the greedy suppression then runs natively
(`tf.image.non_max_suppression_overlaps`) on TensorFlow, and otherwise as the
`keras.ops` fixed-point iteration below (what PyTorch and JAX run). The
`greedy` method needs no matrix: one kept box per step, its IoU with every
candidate; it is what a captured torch graph runs (`capturing_graph`: the
matrix path skips empty tiles and stops iterating on values read back).
`tests/ops/test_rotated_nms.py` checks that all give the same mask.
"""

import keras
from keras import ops

from keras_rtmdet.ops.graph_capture import bounded_while_loop
from keras_rtmdet.ops.graph_capture import capturing_graph
from keras_rtmdet.ops.rotated_boxes import rotated_iou

ROTATED_NMS_METHODS = ("auto", "keras", "tensorflow", "greedy")
# Side of the IoU tiles: bounds the (B, block, block, 16) working set.
DEFAULT_BLOCK = 512


def _concrete_bool(x):
    """`bool(x)` when `x` is a concrete (eager) value, None inside a traced function.

    Eager callers (PyTorch, `detect` on JAX) then branch in Python: JAX
    would otherwise compile every `cond` / `while_loop` body anew per call.
    """
    try:
        return bool(ops.convert_to_numpy(x))
    except Exception:
        return None


def _tile_if(needed, compute, zeros):
    concrete = _concrete_bool(needed)
    if concrete is None:
        return ops.cond(needed, compute, lambda: zeros)
    return compute() if concrete else zeros


def same_class_overlaps(boxes, labels, valid, block=DEFAULT_BLOCK):
    """(B, M, M) rotated IoU of each candidate i with each later candidate j > i of its class.

    Entries with j ≤ i, across classes or with an invalid candidate are 0:
    greedy NMS on score-sorted candidates reads only the upper triangle. The
    matrix is computed in `block`² tiles, and a tile is skipped (at run
    time, with `ops.cond`) when no image has a valid candidate among its
    rows or among its columns: valid candidates form a prefix after score
    sorting, so the cost follows the number of candidates above the score
    threshold rather than the static `M`.

    The class mask replaces mmcv's class-offset trick (shifting the centres
    by label·(max coordinate + 1)): the same suppression, without the
    rounding of the shifted centres in float32.
    """
    batch, m = boxes.shape[0], boxes.shape[1]
    rows = []
    for r in range(0, m, block):
        r_end = min(r + block, m)
        tiles = []
        for c in range(0, m, block):
            c_end = min(c + block, m)
            zeros = ops.zeros((batch if batch is not None else ops.shape(boxes)[0], r_end - r, c_end - c), "float32")
            if c_end <= r + 1:
                tiles.append(zeros)
                continue
            needed = ops.logical_and(ops.any(valid[:, r:r_end]), ops.any(valid[:, c:c_end]))
            tiles.append(
                _tile_if(
                    needed,
                    lambda r=r, r_end=r_end, c=c, c_end=c_end: rotated_iou(boxes[:, r:r_end], boxes[:, c:c_end]),
                    zeros,
                )
            )
        rows.append(ops.concatenate(tiles, axis=2) if len(tiles) > 1 else tiles[0])
    ious = ops.concatenate(rows, axis=1) if len(rows) > 1 else rows[0]
    order = ops.arange(m)
    later = order[:, None] < order[None, :]
    same = ops.logical_and(labels[:, :, None] == labels[:, None, :], ops.logical_and(valid[:, :, None], valid[:, None, :]))
    return ops.where(ops.logical_and(same, later[None]), ious, 0.0)


def overlap_nms_keep_keras(overlaps, valid, iou_threshold):
    """Greedy NMS from an IoU matrix, in `keras.ops`, for score-sorted candidates.

    Greedy NMS keeps candidate j iff it is valid and no kept i < j overlaps
    it by more than the threshold. That recursion has one solution;
    iterating `keep ← valid ∧ ¬(keep · A)` from `keep = valid` (A =
    `overlaps > threshold`, upper-triangular as `same_class_overlaps` gives
    it) fixes one more link of the longest suppression chain per step, so it
    stops at the exact greedy result after a few iterations in practice (M at
    most), each one (B, M) × (B, M, M).
    """
    m = overlaps.shape[1]
    suppresses = ops.cast(overlaps > iou_threshold, "float32")

    def step(keep):
        hits = ops.einsum("bi,bij->bj", ops.cast(keep, "float32"), suppresses)
        return ops.logical_and(valid, hits < 0.5)

    keep = ops.convert_to_tensor(valid, "bool")
    if _concrete_bool(ops.any(keep)) is not None:
        for _ in range(max(m, 1)):
            new = step(keep)
            if not _concrete_bool(ops.any(ops.logical_xor(new, keep))):
                break
            keep = new
        return keep

    def cond(keep, changed):
        return changed

    def body(keep, changed):
        new = step(keep)
        return new, ops.any(ops.logical_xor(new, keep))

    keep, _ = ops.while_loop(cond, body, (keep, ops.convert_to_tensor(True)), maximum_iterations=max(m, 1))
    return keep


def greedy_rotated_keep(boxes, labels, valid, iou_threshold, max_output):
    """Greedy class-aware rotated NMS, one kept box per image and step, without an (M, M) matrix.

    Each step keeps every image's first still-eligible candidate and drops the
    eligible ones of its class that it overlaps by more than the threshold;
    it stops when nothing is eligible or after `max_output` steps.
    """
    m = boxes.shape[1]
    positions = ops.arange(0, m)  # jax2onnx traces arange only with an explicit start and stop

    def cond(eligible, keep):
        return ops.any(eligible)

    def body(eligible, keep):
        first = ops.argmax(ops.cast(eligible, "int32"), axis=1)
        selected = ops.logical_and(positions[None, :] == first[:, None], ops.any(eligible, axis=1, keepdims=True))
        chosen = ops.take_along_axis(boxes, ops.reshape(first, (-1, 1, 1)), axis=1)
        chosen_label = ops.take_along_axis(labels, first[:, None], axis=1)
        overlaps = ops.logical_and(rotated_iou(chosen, boxes)[:, 0, :] > iou_threshold, labels == chosen_label)
        eligible = ops.logical_and(eligible, ops.logical_not(ops.logical_or(overlaps, selected)))
        return eligible, ops.logical_or(keep, selected)

    _, keep = bounded_while_loop(cond, body, (valid, ops.zeros_like(valid)), min(int(max_output), m))
    return keep


def _resolve_method(method):
    if method not in ROTATED_NMS_METHODS:
        raise ValueError(f"Unknown rotated NMS method {method!r}; choose one of {ROTATED_NMS_METHODS}.")
    if capturing_graph() and method in ("auto", "keras"):
        return "greedy"
    if method == "auto":
        return "tensorflow" if keras.config.backend() == "tensorflow" else "keras"
    return method


def rotated_nms_keep(boxes, scores, labels, valid, iou_threshold, method="auto", block=DEFAULT_BLOCK, max_output=None):
    """Class-aware rotated NMS over padded, score-sorted candidates.

    Suppresses a box when a kept higher-scored box of the same class
    overlaps it with rotated IoU > `iou_threshold` (mmcv's CUDA rule; its CPU
    kernel uses ≥, which differs only at exact ties).

    Args:
        boxes: (B, M, 5) rboxes, sorted by descending `scores`.
        scores: (B, M). labels: (B, M) int. valid: (B, M) bool.
        iou_threshold: float.
        method: `"auto"` (native on TensorFlow), `"keras"`, `"tensorflow"`
            or `"greedy"` (what `"auto"` and `"keras"` run in a captured torch graph).
        block: side of the IoU tiles (see `same_class_overlaps`).
        max_output: the caller needs only this many survivors per image; the
            `greedy` path stops there (default M).
    Returns: (B, M) bool keep mask.
    """
    method = _resolve_method(method)
    boxes = ops.cast(ops.convert_to_tensor(boxes), "float32")
    labels = ops.convert_to_tensor(labels)
    valid = ops.convert_to_tensor(valid, "bool")
    if method == "greedy":
        return greedy_rotated_keep(boxes, labels, valid, iou_threshold, max_output or boxes.shape[1])
    overlaps = same_class_overlaps(boxes, labels, valid, block)
    if method == "keras":
        return overlap_nms_keep_keras(overlaps, valid, iou_threshold)
    from keras_rtmdet.ops import nms_native

    # TensorFlow's kernel may read either triangle.
    symmetric = overlaps + ops.transpose(overlaps, (0, 2, 1))
    return nms_native.overlap_nms_keep_tensorflow(symmetric, scores, valid, iou_threshold)
