"""Fixed-shape building blocks of dense-detector post-processing.

Everything here works on padded tensors with static sizes, so it compiles
under `jit` (JAX, TF XLA) as well as running eagerly on PyTorch.
"""

from keras import ops


def select_candidates(level_scores, score_threshold, nms_pre, max_candidates):
    """Pick (prior, class) candidates the way mmdet's `filter_scores_and_topk` does.

    Per level: every pair with score > `score_threshold` (multi-label: a prior
    can yield several classes), at most `nms_pre` of them by score. Then over
    all levels at most `max_candidates`, by score: a static cap that makes the
    shapes fixed (mmdet has none; with its `nms_pre=30000` the cap is what
    bounds NMS memory, see `RTMDet` for the default).

    Args:
        level_scores: list of (B, N_l, C) class probabilities, finest first.
    Returns:
        dict of (B, M) tensors sorted by descending score: `scores`,
        `labels` (class id), `prior_index` (into the concatenated priors) and
        `valid` (bool; False in padding slots).
    """
    num_classes = level_scores[0].shape[-1]
    scores, flat_index = [], []
    offset = 0
    for level in level_scores:
        n = level.shape[1]
        flat = ops.reshape(level, (-1, n * num_classes))
        k = min(nms_pre, max_candidates, n * num_classes)
        values, index = ops.top_k(flat, k)
        scores.append(values)
        flat_index.append(index + offset * num_classes)
        offset += n
    scores = ops.concatenate(scores, axis=1)
    flat_index = ops.concatenate(flat_index, axis=1)
    scores = ops.where(scores > score_threshold, scores, ops.full_like(scores, -1.0))
    k = min(max_candidates, scores.shape[1])
    scores, order = ops.top_k(scores, k)
    flat_index = ops.take_along_axis(flat_index, order, axis=1)
    prior_index, labels = _divmod(flat_index, num_classes)
    return {
        "scores": scores,
        "labels": labels,
        "prior_index": prior_index,
        "valid": scores > score_threshold,
    }


def _divmod(index, divisor):
    """`(index // divisor, index % divisor)` of non-negative int32, without integer division.

    jax2onnx cannot lower integer `rem` (which `//` and `%` use) on a symbolic
    batch size. A float32 quotient is close; a second division of its (small)
    integer remainder brings it within one (compilers divide by multiplying
    with the reciprocal), and a last comparison makes it exact.
    """
    def floor_div(x):
        return ops.cast(ops.floor(ops.cast(x, "float32") / float(divisor)), index.dtype)

    quotient = floor_div(index)
    quotient = quotient + floor_div(index - quotient * divisor)
    remainder = index - quotient * divisor
    quotient = quotient + ops.cast(remainder >= divisor, index.dtype) - ops.cast(remainder < 0, index.dtype)
    return quotient, index - quotient * divisor


def gather_rows(values, index):
    """`values[b, index[b, m]]`: (B, N, D) or (N, D) with (B, M) → (B, M, D)."""
    if len(values.shape) == 2:
        return ops.take(values, index, axis=0)
    return ops.take_along_axis(values, ops.expand_dims(index, -1), axis=1)


def top_detections(keep, scores, max_detections):
    """Indices of the first `max_detections` kept candidates, by score.

    Returns `(order, valid)`, both (B, K) with K = min(max_detections, M).
    """
    key = ops.where(keep, scores, ops.full_like(scores, -2.0))
    k = min(max_detections, scores.shape[1])
    values, order = ops.top_k(key, k)
    return order, values > -1.5


def pad_detections(fields, valid, max_detections, fill_value=-1):
    """Pad each (B, K, ...) field to K = `max_detections`; empty slots get `fill_value`."""
    out = {}
    k = valid.shape[1]
    for name, x in fields.items():
        mask = valid
        for _ in range(len(x.shape) - 2):
            mask = ops.expand_dims(mask, -1)
        x = ops.where(mask, x, ops.cast(ops.full_like(x, fill_value), x.dtype))
        if k < max_detections:
            pad = [[0, 0], [0, max_detections - k]] + [[0, 0]] * (len(x.shape) - 2)
            x = ops.pad(x, pad, constant_values=fill_value)
        out[name] = x
    out["num_detections"] = ops.sum(ops.cast(valid, "int32"), axis=1)
    return out
