"""LiteRT export (fp32, fp16, INT8) run in the `ai_edge_litert` interpreter, against `predict`.

Each LiteRT conversion costs ~8 s and each traced SavedModel ~10 s on a CI
core, so the detector is traced once for its three precisions (the
precisions differ only in the converter's settings, and INT8 quantizes the
fp32 conversion) and the instance model is exported at fp32 only.
"""

import contextlib
import json
import os
import re
import shutil

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from tensorflow.lite.python import schema_py_generated as schema

from keras_rtmdet.export import export
from keras_rtmdet.export import litert_export
from keras_rtmdet.export.metadata import metadata_path
from tests.export.export_cases import SERVED
from tests.export.export_cases import assert_same_detections
from tests.export.export_cases import keras_end_to_end
from tests.export.export_cases import served_images
from tests.export.export_cases import tiny_detector
from tests.export.export_cases import tiny_ins
from tests.export.export_cases import top_detection_agreement

# The .tflite is written by TensorFlow whatever the backend (torch / JAX models go through a TF subprocess).
pytestmark = pytest.mark.backend_independent

BUILTIN_OPS = {name for name in vars(schema.BuiltinOperator) if not name.startswith("_")}


@contextlib.contextmanager
def traced_once(cache):
    """`export` reusing the first SavedModel it traces and its fp32 conversion for INT8 (`cache`: a folder)."""
    trace, convert = litert_export.end_to_end_saved_model, litert_export.convert_saved_model
    flatbuffers = {}

    def reuse_trace(detector, folder, *args):
        if not os.path.exists(cache):
            trace(detector, cache, *args)
        shutil.copytree(cache, folder, dirs_exist_ok=True)

    def reuse_fp32(folder, precision):
        kind = "fp32" if precision == "int8" else precision  # INT8 quantizes the fp32 conversion
        if kind not in flatbuffers:
            flatbuffers[kind] = convert(folder, precision)
        return flatbuffers[kind]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(litert_export, "end_to_end_saved_model", reuse_trace)
        patch.setattr(litert_export, "convert_saved_model", reuse_fp32)
        yield


def serve(path, images):
    """The signature's outputs over `images` (B, H, W, 3), one image per call (the model's batch is 1)."""
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    outputs = [runner(images=images[b : b + 1]) for b in range(len(images))]
    return {name: np.concatenate([out[name] for out in outputs]) for name in outputs[0]}


def operators(path):
    """[(op name, output dtypes, output names)] of the primary subgraph."""
    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [
        (op["op_name"], {tensors[i]["dtype"] for i in op["outputs"]}, [tensors[i]["name"] for i in op["outputs"]])
        for op in interpreter._get_ops_details()
    ]


@pytest.fixture(scope="module")
def images():
    return served_images(2, seed=2)


@pytest.fixture(scope="module")
def detector():
    return tiny_detector()


@pytest.fixture(scope="module")
def detector_exports(tmp_path_factory, detector, images):
    """{precision: (path, outputs on `images`)} of the detector, and `predict`'s detections."""
    model = detector
    folder = tmp_path_factory.mktemp("litert")
    calibration = served_images(8, seed=100)  # like the served images: the ranges of what will be served
    exported = {}
    with traced_once(str(folder / "traced")):
        for precision in ("fp32", "fp16", "int8"):
            path = folder / f"det_{precision}.tflite"
            export(
                model, path, format="litert", input_size=SERVED, precision=precision,
                calibration=calibration if precision == "int8" else None, verbose=False,
            )
            exported[precision] = (path, serve(path, images))
    return exported, keras_end_to_end(model, images)


def test_fp32_detector_and_instance_model_serve_predicts_detections(tmp_path, detector_exports, images):
    exported, expected = detector_exports
    assert_same_detections(exported["fp32"][1], expected)
    model = tiny_ins()
    path = export(model, tmp_path / "ins.tflite", format="litert", input_size=SERVED, verbose=False)
    outputs = serve(path, images)
    assert outputs["masks"].shape == (2, model.max_detections, *SERVED)
    assert_same_detections(outputs, keras_end_to_end(model, images))
    assert all(name in BUILTIN_OPS for name, _, _ in operators(path))


def test_every_precision_holds_builtin_operators_only(detector_exports):
    exported, _ = detector_exports
    for precision, (path, _) in exported.items():
        unknown = {name for name, _, _ in operators(path)} - BUILTIN_OPS  # Flex / custom ops go by other names
        assert not unknown, (precision, unknown)


def test_fp16_detections_stay_close(detector_exports):
    exported, expected = detector_exports
    found, score_delta = top_detection_agreement(exported["fp16"][1], expected, top=10, min_iou=0.9)
    # float16 weights moved the tiny random-weight model's top-10 scores by ≤ 0.006 (measured 0.0052
    # over 4 images) and kept every top-10 box: its scores are close together, so deeper ranks reorder.
    assert found == 1.0 and score_delta < 0.02, (found, score_delta)


def test_int8_quantizes_the_network_only_and_mostly_agrees(detector_exports, images):
    exported, expected = detector_exports
    path, outputs = exported["int8"]
    fp32 = exported["fp32"][1]
    for name, value in fp32.items():
        assert outputs[name].shape == value.shape and outputs[name].dtype == value.dtype, name
    # The detector layer's scope: `rtm_det`, uniquified by every model made before in the process (`rtm_det_6_1`).
    network = re.compile(r"(^|/)rtm_det(_\d+)*/")
    quantized = [(op, names) for op, dtypes, names in operators(path) if np.int8 in dtypes]
    assert len(quantized) > 100 and sum(op == "CONV_2D" for op, _ in quantized) > 50
    # Only the network's operators and the quantization of its input are int8: the letterbox,
    # the box decoding, the top-k selection and the NMS run in float32.
    assert all(op == "QUANTIZE" or all(network.search(n) for n in names) for op, names in quantized), quantized
    found, _ = top_detection_agreement(outputs, expected, top=10, min_iou=0.9)
    # Measured 0.78 to 0.80 of the top-10 / top-20 on this random-weight model (near-tied scores reorder
    # under int8 noise); a trained model's accuracy is checked by the benchmark, not here.
    assert found >= 0.7, found
    with open(metadata_path(str(path), "litert")) as f:
        info = json.load(f)
    assert info["precision"] == "int8"


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"nms": False}, "end-to-end"),
        ({"dynamic_size": True}, "fixed image size"),
        ({"precision": "int8"}, "calibration images"),
        ({"path": "model.onnx"}, r"\.tflite file"),
    ],
)
def test_unservable_requests_fail_with_reasons(tmp_path, detector, request_, message):
    arguments = {"path": "model.tflite", **request_}
    path = tmp_path / arguments.pop("path")
    with pytest.raises(ValueError, match=message):
        export(detector, path, format="litert", verbose=False, **arguments)
