"""The ONNX NonMaxSuppression tail of end-to-end exports equals the Keras class-aware NMS."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

from keras_rtmdet.export.onnx_nms import nms_graph
from keras_rtmdet.ops.nms import batched_nms_keep
from tests.test_case import to_numpy



def candidates(batch=2, count=300, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (batch, count, 2))
    wh = rng.uniform(5, 60, (batch, count, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    scores = -np.sort(-rng.uniform(0, 1, (batch, count)), axis=1).astype(np.float32)
    labels = rng.integers(0, classes, (batch, count)).astype(np.int32)
    valid = rng.uniform(size=(batch, count)) < 0.9
    return boxes, scores, labels, valid


def onnx_keep(boxes, scores, labels, valid, iou, classes=4, max_per_class=1000, label_type=TensorProto.INT32):
    model = nms_graph(classes, iou, max_per_class, opset=17, ir_version=8, label_type=label_type)
    runner = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = dict(zip(["candidate_boxes", "candidate_scores", "candidate_labels", "candidate_valid"],
                     [boxes, scores, labels, valid]))
    return runner.run(None, feeds)[0]


@pytest.mark.parametrize("iou", [0.1, 0.5, 0.65])
def test_onnx_nms_keeps_what_the_keras_nms_keeps(iou):
    boxes, scores, labels, valid = candidates(seed=int(iou * 100))
    expected = to_numpy(batched_nms_keep(boxes, scores, labels, valid, iou, method="keras"))
    kept = onnx_keep(boxes, scores, labels, valid, iou)
    assert kept.dtype == np.bool_ and kept.shape == valid.shape
    np.testing.assert_array_equal(kept, expected)
    assert 0 < kept.sum() < valid.sum()


def test_no_valid_candidate_keeps_nothing_and_int64_labels_are_taken():
    boxes, scores, labels, valid = candidates()
    kept = onnx_keep(boxes, scores, labels.astype(np.int64), np.zeros_like(valid), 0.5, label_type=TensorProto.INT64)
    assert not kept.any()
