"""OpenVINO IR export (fp32, fp16) through `export`, run by OpenVINO's CPU plugin, against `predict`.

The IR is converted from the ONNX export of the current backend, whose own
parity `test_onnx_export` checks; what is checked here is the conversion, so
these run in one pass. One ONNX export per model serves all its precisions.
"""

import contextlib
import functools
import os

import keras
import numpy as np
import openvino as ov
import pytest

from keras_rtmdet.export import onnx_export
from keras_rtmdet.export.export import export
from keras_rtmdet.export.metadata import read_metadata
from keras_rtmdet.export.openvino_export import FP32_COMPILE_CONFIG
from keras_rtmdet.utils.detection_matching import match_detections
from tests.export.export_cases import SERVED
from tests.export.export_cases import assert_same_detections
from tests.export.export_cases import keras_end_to_end
from tests.export.export_cases import served_images
from tests.export.export_cases import tiny_detector
from tests.export.export_cases import tiny_ins

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
