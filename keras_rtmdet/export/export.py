"""`export`: one entry point for every deployment format."""

import os
import subprocess
import sys
import tempfile

import keras

from keras_rtmdet.export.calibration import DEFAULT_CALIBRATION_IMAGES
from keras_rtmdet.export.metadata import export_metadata
from keras_rtmdet.export.metadata import metadata_path
from keras_rtmdet.export.metadata import write_metadata

EXPORT_FORMATS = ("saved_model", "onnx", "litert", "openvino", "tf_trt", "tensorrt")
FORMAT_ALIASES = {"tf_saved_model": "saved_model", "engine": "tensorrt", "tftrt": "tf_trt", "tflite": "litert"}
# Formats whose graph TensorFlow itself must trace.
TENSORFLOW_FORMATS = ("saved_model", "tf_trt", "litert")
# The precisions each format is written in (INT8: post-training quantization on calibration images).
FORMAT_PRECISIONS = {
    "saved_model": ("fp32",),
    "onnx": ("fp32", "int8"),
    "litert": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "fp16", "int8"),
    "tf_trt": ("fp32", "fp16"),
    "tensorrt": ("fp32", "fp16"),
}


def _check_detector(model):
    from keras_rtmdet.models.dense_detector import DenseDetector

    if not isinstance(model, DenseDetector):
        raise TypeError(f"Export serves RTMDet detectors (a DenseDetector); got {type(model).__name__}.")


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
    calibration=None,
    calibration_count=DEFAULT_CALIBRATION_IMAGES,
    verbose=True,
):
    """Export a detector for serving on raw uint8 images (preprocessing in the graph).

    Args:
        model: an `RTMDet`, `RTMDetIns` or `RTMDetRotated` (post-processing
            settings as they should be served: `score_threshold`,
            `iou_threshold`, ...).
        path: a directory (`saved_model`, `tf_trt`) or a file (`onnx`,
            `litert` `.tflite`, `openvino` `.xml` (its weights beside it as
            `.bin`), `tensorrt`).
        format: `"saved_model"` (TensorFlow; signatures `serving_default`
            end-to-end and `raw`), `"onnx"`, `"litert"` (LiteRT / TFLite,
            built-in operators only), `"openvino"` (OpenVINO IR),
            `"tf_trt"` (TensorFlow with TensorRT, ≤ 2.17, GPU) or
            `"tensorrt"` (an engine from the ONNX; the `tensorrt` package
            and a GPU).
        nms: ONNX / OpenVINO / TensorRT: end-to-end detections with the NMS
            in the graph (True) or the raw decoded boxes and scores (False).
            A SavedModel has both signatures; LiteRT is end-to-end.
            RTMDet-R's boxes are (B, K, 5) rboxes and its rotated NMS is a
            loop of standard operators (ONNX `Loop`, LiteRT `WHILE`, TF's
            overlaps NMS in a SavedModel); torch's ONNX exporter cannot
            write that loop, so its end-to-end ONNX is exported from
            TensorFlow or JAX (`nms=False` works on torch).
        input_size: (H, W) of the images served; default the model's
            `image_size`. Images of another size are letterboxed into the
            network input as `predict` does.
        dynamic_size: serve images of any size (TensorFlow's graphs only:
            `saved_model`, `tf_trt`, and `onnx` from the TensorFlow backend;
            RTMDet only, as masks need a fixed size).
        batch_size: fixed batch size, or None for any (not on torch's ONNX
            exporter, which fixes it; default 1 there; LiteRT: default 1).
        channel_order: `"rgb"` or `"bgr"`, the order of the served images.
        precision: `"fp32"`, `"fp16"` or `"int8"`, as `FORMAT_PRECISIONS`
            allows per format. INT8 is post-training quantization of the
            network on `calibration` images; the letterbox and the NMS tail
            stay in float.
        opset: ONNX opset (default: the backend exporter's).
        calibration: INT8 only: the calibration images (an image folder,
            `"synthetic"`, `"tfds:NAME[:SPLIT]"`, a `DetectionSource` or
            uint8 arrays; `keras_rtmdet.export.calibration`).
        calibration_count: how many of them to use (default 200).

    The metadata (class names, thresholds, input and output descriptions)
    is written beside the artefact as JSON (`metadata_path`) and, for ONNX,
    also into the model's `metadata_props`.

    Models on the torch or JAX backend export `saved_model`, `tf_trt` and
    `litert` by saving their weights and re-running the export in a
    TensorFlow subprocess (TensorFlow must be installed).

    Returns: the path written.
    """
    format = FORMAT_ALIASES.get(format, format)
    if format not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {format!r}; one of {EXPORT_FORMATS}.")
    _check_detector(model)
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}.")
    if precision not in FORMAT_PRECISIONS[format]:
        raise ValueError(f"{format} is exported in {' / '.join(FORMAT_PRECISIONS[format])}, not {precision!r}.")
    if precision == "int8" and calibration is None:
        raise ValueError(
            "INT8 export needs calibration images (calibration=): an image folder, 'synthetic', "
            "'tfds:NAME[:SPLIT]' or uint8 arrays, a few hundred like the served ones."
        )
    if precision != "int8" and calibration is not None:
        raise ValueError(f"calibration images are for precision='int8', not {precision!r}.")
    input_size = None if dynamic_size else tuple(int(s) for s in (input_size or model.image_size))
    if format == "litert" and batch_size is None:
        batch_size = 1  # LiteRT's interpreter allocates fixed shapes
    options = {
        "nms": nms,
        "input_size": input_size,
        "batch_size": batch_size,
        "channel_order": channel_order,
        "precision": precision,
        "opset": opset,
        "calibration": None,
    }
    if format == "tf_trt":
        from keras_rtmdet.export.tensorrt import tf_trt_available

        available, reason = tf_trt_available()
        if not available:
            raise RuntimeError(reason)
    with tempfile.TemporaryDirectory() as folder:
        if precision == "int8":
            options["calibration"] = _calibration_file(model, calibration, calibration_count, input_size, folder)
        if format in TENSORFLOW_FORMATS and keras.config.backend() != "tensorflow":
            return export_in_tensorflow(model, path, format, options, verbose)
        return _export_here(model, os.fspath(path), format, options, verbose)


def _calibration_file(model, calibration, count, input_size, folder):
    """The calibration images at the served size, saved as .npy (a TensorFlow subprocess reads them too)."""
    import numpy as np

    from keras_rtmdet.export.calibration import calibration_images

    rotated = model.variant.box_format == "xywha"
    images = calibration_images(calibration, input_size or model.image_size, count, rotated=rotated)
    path = os.path.join(folder, "calibration.npy")
    np.save(path, images)
    return path


def _export_here(model, path, format, options, verbose):
    input_size, batch_size, channel_order = options["input_size"], options["batch_size"], options["channel_order"]
    precision = options["precision"]
    extra = {} if precision == "fp32" else {"precision": precision}
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
    elif format == "litert":
        from keras_rtmdet.export.litert_export import export_litert

        extra.update(export_litert(model, path, options))
    else:
        _write_onnx_based(model, path, format, options, extra)
    proto = extra.pop("proto", None)
    end_to_end = options["nms"] or format in TENSORFLOW_FORMATS
    info = export_metadata(model, format, end_to_end, input_size, batch_size, channel_order, **extra)
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
    if format == "openvino":
        from keras_rtmdet.export.openvino_export import check_openvino_target

        check_openvino_target(model, path, options["nms"])
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
        if options["precision"] == "int8":
            from keras_rtmdet.export.onnx_quantization import quantize_onnx

            proto = quantize_onnx(proto, options["calibration"])
        extra["proto"] = proto
        return
    if format == "openvino":
        from keras_rtmdet.export.openvino_export import write_openvino

        extra.update(write_openvino(proto, path, options))
        return
    from keras_rtmdet.export.tensorrt import build_tensorrt_engine

    batch = options["batch_size"]
    height, width = options["input_size"] or (None, None)
    build_tensorrt_engine(proto.SerializeToString(), path, (batch, height, width, 3), fp16=options["precision"] == "fp16")


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
