"""The class-aware NMS of an end-to-end ONNX export, as one ONNX `NonMaxSuppression`.

The exported graph before it gives the (B, M) candidates of
`DenseDetector.candidate_detections` ((prior, class) pairs: each has its own
class); the graph after it reads the (B, M) `keep` mask, as the Keras
post-processing does. Per-class scores (B, C, M) hold each candidate's score
in its own class's row and −1 elsewhere, so ONNX's per-class suppression is
exactly the class-aware NMS over the candidates (IoU > threshold suppresses,
as mmcv).
"""

import numpy as np
from onnx import TensorProto
from onnx import helper
from onnx import numpy_helper

NMS_INPUTS = ("candidate_boxes", "candidate_scores", "candidate_labels", "candidate_valid")


def nms_graph(num_classes, iou_threshold, max_per_class, opset, ir_version, label_type=TensorProto.INT32):
    """ONNX model: (boxes (B, M, 4) xyxy, scores (B, M), labels (B, M) int, valid (B, M) bool) → keep (B, M) bool.

    `label_type`: the ONNX element type of the labels (int64 from torch).
    """
    boxes, scores, labels, valid = NMS_INPUTS
    constants = {
        "classes": np.arange(num_classes, dtype=np.int32),
        "absent": np.asarray(-1.0, np.float32),
        "max_per_class": np.asarray([max_per_class], np.int64),
        "iou_threshold": np.asarray([iou_threshold], np.float32),
        "score_threshold": np.asarray([-0.5], np.float32),
        "last_axis": np.asarray([-1], np.int64),
        "batch_and_box": np.asarray([0, 2], np.int64),
        "one": np.asarray(1.0, np.float32),
        "half": np.asarray(0.5, np.float32),
    }
    nodes = [
        helper.make_node("Cast", [labels], ["labels_int32"], to=TensorProto.INT32),
        helper.make_node("Unsqueeze", ["labels_int32", "last_axis"], ["labels_bm1"]),
        helper.make_node("Equal", ["labels_bm1", "classes"], ["own_class"]),
        helper.make_node("Unsqueeze", [valid, "last_axis"], ["valid_bm1"]),
        helper.make_node("And", ["own_class", "valid_bm1"], ["takes_part"]),
        helper.make_node("Unsqueeze", [scores, "last_axis"], ["scores_bm1"]),
        helper.make_node("Where", ["takes_part", "scores_bm1", "absent"], ["scores_bmc"]),
        helper.make_node("Transpose", ["scores_bmc"], ["scores_bcm"], perm=[0, 2, 1]),
        helper.make_node(
            "NonMaxSuppression",
            [boxes, "scores_bcm", "max_per_class", "iou_threshold", "score_threshold"],
            ["selected"],
            center_point_box=0,
        ),
        helper.make_node("Gather", ["selected", "batch_and_box"], ["selected_slots"], axis=1),
        helper.make_node("Shape", ["selected"], ["selected_shape"], start=0, end=1),
        helper.make_node("Expand", ["one", "selected_shape"], ["hits"]),
        helper.make_node("Shape", [scores], ["slots_shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["slots_shape"],
            ["nothing"],
            value=numpy_helper.from_array(np.zeros(1, np.float32)),
        ),
        helper.make_node("ScatterND", ["nothing", "selected_slots", "hits"], ["kept"]),
        helper.make_node("Greater", ["kept", "half"], ["keep"]),
    ]
    inputs = [
        helper.make_tensor_value_info(boxes, TensorProto.FLOAT, ["batch", "candidates", 4]),
        helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["batch", "candidates"]),
        helper.make_tensor_value_info(labels, label_type, ["batch", "candidates"]),
        helper.make_tensor_value_info(valid, TensorProto.BOOL, ["batch", "candidates"]),
    ]
    outputs = [helper.make_tensor_value_info("keep", TensorProto.BOOL, ["batch", "candidates"])]
    graph = helper.make_graph(
        nodes,
        "class_aware_nms",
        inputs,
        outputs,
        initializer=[numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model
