"""`compile_for_inference`: export + torch.compile of the forward (torch backend only)."""

import keras
import numpy as np
import pytest

from keras_rtmdet.inference import compile_for_inference
from tests.models.test_predict_steps import assert_close_detections
from tests.test_case import SIZE
from tests.test_case import tiny_model

torch_only = pytest.mark.backends("torch")  # torch.export / torch.compile serving is torch-backend only


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def compiled(model):
    # backend="eager" skips inductor's code generation: the export path is
    # what is under test, and it keeps the test fast.
    return compile_for_inference(model, batch_size=2, backend="eager")


def _images(batch):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32")


def _assert_close(got, expected):
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got[key]), keras.ops.convert_to_numpy(expected[key]), atol=1e-4
        )


@torch_only
def test_matches_eager_outputs(model, compiled):
    images = _images(2)
    expected = model(keras.ops.convert_to_tensor(images), training=False)
    _assert_close(compiled(images), expected)


@torch_only
def test_detect_matches_model_detect(model, compiled):
    images = _images(2)
    # Random weights give degenerate boxes; keep them so NMS has work to do.
    with model.postprocess_settings(min_bbox_size=-1e6):
        expected = model.detect(images)
        got = compiled.detect(images)
    assert int(keras.ops.convert_to_numpy(expected["num_detections"]).min()) > 0
    _assert_close(got, expected)


@torch_only
def test_wrong_shape_raises(compiled):
    with pytest.raises(ValueError, match="compiled for inputs of shape"):
        compiled(_images(1))
    with pytest.raises(ValueError, match="compiled for inputs of shape"):
        compiled(np.zeros((2, SIZE + 32, SIZE, 3), "float32"))


@pytest.mark.backends("tensorflow", "jax")  # the error on the other backends
def test_other_backend_raises(model):
    with pytest.raises(RuntimeError, match=keras.config.backend()):
        compile_for_inference(model, batch_size=1)


@torch_only
def test_detect_takes_thresholds_per_call_and_refuses_shape_settings(model, compiled):
    images = _images(2)
    settings = {"score_threshold": 0.2, "iou_threshold": 0.3, "min_bbox_size": -1e6, "max_detections": 40}
    # Spread-out class scores: the initial weights score nearly every pair alike, and near-ties have no one order.
    weights = [v for v in model.weights if "rtm_cls" in v.path]
    saved = [keras.ops.convert_to_numpy(v) for v in weights]
    rng = np.random.default_rng(1)
    try:
        for variable, value in zip(weights, saved, strict=True):
            variable.assign(rng.normal(0.0, 1.0, value.shape).astype("float32"))
        expected = model.detect(images, **settings)
        got = compiled.detect(images, **settings)
    finally:
        for variable, value in zip(weights, saved, strict=True):
            variable.assign(value)
    got, expected = ({k: keras.ops.convert_to_numpy(v) for k, v in out.items()} for out in (got, expected))
    assert got["boxes"].shape == (2, 40, 4)
    assert expected["num_detections"].min() > 0
    assert_close_detections(got, expected)
    with pytest.raises(ValueError, match="fix the compiled graph's shapes"):
        compiled.detect(images, nms_pre=10)
