"""TF-TRT and TensorRT: a clean refusal where they cannot run; the real conversion where they can.

The conversion tests need a GPU with TensorRT (TF-TRT: TensorFlow ≤ 2.17 built
with it; engines: the `tensorrt` package). Where that is missing they are
skipped, and reported as not run.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_rtmdet.export.tensorrt import tensorrt_available
from keras_rtmdet.export.tensorrt import tf_trt_available
from tests.export.export_cases import SERVED
from tests.export.export_cases import assert_same_detections
from tests.export.export_cases import keras_end_to_end
from tests.export.export_cases import served_images
from tests.export.export_cases import tiny_detector

TF_TRT, TF_TRT_REASON = tf_trt_available()
TENSORRT, TENSORRT_REASON = tensorrt_available()


# Each refusal test and its conversion test are complements: exactly one of the two runs on any machine.
@pytest.mark.backend_independent
@pytest.mark.skipif(TF_TRT, reason="TF-TRT is available here: see the conversion test")
def test_tf_trt_refuses_with_the_versions_that_have_it(tmp_path):
    with pytest.raises(RuntimeError, match="2.17") as error:
        tiny_detector().export(str(tmp_path / "trt"), format="tf_trt", verbose=False)
    assert "tensorrt" in str(error.value)
    assert not (tmp_path / "trt").exists()


@pytest.mark.backend_independent
@pytest.mark.skipif(TENSORRT, reason="TensorRT is available here: see the engine test")
def test_tensorrt_refuses_without_the_package_or_a_gpu(tmp_path):
    with pytest.raises(RuntimeError, match="TensorRT|tensorrt"):
        tiny_detector().export(str(tmp_path / "model.engine"), format="tensorrt", input_size=SERVED, verbose=False)
    assert not (tmp_path / "model.engine").exists()


@pytest.mark.skipif(not TF_TRT, reason=f"not run: {TF_TRT_REASON}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tf_trt_conversion_gives_the_keras_detections(tmp_path, precision):
    model = tiny_detector()
    path = model.export(str(tmp_path / "trt"), format="tf_trt", input_size=SERVED, precision=precision, verbose=False)
    loaded = tf.saved_model.load(path)
    images = served_images(2, seed=7)
    out = {k: v.numpy() for k, v in loaded.signatures["serving_default"](images=tf.constant(images)).items()}
    if precision == "fp32":
        assert_same_detections(out, keras_end_to_end(model, images))
    else:
        assert np.array_equal(out["num_detections"] > 0, keras_end_to_end(model, images)["num_detections"] > 0)


@pytest.mark.skipif(not TENSORRT, reason=f"not run: {TENSORRT_REASON}")
def test_tensorrt_engine_gives_the_keras_detections(tmp_path):
    import tensorrt as trt
    import torch

    model = tiny_detector()
    path = model.export(str(tmp_path / "model.engine"), format="tensorrt", input_size=SERVED, batch_size=2, verbose=False)
    assert os.path.getsize(path) > 0
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    with open(path, "rb") as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    context = engine.create_execution_context()
    images = served_images(2, seed=8)
    torch_dtypes = {trt.uint8: torch.uint8, trt.float32: torch.float32, trt.int32: torch.int32,
                    trt.int64: torch.int64, trt.bool: torch.bool}
    buffers = {"images": torch.as_tensor(images).cuda()}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            shape = tuple(context.get_tensor_shape(name))
            buffers[name] = torch.empty(shape, dtype=torch_dtypes[engine.get_tensor_dtype(name)], device="cuda")
        context.set_tensor_address(name, buffers[name].data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    out = {name: value.cpu().numpy() for name, value in buffers.items() if name != "images"}
    assert_same_detections(out, keras_end_to_end(model, images))
