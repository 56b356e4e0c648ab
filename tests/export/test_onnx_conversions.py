"""Conversions of the ONNX export: OpenVINO IR (fp32, fp16, INT8 through NNCF) and ONNX Runtime INT8 (static QDQ).

The IRs and INT8 models are converted from the ONNX export of the current backend, whose own parity
`test_onnx_export` checks; what is checked here is the conversion, so these run in one pass. One ONNX
export per model serves every format and precision (a module: one process). fp32 equals `predict`;
fp16 and INT8 agree with fp32 above floors measured on the tiny detector (random MMDetection weights,
served noise images, 8 synthetic calibration images), and INT8 quantizes only the network (the
letterbox and the decoding / NMS tail stay float).
"""

import contextlib
import functools
import os

import keras
import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest

from keras_rtmdet.export import onnx_export
from keras_rtmdet.export.export import export
from keras_rtmdet.export.metadata import read_metadata
from keras_rtmdet.export.onnx_quantization import onnx_network_region
from keras_rtmdet.export.onnx_quantization import quantize_onnx
from keras_rtmdet.export.openvino_export import FP32_COMPILE_CONFIG
from keras_rtmdet.export.openvino_export import openvino_network_region
from keras_rtmdet.utils.detection_matching import match_detections
from tests.export.export_cases import SERVED
from tests.export.export_cases import assert_same_detections
from tests.export.export_cases import keras_end_to_end
from tests.export.export_cases import served_images
from tests.export.export_cases import tiny_detector
from tests.export.export_cases import tiny_ins
from tests.export.export_cases import top_detection_agreement

pytestmark = pytest.mark.backend_independent

# torch's exporter fixes the batch size; the others keep it dynamic.
BATCH = 2 if keras.config.backend() == "torch" else None
# fp16 weights against the fp32 IR, both computed in f32, measured on the tiny detector (3 batches of
# 2 served images, 100 detections each): boxes moved ≤ 1.2 px, scores ≤ 0.02, ≥ 98 % of detections paired.
SETTINGS = {"input_size": SERVED, "batch_size": BATCH, "verbose": False}
FP16_BOX_TOL, FP16_SCORE_TOL, FP16_MIN_PAIRED = 3.0, 0.03, 0.9


_ONNX_MODEL = onnx_export.onnx_model


@functools.cache
def _float_onnx(model, settings):
    return _ONNX_MODEL(model, **dict(settings))


@contextlib.contextmanager
def one_onnx_export_per_model():
    """Within it, `export` builds each model's ONNX once (a copy per call): every format and precision
    of the same model and settings is converted from that one export."""
    import onnx

    def cached(detector, **settings):
        copy = onnx.ModelProto()
        copy.CopyFrom(_float_onnx(detector, tuple(sorted(settings.items()))))
        return copy

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_export, "onnx_model", cached)
        yield


def compile_ir(path, config=None):
    """The IR at `path` compiled for CPU with its metadata's compile settings (fp32: f32 compute)."""
    settings = dict(
        read_metadata(path).get("openvino_compile_config", {}), **(config or {})
    )
    return ov.Core().compile_model(path, "CPU", settings)


def run_ir(compiled, images):
    results = compiled(images)
    return {
        output.get_any_name(): np.asarray(results[output])
        for output in compiled.outputs
    }


def export_irs(model, name, precisions, folder):
    """{precision: .xml path} of `model` exported through `export` (one ONNX export for all)."""
    paths = {}
    with one_onnx_export_per_model():
        for precision in precisions:
            paths[precision] = str(folder / f"{name}_{precision}.xml")
            export(
                model,
                paths[precision],
                format="openvino",
                precision=precision,
                **SETTINGS,
            )
    return paths


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    model = tiny_detector()
    return model, export_irs(
        model, "det", ("fp32", "fp16"), tmp_path_factory.mktemp("det")
    )


@pytest.fixture(scope="module")
def ins(tmp_path_factory):
    model = tiny_ins()
    return model, export_irs(model, "ins", ("fp32",), tmp_path_factory.mktemp("ins"))


# The Ins export costs a second ONNX export (~35-70 s on 2 loaded cores): beyond the default tier's budget.
@pytest.mark.parametrize("name", ["det", pytest.param("ins", marks=pytest.mark.slow)])
def test_fp32_detections_match_predict(request, name):
    model, paths = request.getfixturevalue(name)
    images = served_images(BATCH or 2, seed=2)
    outputs = run_ir(compile_ir(paths["fp32"]), images)
    assert outputs["boxes"].shape == (len(images), model.max_detections, 4)
    assert_same_detections(outputs, keras_end_to_end(model, images))


def test_fp16_is_half_the_size_and_close_to_fp32(det):
    _, paths = det
    sizes = {
        p: os.path.getsize(path.replace(".xml", ".bin")) for p, path in paths.items()
    }
    assert sizes["fp16"] < 0.6 * sizes["fp32"], sizes
    images = served_images(BATCH or 2, seed=3)
    # f32 compute for both: the artefact's own error (its weights), not the CPU's default bf16 arithmetic.
    half = run_ir(compile_ir(paths["fp16"], FP32_COMPILE_CONFIG), images)
    full = run_ir(compile_ir(paths["fp32"]), images)
    for b in range(len(images)):
        n = int(full["num_detections"][b])
        ours = [
            half[key][b, : half["num_detections"][b]]
            for key in ("boxes", "scores", "labels")
        ]
        reference = [full[key][b, :n] for key in ("boxes", "scores", "labels")]
        match = match_detections(
            ours, reference, box_tol=FP16_BOX_TOL, score_tol=FP16_SCORE_TOL
        )
        assert n > 0 and match["matched"] >= FP16_MIN_PAIRED * n, match


def test_metadata_says_how_to_compile(det):
    _, paths = det
    info = read_metadata(paths["fp32"])
    assert info["format"] == "openvino" and info["end_to_end"]
    assert info["openvino_compile_config"] == {"INFERENCE_PRECISION_HINT": "f32"}
    assert read_metadata(paths["fp16"])["precision"] == "fp16"
    assert (
        ov.Core().read_model(paths["fp32"]).inputs[0].get_element_type() == ov.Type.u8
    )


def test_the_path_must_be_an_xml(det, tmp_path):
    with pytest.raises(ValueError, match=r"\.xml"):
        export(det[0], str(tmp_path / "model.onnx"), format="openvino", verbose=False)


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
def artefacts(det, tmp_path_factory):
    """(model, {name: path}): the fp32 and int8 ONNX and the int8 OpenVINO IR of `det`'s detector (its ONNX reused)."""
    folder, model = tmp_path_factory.mktemp("int8"), det[0]
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
    int8_onnx = functools.partial(export, model, target, format="onnx", precision="int8", **SETTINGS)
    with pytest.raises(ValueError, match="INT8 export needs calibration images"):
        int8_onnx()
    with pytest.raises(ValueError, match="Unknown calibration source .no_such_source"):
        int8_onnx(calibration="no_such_source")
    with pytest.raises(ValueError, match="uint8"):
        int8_onnx(calibration=np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="calibration images are for precision='int8'"):
        export(model, target, format="onnx", calibration="synthetic", **SETTINGS)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="the graph serves"):
        quantize_onnx(onnx.load(paths["fp32"]), str(wrong))
    np.save(wrong, np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        quantize_onnx(onnx.load(paths["fp32"]), str(wrong))
