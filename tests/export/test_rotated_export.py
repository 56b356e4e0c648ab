"""RTMDet-R exported with its rotated NMS in the graph (ONNX, SavedModel, LiteRT), against `predict`.

One export per format of `rot_mini`, each run on the same two served images and compared with
`model.predict`'s rotated detections (boxes (B, K, 5): cx, cy, w, h, angle). ONNX is traced by each
backend's own exporter; SavedModel and LiteRT are traced by TensorFlow whatever the backend, so their
tests run in one pass.
"""

import json

import numpy as np
import onnxruntime as ort
import pytest

from keras_rtmdet import RTMDetRotated
from keras_rtmdet.export.onnx_export import onnx_model
from tests.export.export_cases import SERVED
from tests.export.export_cases import assert_raw_close
from tests.export.export_cases import assert_same_detections
from tests.export.export_cases import keras_end_to_end
from tests.export.export_cases import keras_raw
from tests.export.export_cases import served_images
from tests.export.export_cases import tiny_rotated
from tests.test_case import build_shapes_only
from tests.test_case import tiny_model

# torch's ONNX exporter cannot write the NMS loop: it refuses, naming the alternatives (`_check_traced_nms`).
traces_the_nms_loop = pytest.mark.backends("tensorflow", "jax")
BATCH = 2


@pytest.fixture(scope="module")
def case():
    """(model, served images (2, 320, 320, 3) uint8, `predict`'s detections: boxes (2, 100, 5) padded with -1)."""
    model = tiny_rotated()
    images = served_images(BATCH, seed=7)
    return model, images, keras_end_to_end(model, images)


def run_onnx(proto, images):
    runner = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in runner.get_outputs()]
    return dict(zip(names, runner.run(None, {"images": images})))


def every_node(graph):
    """The nodes of an ONNX graph and of its subgraphs (the `Loop` body)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.g.node:
                yield from every_node(attribute.g)


@traces_the_nms_loop
def test_onnx_runs_the_rotated_nms_as_a_loop_of_standard_operators(case):
    model, images, expected = case
    proto = onnx_model(model, nms=True, input_size=SERVED)
    nodes = list(every_node(proto.graph))
    ops = {node.op_type for node in nodes}
    assert "Loop" in ops and "NonMaxSuppression" not in ops, sorted(ops)
    assert {node.domain for node in nodes} <= {"", "ai.onnx"}, "standard operators only, no custom ones"
    outputs = run_onnx(proto, images)
    assert outputs["boxes"].shape == (BATCH, model.max_detections, 5)
    assert 0 < expected["num_detections"].max() < model.max_detections, "the padding must be checked too"
    assert_same_detections(outputs, expected)


@pytest.mark.backends("torch")
def test_torch_refuses_the_end_to_end_onnx_naming_the_alternatives():
    # Refused before anything is traced. The raw export it names instead is the network alone, exported
    # as RTMDet's is (not repeated here: 18 s of PyTorch's exporter).
    shapes_only = build_shapes_only(lambda: tiny_model(RTMDetRotated, num_classes=2))
    with pytest.raises(NotImplementedError, match="TensorFlow or JAX backend.*nms=False"):
        onnx_model(shapes_only, nms=True, input_size=SERVED)


@pytest.mark.backend_independent
def test_saved_model_serves_rotated_detections_and_raw_rboxes(case, tmp_path):
    import tensorflow as tf

    model, images, expected = case
    path = model.export(str(tmp_path / "saved"), format="saved_model", input_size=SERVED, verbose=False)
    loaded = tf.saved_model.load(path)

    def serve(signature):
        return {k: v.numpy() for k, v in loaded.signatures[signature](images=tf.constant(images)).items()}

    detections = serve("serving_default")
    assert detections["boxes"].shape == (BATCH, model.max_detections, 5)
    assert_same_detections(detections, expected)
    assert_raw_close(serve("raw"), keras_raw(model, images))
    info = json.loads((tmp_path / "saved" / "rtmdet_export.json").read_text())
    assert info["box_format"] == "xywha" and "(B, K, 5)" in info["outputs"]["boxes"]
    assert info["task"] == "RTMDetRotated" and info["iou_threshold"] == pytest.approx(model.iou_threshold)


@pytest.mark.backend_independent
def test_litert_runs_the_rotated_nms_with_builtin_operators(case, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from keras_rtmdet_cli.main import main

    model, images, expected = case
    path = str(tmp_path / "rot.tflite")
    model.save_to_preset(str(tmp_path / "preset"))
    size = [str(side) for side in SERVED]
    # Through `rtmdet export`, as users make it.
    argv = ["export", "--preset", str(tmp_path / "preset"), "--format", "litert", "--out", path]
    assert main([*argv, "--input-size", *size, "--batch-size", str(BATCH)]) == 0
    # The stock interpreter, without the Flex delegate, refuses a graph with TensorFlow or custom ops.
    detections = Interpreter(model_path=path).get_signature_runner("serving_default")(images=images)
    assert detections["boxes"].shape == (BATCH, model.max_detections, 5)
    assert_same_detections({k: np.asarray(v) for k, v in detections.items()}, expected)
    assert json.loads((tmp_path / "rot.json").read_text())["box_format"] == "xywha"


@pytest.mark.backend_independent
def test_openvino_refuses_the_rotated_nms_loop_before_exporting(tmp_path):
    from keras_rtmdet.export import export

    shapes_only = build_shapes_only(lambda: tiny_model(RTMDetRotated, num_classes=2))
    with pytest.raises(NotImplementedError, match="OpenVINO cannot read the loop.*nms=False"):
        export(shapes_only, str(tmp_path / "r.xml"), format="openvino", input_size=SERVED, verbose=False)
    assert not list(tmp_path.iterdir())
