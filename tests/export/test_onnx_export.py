"""ONNX export from the current backend, run in ONNX Runtime, against the Keras model."""

import json

import keras
import numpy as np
import onnxruntime as ort
import pytest

from keras_rtmdet.export.export import save_onnx
from keras_rtmdet.export.metadata import export_metadata
from keras_rtmdet.export.metadata import read_metadata
from keras_rtmdet.export.onnx_export import onnx_models
from tests.export.export_cases import SERVED
from tests.export.export_cases import assert_raw_close
from tests.export.export_cases import assert_same_detections
from tests.export.export_cases import keras_end_to_end
from tests.export.export_cases import keras_raw
from tests.export.export_cases import served_images
from tests.export.export_cases import tiny_detector
from tests.export.export_cases import tiny_ins


# torch's exporter fixes the batch size; the others keep it dynamic (exported with a batch of 1).
BATCH = 2 if keras.config.backend() == "torch" else None


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run(proto, images):
    runner = session(proto)
    names = [output.name for output in runner.get_outputs()]
    return dict(zip(names, runner.run(None, {"images": images})))


@pytest.fixture(scope="module", params=["det", "ins"])
def exported(request):
    model = tiny_detector() if request.param == "det" else tiny_ins()
    return model, onnx_models(model, input_size=SERVED, batch_size=BATCH)


def test_raw_outputs_match_keras(exported):
    model, protos = exported
    images = served_images(BATCH or 3, seed=1)
    assert_raw_close(run(protos["raw"], images), keras_raw(model, images))


def test_end_to_end_detections_match_keras(exported):
    model, protos = exported
    images = served_images(BATCH or 3, seed=2)
    outputs = run(protos["end_to_end"], images)
    expected = keras_end_to_end(model, images)
    assert outputs["boxes"].shape == (len(images), model.max_detections, 4)
    assert_same_detections(outputs, expected)


def test_the_nms_is_onnx_own_and_its_threshold_is_served(exported):
    model, protos = exported
    ops = [node.op_type for node in protos["end_to_end"].graph.node]
    assert ops.count("NonMaxSuppression") == 1
    nms_thresholds = [init for init in protos["end_to_end"].graph.initializer if init.name.endswith("iou_threshold")]
    assert len(nms_thresholds) == 1
    assert abs(float(np.frombuffer(nms_thresholds[0].raw_data, np.float32)[0]) - model.iou_threshold) < 1e-6


def test_metadata_is_written_beside_and_inside(exported, tmp_path):
    model, protos = exported
    info = export_metadata(model, "onnx", True, SERVED, BATCH, "rgb")
    path = str(tmp_path / "model.onnx")
    save_onnx(protos["end_to_end"], path, info)
    import onnx

    embedded = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(embedded["keras_rtmdet"])["iou_threshold"] == pytest.approx(model.iou_threshold)
    (tmp_path / "model.json").write_text(json.dumps(info))
    assert read_metadata(path)["input"]["shape"] == [BATCH, *SERVED, 3]
    assert session(protos["end_to_end"]).get_inputs()[0].type == "tensor(uint8)"


def test_dynamic_size_needs_tensorflow_and_masks_need_a_fixed_size():
    model = tiny_detector()
    if keras.config.backend() != "tensorflow":
        with pytest.raises(ValueError, match="fixed input_size"):
            onnx_models(model, input_size=None)
    with pytest.raises(ValueError, match="Unknown ONNX variant"):
        onnx_models(model, variants=("fast",), input_size=SERVED)
    with pytest.raises(ValueError, match="fixed input_size"):
        onnx_models(tiny_ins(), input_size=None)
