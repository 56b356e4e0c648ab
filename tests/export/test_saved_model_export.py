"""SavedModel export, loaded back with `tf.saved_model.load`, against the Keras model of this backend."""

import json

import keras
import pytest
import tensorflow as tf

from keras_rtmdet_cli.main import main
from tests.export.export_cases import SERVED
from tests.export.export_cases import assert_raw_close
from tests.export.export_cases import assert_same_detections
from tests.export.export_cases import keras_end_to_end
from tests.export.export_cases import keras_raw
from tests.export.export_cases import served_images
from tests.export.export_cases import tiny_detector
from tests.export.export_cases import tiny_ins

# SavedModels are traced by TensorFlow. On torch / JAX these two tests would only repeat the TF run's
# check; what is specific to those backends (their weights exported through a TensorFlow subprocess)
# is `test_cli_exports_a_savedmodel_of_this_backend_weights`, which runs on every backend and checks
# the detector's artefact in full (both signatures, metadata): on TF it is the detector's export here.
on_tensorflow = pytest.mark.backends("tensorflow")  # traced in this process on the TensorFlow backend only


def serve(loaded, images, signature="serving_default"):
    return {k: v.numpy() for k, v in loaded.signatures[signature](images=tf.constant(images)).items()}


@on_tensorflow
def test_both_signatures_of_an_ins_model_match_keras(tmp_path):
    model = tiny_ins()
    path = model.export(str(tmp_path / "saved"), format="saved_model", input_size=SERVED, verbose=False)
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "raw"}
    images = served_images(2, seed=3)
    assert_same_detections(serve(loaded, images), keras_end_to_end(model, images))
    assert_raw_close(serve(loaded, images, "raw"), keras_raw(model, images))
    info = json.loads((tmp_path / "saved" / "rtmdet_export.json").read_text())
    assert info["task"] == type(model).__name__ and info["input"]["shape"] == [None, *SERVED, 3]
    assert info["iou_threshold"] == pytest.approx(model.iou_threshold) and info["class_names"] == model.class_names


@on_tensorflow
def test_a_dynamic_size_signature_letterboxes_every_size(tmp_path):
    model = tiny_detector()
    path = model.export(str(tmp_path / "any"), format="saved_model", dynamic_size=True, verbose=False)
    loaded = tf.saved_model.load(path)
    images = served_images(2, seed=4)
    assert_same_detections(serve(loaded, images), keras_end_to_end(model, images))
    for size in [(96, 200), (333, 160)]:  # letterboxed with padding, the resize computed in the graph
        images = served_images(1, size=size, seed=5)
        assert_raw_close(serve(loaded, images, "raw"), keras_raw(model, images, size), image_side=max(size))
        assert serve(loaded, images)["num_detections"][0] > 0


def test_cli_exports_a_savedmodel_of_this_backend_weights(tmp_path, capsys):
    """Both signatures and the metadata; on torch / JAX the weights go through a preset into a TF subprocess."""
    model = tiny_detector()
    model.save_to_preset(str(tmp_path / "preset"))
    out = tmp_path / "exported"
    args = ["export", "--preset", str(tmp_path / "preset"), "--format", "saved_model", "--out", str(out)]
    assert main([*args, "--input-size", *map(str, SERVED), "--iou-thr", "0.5"]) == 0
    assert "Exported" in capsys.readouterr().out
    loaded = tf.saved_model.load(str(out))
    assert set(loaded.signatures) == {"serving_default", "raw"}
    images = served_images(2, seed=6)
    # The raw outputs show that this backend's weights arrived; the end-to-end graph is TensorFlow's own
    # whatever the source (checked against predict in the TF pass: a JAX predict would compile ~30 s more).
    assert_raw_close(serve(loaded, images, "raw"), keras_raw(model, images))
    if keras.config.backend() == "tensorflow":
        with model.postprocess_settings(iou_threshold=0.5):
            expected = keras_end_to_end(model, images)
        assert_same_detections(serve(loaded, images), expected)
    else:
        assert serve(loaded, images)["num_detections"].min() > 0
    info = json.loads((out / "rtmdet_export.json").read_text())
    assert info["task"] == "RTMDet" and info["input"]["shape"] == [None, *SERVED, 3]
    assert info["iou_threshold"] == pytest.approx(0.5) and info["class_names"] == model.class_names


def test_unservable_requests_fail_with_reasons(tmp_path, capsys):
    preset = tmp_path / "ins"
    tiny_ins().save_to_preset(str(preset))
    assert main(["export", "--preset", str(preset), "--format", "onnx", "--dynamic-size", "--out", "x.onnx"]) == 2
    assert "fixed input_size" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Unknown export format"):
        tiny_detector().export(str(tmp_path / "x"), format="pmml")
    assert main(["export", "--preset", "no_such_preset", "--out", str(tmp_path / "y")]) == 2
    assert "Unknown preset" in capsys.readouterr().err
