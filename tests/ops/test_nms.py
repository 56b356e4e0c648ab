"""Every NMS path returns what greedy, class-aware NMS (mmcv's) returns."""

import keras
import numpy as np
import pytest

from keras_rtmdet.ops import nms_native
from keras_rtmdet.ops.nms import batched_nms_keep
from tests.test_case import to_numpy


def greedy_nms_reference(boxes, scores, labels, valid, iou_threshold):
    """Plain numpy greedy NMS on the class-offset boxes, one image."""
    keep = np.zeros(len(boxes), bool)
    if not valid.any():
        return keep
    offset = labels.astype(np.float32) * (boxes[valid].max() + 1.0)
    shifted = boxes + offset[:, None]
    order = [i for i in np.argsort(-scores, kind="stable") if valid[i]]
    for i in order:
        ok = True
        for j in np.where(keep)[0]:
            a, b = shifted[i], shifted[j]
            iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
            ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if inter / max(union, 1e-6) > iou_threshold:
                ok = False
                break
        keep[i] = ok
    return keep


def random_case(seed, batch=2, num=300, num_classes=3):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 120, (batch, num, 2))
    sizes = rng.uniform(10, 60, (batch, num, 2))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], -1).astype(np.float32)
    scores = -np.sort(-rng.uniform(0, 1, (batch, num)), axis=1).astype(np.float32)
    labels = rng.integers(0, num_classes, (batch, num)).astype(np.int32)
    valid = rng.uniform(size=(batch, num)) < 0.9
    return boxes, scores, labels, valid


def available_methods():
    methods = ["keras"]
    if keras.config.backend() == "tensorflow":
        methods.append("tensorflow")
    if keras.config.backend() == "torch" and nms_native.torchvision_available():
        methods.append("torchvision")
    return methods


@pytest.mark.parametrize("method", available_methods())
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.65])
def test_nms_matches_greedy_reference(method, seed, iou_threshold):
    boxes, scores, labels, valid = random_case(seed)
    keep = to_numpy(batched_nms_keep(boxes, scores, labels, valid, iou_threshold, method=method))
    for b in range(len(boxes)):
        expected = greedy_nms_reference(boxes[b], scores[b], labels[b], valid[b], iou_threshold)
        np.testing.assert_array_equal(keep[b], expected)
    assert 0 < keep.sum() < valid.sum()


@pytest.mark.parametrize("method", available_methods())
def test_nms_edge_cases(method):
    boxes = np.array(
        [[[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5], [50, 50, 60, 60]]],
        np.float32,
    )
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32)
    labels = np.array([[0, 0, 1, 0, 0]], np.int32)
    valid = np.ones((1, 5), bool)
    keep = to_numpy(batched_nms_keep(boxes, scores, labels, valid, 0.5, method=method))
    # Identical boxes of one class suppress; another class survives; a
    # zero-area box overlaps nothing.
    np.testing.assert_array_equal(keep[0], [True, False, True, True, True])
    none = to_numpy(batched_nms_keep(boxes, scores, labels, np.zeros_like(valid), 0.5, method=method))
    assert not none.any()


def test_every_available_path_agrees():
    boxes, scores, labels, valid = random_case(7, num=500, num_classes=2)
    results = [
        to_numpy(batched_nms_keep(boxes, scores, labels, valid, 0.5, method=m)) for m in available_methods()
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@pytest.mark.backends("jax")
def test_nms_compiles_under_jax_jit():
    import jax

    boxes, scores, labels, valid = random_case(3)
    fn = jax.jit(lambda b, s, l, v: batched_nms_keep(b, s, l, v, 0.65))
    np.testing.assert_array_equal(
        np.asarray(fn(boxes, scores, labels, valid)),
        to_numpy(batched_nms_keep(boxes, scores, labels, valid, 0.65, method="keras")),
    )


def test_unknown_method_is_rejected():
    boxes, scores, labels, valid = random_case(0, num=4)
    with pytest.raises(ValueError, match="Unknown NMS method"):
        batched_nms_keep(boxes, scores, labels, valid, 0.5, method="fast")


@pytest.mark.parametrize("method", available_methods())
def test_max_output_keeps_the_highest_scoring_survivors(method):
    boxes, scores, labels, valid = random_case(5)
    full = to_numpy(batched_nms_keep(boxes, scores, labels, valid, 0.5, method="keras"))
    capped = to_numpy(batched_nms_keep(boxes, scores, labels, valid, 0.5, method=method, max_output=10))
    for b in range(len(boxes)):
        first_ten = np.where(full[b])[0][:10]
        np.testing.assert_array_equal(np.where(capped[b])[0][:10], first_ten)
        if method == "keras":
            assert capped[b].sum() == 10
