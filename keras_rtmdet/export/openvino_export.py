"""OpenVINO IR export (`export(..., format="openvino")`): the end-to-end ONNX, converted.

The IR is read by `openvino.convert_model` from the ONNX export of the current
backend (`onnx_export.onnx_model`; its `NonMaxSuppression` is an OpenVINO op
too) and saved as `.xml` + `.bin`:

* fp32: float weights. OpenVINO's CPU plugin computes in bf16 by default on
  CPUs with bf16 units; compile with `{"INFERENCE_PRECISION_HINT": "f32"}`
  (the metadata's `openvino_compile_config`) for predict's results.
* fp16: weights stored in half precision (`compress_to_fp16`), half the size;
  the plugin computes in its default precision.
* int8: NNCF post-training quantization of the network on the calibration
  images. The letterbox before the first convolution and the decoding / NMS
  after the exit convolutions are in NNCF's ignored scope, read off the graph
  (`onnx_quantization.network_region`).
"""

import os
import tempfile

from keras_rtmdet.export.calibration import load_calibration
from keras_rtmdet.export.onnx_quantization import CONVOLUTIONS
from keras_rtmdet.export.onnx_quantization import image_batches
from keras_rtmdet.export.onnx_quantization import network_region

# What an fp32 IR needs at compile time to compute in fp32 on every CPU.
FP32_COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def _require_openvino():
    try:
        import openvino  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "OpenVINO export needs the `openvino` package: pip install openvino"
        ) from error


def check_openvino_target(detector, path, nms):
    """Refuse before any export: no `openvino` package, a path that is not an `.xml`, or an NMS it cannot read."""
    _require_openvino()
    if not os.fspath(path).endswith(".xml"):
        raise ValueError(f"An OpenVINO IR is written as an .xml file (weights beside it in .bin); got {path!r}.")
    if nms and not detector.variant.axis_aligned_nms:
        # OpenVINO 2026.4's ONNX reader fails on the `Loop` that holds the rotated NMS ("Conversion failed for Loop").
        raise NotImplementedError(
            f"OpenVINO cannot read the loop of {detector.variant.display_name}'s rotated NMS: export the raw "
            "outputs for OpenVINO (nms=False, --raw) and run the NMS on the host, or serve the end-to-end "
            "model with ONNX Runtime or LiteRT."
        )


def write_openvino(proto, path, options):
    """Write the exported ONNX `proto` as an OpenVINO IR at `path` (`.xml`, weights beside it in `.bin`).

    Args:
        proto: `onnx_export.onnx_model`'s `ModelProto` of the detector.
        path: the `.xml` to write.
        options: `export`'s settings (`precision`, `calibration`: the `.npy`
            of (N, H, W, 3) uint8 calibration images for int8).

    Returns: the metadata entries to add (the fp32 compile config).
    """
    openvino_from_onnx(proto, path, options["precision"], options.get("calibration"))
    return {"openvino_compile_config": dict(FP32_COMPILE_CONFIG)} if options["precision"] == "fp32" else {}


def openvino_from_onnx(proto, path, precision="fp32", calibration=None):
    """Convert an ONNX `ModelProto` (input `images` (B, H, W, 3) uint8) to an IR at `path` (.xml + .bin).

    Args:
        precision: `"fp32"`, `"fp16"` (weights compressed) or `"int8"` (NNCF on `calibration`).
        calibration: int8: the `.npy` of (N, H, W, 3) uint8 images at the served size.

    Returns: `path`.
    """
    import onnx
    import openvino as ov

    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(
            f"OpenVINO is exported in fp32 / fp16 / int8, not {precision!r}."
        )
    if (precision == "int8") != (calibration is not None):
        raise ValueError(
            "OpenVINO int8 needs calibration images, and only int8 takes them."
        )
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "model.onnx")
        onnx.save(proto, source)
        model = ov.convert_model(source)
    if precision == "int8":
        model = quantize_openvino(model, calibration)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    ov.save_model(model, os.fspath(path), compress_to_fp16=precision == "fp16")
    return path


def openvino_network_region(model):
    """(region, exits) of an `openvino.Model` as sets of friendly names (`network_region`)."""
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}

    def inputs_of(name):
        return [
            value.get_node().get_friendly_name() for value in ops[name].input_values()
        ]

    return network_region(
        list(ops), inputs_of, lambda name: ops[name].get_type_name() in CONVOLUTIONS
    )


def quantize_openvino(model, calibration):
    """`model` with its network quantized by NNCF (8-bit weights and activations) on the images of `calibration`."""
    import nncf

    images = load_calibration(calibration)
    shape = model.inputs[0].get_partial_shape()
    batch = shape[0].get_length() if shape[0].is_static else None
    served = [d.get_length() if d.is_static else None for d in shape][1:]
    if any(
        d is not None and d != s for d, s in zip(served, images.shape[1:], strict=True)
    ):
        raise ValueError(
            f"Calibration images are {images.shape[1:]}; the graph serves {tuple(served)}."
        )
    region, exits = openvino_network_region(model)
    if not region:
        raise ValueError("The graph has no convolution: nothing to quantize.")
    outside = sorted(
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_friendly_name() not in region
    )
    batches = list(image_batches(images, [batch]))
    return nncf.quantize(
        model,
        nncf.Dataset(batches),
        subset_size=len(batches),
        # The letterbox, decoding and NMS, and the exit convolutions (scores, box distances) stay float.
        ignored_scope=nncf.IgnoredScope(names=outside + sorted(exits), validate=False),
    )
