"""`export`: one entry point for every deployment format."""

import os
import subprocess
import sys
import tempfile

import keras

from keras_rtmdet.export.metadata import export_metadata
from keras_rtmdet.export.metadata import metadata_path
from keras_rtmdet.export.metadata import write_metadata

EXPORT_FORMATS = ("saved_model", "onnx", "tf_trt", "tensorrt")
FORMAT_ALIASES = {"tf_saved_model": "saved_model", "engine": "tensorrt", "tftrt": "tf_trt"}
# Formats whose graph TensorFlow itself must trace.
TENSORFLOW_FORMATS = ("saved_model", "tf_trt")


def _check_detector(model):
    from keras_rtmdet.models.dense_detector import DenseDetector

    if not isinstance(model, DenseDetector):
        raise TypeError(f"Export serves RTMDet detectors (a DenseDetector); got {type(model).__name__}.")
    if model.variant.export_refusal:
        raise TypeError(f"Cannot export this {model.variant.display_name}: {model.variant.export_refusal}")


def export(
    model,
    path,
    format="saved_model",
    nms=True,
    input_size=None,
    dynamic_size=False,
    batch_size=None,
    channel_order="rgb",
    precision="fp32",
    opset=None,
    verbose=True,
):
    """Export a detector for serving on raw uint8 images (preprocessing in the graph).

    Args:
        model: an `RTMDet` or `RTMDetIns` (post-processing settings as they
            should be served: `score_threshold`, `iou_threshold`, ...).
        path: a directory (`saved_model`, `tf_trt`) or a file (`onnx`,
            `tensorrt`).
        format: `"saved_model"` (TensorFlow; signatures `serving_default`
            end-to-end and `raw`), `"onnx"`, `"tf_trt"` (TensorFlow with
            TensorRT, ≤ 2.17, GPU) or `"tensorrt"` (an engine from the ONNX;
            the `tensorrt` package and a GPU).
        nms: ONNX / TensorRT: end-to-end detections with the NMS in the graph
            (True) or the raw decoded boxes and scores (False). A SavedModel
            has both signatures.
        input_size: (H, W) of the images served; default the model's
            `image_size`. Images of another size are letterboxed into the
            network input as `predict` does.
        dynamic_size: serve images of any size (TensorFlow's graphs only:
            `saved_model`, `tf_trt`, and `onnx` from the TensorFlow backend;
            RTMDet only, as masks need a fixed size).
        batch_size: fixed batch size, or None for any (not on torch's ONNX
            exporter, which fixes it; default 1 there).
        channel_order: `"rgb"` or `"bgr"`, the order of the served images.
        precision: `"fp32"` or `"fp16"` for `tf_trt` and `tensorrt`.
        opset: ONNX opset (default: the backend exporter's).

    The metadata (class names, thresholds, input and output descriptions)
    is written beside the artefact as JSON (`metadata_path`) and, for ONNX,
    also into the model's `metadata_props`.

    Models on the torch or JAX backend export `saved_model` / `tf_trt` by
    saving their weights and re-running the export in a TensorFlow
    subprocess (TensorFlow must be installed).

    Returns: the path written.
    """
    format = FORMAT_ALIASES.get(format, format)
    if format not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {format!r}; one of {EXPORT_FORMATS}.")
    _check_detector(model)
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}.")
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}.")
    input_size = None if dynamic_size else tuple(int(s) for s in (input_size or model.image_size))
    options = {
        "nms": nms,
        "input_size": input_size,
        "batch_size": batch_size,
        "channel_order": channel_order,
        "precision": precision,
        "opset": opset,
    }
    if format == "tf_trt":
        from keras_rtmdet.export.tensorrt import tf_trt_available

        available, reason = tf_trt_available()
        if not available:
            raise RuntimeError(reason)
    if format in TENSORFLOW_FORMATS and keras.config.backend() != "tensorflow":
        return export_in_tensorflow(model, path, format, options, verbose)
    path = os.fspath(path)
    extra = {}
    if format == "saved_model":
        from keras_rtmdet.export.saved_model import export_saved_model

        export_saved_model(model, path, input_size, batch_size, channel_order)
        extra["signatures"] = {"serving_default": "end-to-end detections", "raw": "decoded boxes and scores"}
    elif format == "tf_trt":
        from keras_rtmdet.export.saved_model import export_saved_model
        from keras_rtmdet.export.tensorrt import convert_with_tf_trt

        with tempfile.TemporaryDirectory() as folder:
            export_saved_model(model, folder, input_size, batch_size, channel_order)
            convert_with_tf_trt(folder, path, precision)
        extra["precision"] = precision
    else:
        _write_onnx_based(model, path, format, options, extra)
    proto = extra.pop("proto", None)
    info = export_metadata(model, format, nms or format in TENSORFLOW_FORMATS, input_size, batch_size, channel_order, **extra)
    if proto is not None:
        save_onnx(proto, path, info)
    write_metadata(metadata_path(path, format), info)
    if verbose:
        print(f"Exported {type(model).__name__} ({format}) to {path}")
    return path


def _write_onnx_based(model, path, format, options, extra):
    from keras_rtmdet.export.onnx_export import onnx_model

    if format == "tensorrt":
        from keras_rtmdet.export.tensorrt import tensorrt_available

        available, reason = tensorrt_available()
        if not available:
            raise RuntimeError(reason)
    proto = onnx_model(
        model,
        nms=options["nms"],
        input_size=options["input_size"],
        batch_size=options["batch_size"],
        channel_order=options["channel_order"],
        opset=options["opset"],
    )
    extra["opset"] = int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if format == "onnx":
        extra["proto"] = proto
        return
    from keras_rtmdet.export.tensorrt import build_tensorrt_engine

    batch = options["batch_size"]
    height, width = options["input_size"] or (None, None)
    build_tensorrt_engine(proto.SerializeToString(), path, (batch, height, width, 3), fp16=options["precision"] == "fp16")
    extra["precision"] = options["precision"]


def save_onnx(proto, path, info):
    """Write an ONNX model with the export metadata in its `metadata_props` (key `keras_rtmdet`)."""
    import json

    import onnx

    entry = proto.metadata_props.add()
    entry.key, entry.value = "keras_rtmdet", json.dumps(info)
    onnx.save(proto, path)
    return path


def export_in_tensorflow(model, path, format, options, verbose=True):
    """Run `export` in a TensorFlow-backend subprocess on `model`'s saved weights (torch / JAX models)."""
    import importlib.util
    import json

    if importlib.util.find_spec("tensorflow") is None:
        raise RuntimeError(
            f"{format} export needs TensorFlow (pip install tensorflow), which traces the SavedModel; "
            f"this model runs on {keras.config.backend()}."
        )
    settings = json.dumps(dict(options, verbose=verbose))
    with tempfile.TemporaryDirectory() as folder:
        model.save_to_preset(folder)
        command = [sys.executable, "-m", "keras_rtmdet.export.tensorflow_subprocess", folder, format, os.fspath(path)]
        command.append(settings)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        result = subprocess.run(command, env=env, capture_output=not verbose, text=True)
    if result.returncode != 0:
        detail = "" if verbose else f":\n{result.stdout}{result.stderr}"
        raise RuntimeError(f"The TensorFlow export subprocess failed (exit code {result.returncode}){detail}")
    return os.fspath(path)
