"""LiteRT (TFLite) export: one `serving_default` signature, uint8 images in, detections out.

The graph is the `"end_to_end"` serving stage (`serving_graph`): the
letterbox, the network, the candidate selection, the model's
`graph_nms_method` NMS (a bounded loop of `keras.ops`: LiteRT has no
class-aware NMS operator of its own) and the padded detections. TensorFlow
writes it as a SavedModel and the LiteRT converter turns it into built-in
operators only (no Flex / Select TF ops, no custom operators), so the stock
`ai-edge-litert` interpreter and the mobile runtimes run it.

Precisions: fp32; fp16 (float16 weights, float32 arithmetic on CPU); int8
(the network's operators post-training quantized on calibration images,
`litert_quantization`; the letterbox, the decoding and the NMS stay float).

Needs the TensorFlow backend; `keras_rtmdet.export.export` re-runs the
export under TensorFlow for models of the other backends.
"""

import os
import tempfile

import keras

from keras_rtmdet.export.calibration import load_calibration
from keras_rtmdet.export.litert_quantization import quantize_network
from keras_rtmdet.export.serving_graph import ServingGraph


def _require_tensorflow():
    if keras.config.backend() != "tensorflow":
        raise RuntimeError(
            "LiteRT export runs on the TensorFlow backend; use keras_rtmdet.export.export, "
            "which re-runs it under KERAS_BACKEND=tensorflow."
        )


def end_to_end_saved_model(detector, folder, input_size, batch_size, channel_order):
    """Write the `"end_to_end"` stage as a SavedModel (`serving_default`, input `images`) in `folder`."""
    import tensorflow as tf

    graph = ServingGraph(detector, "end_to_end", input_size, channel_order)
    spec = tf.TensorSpec((batch_size, *input_size, 3), tf.uint8, name="images")

    def serve(images):
        return dict(zip(graph.output_names, graph(images), strict=True))

    archive = keras.export.ExportArchive()
    archive.track(detector)
    archive.add_endpoint("serving_default", serve, input_signature=[spec])
    archive.write_out(folder, verbose=False)
    return graph


def configure_precision(converter, precision):
    """Set the converter's optimisation for `precision`: fp16 weights, or fp32 (also INT8's float model)."""
    import tensorflow as tf

    if precision == "fp16":
        # Weights stored in float16, dequantized once at load: the arithmetic stays float32 on CPUs
        # (GPU delegates may run it in float16).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision not in ("fp32", "int8"):
        raise ValueError(f"LiteRT export is written in fp32, fp16 or int8, not {precision!r}.")


def convert_saved_model(folder, precision):
    """The `.tflite` flatbuffer (bytes) of the SavedModel in `folder`: built-in operators only; INT8's float model."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(folder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    configure_precision(converter, precision)
    return converter.convert()


def export_litert(detector, path, options):
    """Write `detector` as a `.tflite` file; returns metadata entries for `export_metadata`.

    Args:
        detector: an `RTMDet`, `RTMDetIns` or `RTMDetRotated`.
        path: the `.tflite` file.
        options: `export`'s options (`input_size` (H, W) required,
            `batch_size` required, `channel_order`, `precision`, `calibration`).
    """
    _require_tensorflow()
    if options["input_size"] is None:
        raise ValueError("LiteRT export serves a fixed image size: give input_size (H, W), not dynamic_size.")
    if not options["nms"]:
        raise ValueError("LiteRT export is end-to-end (the NMS in the graph); nms=False is not written.")
    if not str(path).endswith(".tflite"):
        raise ValueError(f"A LiteRT model is a .tflite file; got {path!r}.")
    batch_size = options["batch_size"]
    if batch_size is None:
        raise ValueError("LiteRT export serves a fixed batch size: give batch_size.")
    if options["precision"] == "int8":
        images = load_calibration(options["calibration"], options["input_size"])
    with tempfile.TemporaryDirectory() as folder:
        end_to_end_saved_model(detector, folder, options["input_size"], batch_size, options["channel_order"])
        flatbuffer = convert_saved_model(folder, options["precision"])
    if options["precision"] == "int8":
        flatbuffer = quantize_network(flatbuffer, images, detector.name)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return {"signature": "serving_default"}
