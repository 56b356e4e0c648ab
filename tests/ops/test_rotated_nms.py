"""Rotated NMS: the keras.ops and TensorFlow paths against a plain greedy loop."""

import keras
import numpy as np
import pytest

from keras_rtmdet.ops.rotated_boxes import rotated_iou
from keras_rtmdet.ops.rotated_nms import rotated_nms_keep
from tests.test_case import to_numpy

METHODS = ["keras", "greedy", "tensorflow"] if keras.config.backend() == "tensorflow" else ["keras", "greedy"]


def greedy_reference(boxes, labels, valid, threshold):
    ious = to_numpy(rotated_iou(boxes, boxes))
    keep = np.zeros(len(boxes), bool)
    for j in range(len(boxes)):
        if valid[j] and not any(keep[i] and labels[i] == labels[j] and ious[i, j] > threshold for i in range(j)):
            keep[j] = True
    return keep


def random_candidates(seed, batch=2, m=300, classes=3):
    rng = np.random.default_rng(seed)
    shape = (batch, m)
    boxes = np.stack(
        [
            rng.uniform(0, 100, shape),
            rng.uniform(0, 100, shape),
            rng.uniform(5, 30, shape),
            rng.uniform(5, 30, shape),
            rng.uniform(-1.5, 1.5, shape),
        ],
        -1,
    ).astype("float32")
    scores = np.sort(rng.uniform(0, 1, shape), axis=1)[:, ::-1].astype("float32")
    labels = rng.integers(0, classes, shape).astype("int32")
    valid = np.arange(m)[None] < np.array([[m * 2 // 3], [m // 2]])[:batch]
    valid &= rng.uniform(size=shape) > 0.1
    return boxes, np.ascontiguousarray(scores), labels, valid


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("threshold", [0.1, 0.5])
def test_rotated_nms_equals_greedy(method, threshold):
    boxes, scores, labels, valid = random_candidates(seed=0)
    keep = to_numpy(rotated_nms_keep(boxes, scores, labels, valid, threshold, method=method, block=128))
    for b in range(len(boxes)):
        expected = greedy_reference(boxes[b], labels[b], valid[b], threshold)
        np.testing.assert_array_equal(keep[b], expected)
    assert 0 < keep.sum() < valid.sum()


def test_classes_do_not_suppress_each_other_and_invalid_slots_never_survive():
    box = [50.0, 50.0, 20.0, 10.0, 0.2]
    boxes = np.array([[box, box, box, box]], "float32")
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], "float32")
    labels = np.array([[0, 0, 1, 1]], "int32")
    valid = np.array([[True, True, True, False]])
    for method in METHODS:
        keep = to_numpy(rotated_nms_keep(boxes, scores, labels, valid, 0.1, method=method))
        np.testing.assert_array_equal(keep, [[True, False, True, False]])


def test_no_valid_candidate_keeps_nothing():
    boxes, scores, labels, _ = random_candidates(seed=1, m=40)
    for method in METHODS:
        keep = to_numpy(rotated_nms_keep(boxes, scores, labels, np.zeros(boxes.shape[:2], bool), 0.1, method=method))
        assert not keep.any()


def test_unknown_method_is_refused():
    boxes, scores, labels, valid = random_candidates(seed=2, m=8)
    with pytest.raises(ValueError, match="rotated NMS method"):
        rotated_nms_keep(boxes, scores, labels, valid, 0.1, method="torchvision")
