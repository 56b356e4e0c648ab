"""INT8 exports (ONNX Runtime QDQ, OpenVINO NNCF) of the tiny detector: they run, agree with fp32, and
quantize only the network (the letterbox and the decoding / NMS tail stay float).

Agreement, not equality: INT8 moves scores and boxes. The floors are measured on the tiny detector
(random MMDetection weights, served noise images, 8 synthetic calibration images).
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from keras_rtmdet.export.export import export
from keras_rtmdet.export.onnx_quantization import onnx_network_region
from keras_rtmdet.export.onnx_quantization import quantize_onnx
from keras_rtmdet.export.openvino_export import openvino_network_region
from tests.export.export_cases import served_images
from tests.export.export_cases import tiny_detector
from tests.export.export_cases import top_detection_agreement
from tests.export.test_openvino_export import SETTINGS
from tests.export.test_openvino_export import compile_ir
from tests.export.test_openvino_export import one_onnx_export_per_model
from tests.export.test_openvino_export import run_ir

pytestmark = pytest.mark.backend_independent

CALIBRATION = {"calibration": "synthetic", "calibration_count": 8}
TOP = 50  # the fp32 detections whose survival is checked: each image's highest scores (of 100)
# Measured on two batches of served images: ONNX Runtime int8 kept 99-100 % of them (same class,
# IoU ≥ 0.5), OpenVINO int8 89-97 % (its non-quantized ops compute in bf16 on CPUs that have it).
MIN_AGREEMENT = {"onnx": 0.9, "openvino": 0.85}


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def run_onnx(path, images):
    runner = session(path)
    return dict(
        zip(
            [o.name for o in runner.get_outputs()], runner.run(None, {"images": images})
        )
    )


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """(model, {name: path}): the fp32 and int8 ONNX and the int8 OpenVINO IR of the tiny detector."""
    folder, model = tmp_path_factory.mktemp("int8"), tiny_detector()
    paths = {
        "fp32": str(folder / "fp32.onnx"),
        "onnx": str(folder / "int8.onnx"),
        "openvino": str(folder / "int8.xml"),
    }
    with one_onnx_export_per_model():
        export(model, paths["fp32"], format="onnx", **SETTINGS)
        export(
            model,
            paths["onnx"],
            format="onnx",
            precision="int8",
            **CALIBRATION,
            **SETTINGS,
        )
        export(
            model,
            paths["openvino"],
            format="openvino",
            precision="int8",
            **CALIBRATION,
            **SETTINGS,
        )
    return model, paths


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_int8_runs_and_agrees_with_fp32(artefacts, runtime):
    model, paths = artefacts
    images = served_images(SETTINGS["batch_size"] or 2, seed=4)
    reference = run_onnx(paths["fp32"], images)
    outputs = (
        run_onnx(paths["onnx"], images)
        if runtime == "onnx"
        else run_ir(compile_ir(paths["openvino"]), images)
    )
    assert outputs["boxes"].shape == (len(images), model.max_detections, 4)
    assert (
        outputs["labels"].shape
        == outputs["scores"].shape
        == (len(images), model.max_detections)
    )
    assert top_detection_agreement(outputs, reference, TOP, min_iou=0.5)[0] >= MIN_AGREEMENT[runtime]


def _readers(graph):
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def test_onnx_int8_quantizes_the_network_only(artefacts):
    graph = onnx.load(artefacts[1]["onnx"]).graph
    assert [node.op_type for node in graph.node].count("QuantizeLinear") > 0
    # The region between convolutions, read off the quantized graph (its Q/DQ pairs lie inside it).
    region, _ = onnx_network_region(graph)
    network = {graph.node[i].name for i in region}
    readers = _readers(graph)
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            for reader in readers.get(node.output[0], []):
                assert reader.name in network, (
                    f"{reader.op_type} {reader.name} reads a dequantized tensor"
                )
    producers = {output: node for node in graph.node for output in node.output}
    nms = next(node for node in graph.node if node.op_type == "NonMaxSuppression")
    assert {
        producers[name].op_type for name in nms.input if name in producers
    }.isdisjoint({"DequantizeLinear"})
    assert all(reader.op_type != "QuantizeLinear" for reader in readers["images"])


def test_openvino_int8_quantizes_the_network_only(artefacts):
    import openvino as ov

    model = ov.Core().read_model(artefacts[1]["openvino"])
    fake = [
        op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
    ]
    assert fake, "nothing was quantized"
    region, _ = openvino_network_region(model)
    for quantizer in fake:
        for output in quantizer.outputs():
            for target in output.get_target_inputs():
                reader = target.get_node()
                assert reader.get_friendly_name() in region, (
                    f"{reader.get_type_name()} reads a quantized tensor"
                )
    nms = next(
        op
        for op in model.get_ordered_ops()
        if op.get_type_name() == "NonMaxSuppression"
    )
    assert all(
        value.get_node().get_type_name() != "FakeQuantize"
        for value in nms.input_values()
    )


def test_int8_needs_valid_calibration(artefacts, tmp_path):
    model, paths = artefacts
    target = str(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="INT8 export needs calibration images"):
        export(model, target, format="onnx", precision="int8", **SETTINGS)
    with pytest.raises(ValueError, match="Unknown calibration source .no_such_source"):
        export(
            model,
            target,
            format="onnx",
            precision="int8",
            calibration="no_such_source",
            **SETTINGS,
        )
    with pytest.raises(ValueError, match="uint8"):
        export(
            model,
            target,
            format="onnx",
            precision="int8",
            calibration=np.zeros((2, 8, 8, 3), np.float32),
            **SETTINGS,
        )
    with pytest.raises(ValueError, match="calibration images are for precision='int8'"):
        export(model, target, format="onnx", calibration="synthetic", **SETTINGS)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="the graph serves"):
        quantize_onnx(onnx.load(paths["fp32"]), str(wrong))
    np.save(wrong, np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        quantize_onnx(onnx.load(paths["fp32"]), str(wrong))
