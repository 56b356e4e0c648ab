"""What an exported model's server needs to know, written beside it as JSON."""

import json
import os

import keras

from keras_rtmdet.export.serving_graph import serving_names
from keras_rtmdet.version import __version__

METADATA_FILE = "rtmdet_export.json"

OUTPUT_DOCS = {
    "boxes": "xyxy pixels of the input image; end-to-end (B, K, 4) padded with -1, raw (B, N, 4) per prior",
    "rboxes": (
        "rotated boxes (cx, cy, w, h in pixels of the input image, angle in radians, le90: [-pi/2, pi/2), "
        "positive turning +x towards +y); end-to-end (B, K, 5) padded with -1, raw (B, N, 5) per prior"
    ),
    "scores": "end-to-end (B, K) padded with -1; raw (B, N, C) sigmoid class scores per prior",
    "labels": "(B, K) int32 class index, -1 after num_detections",
    "num_detections": "(B,) int32 valid detections per image",
    "masks": "(B, K, H, W) bool instance masks at the input image size",
    "kernel_preds": "(B, N, G) dynamic mask-head parameters per prior (RTMDet-Ins)",
    "mask_feat": "(B, H_t/8, W_t/8, P) mask prototypes (RTMDet-Ins)",
}


def metadata_path(path, format):
    """The JSON beside an artefact: inside a SavedModel directory, `<name>.json` beside a file."""
    if format in ("saved_model", "tf_trt"):
        return os.path.join(path, METADATA_FILE)
    return os.path.splitext(path)[0] + ".json"


def export_metadata(detector, format, nms, input_size, batch_size, channel_order, **extra):
    """The JSON-ready description of an export of `detector`."""
    outputs = serving_names(detector, "detections" if nms else "raw")[1]
    settings = detector.postprocess_config()
    info = {
        "format": format,
        "task": type(detector).__name__,
        "end_to_end": bool(nms),
        "class_names": list(detector.class_names) if detector.class_names else None,
        "num_classes": int(detector.num_classes),
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": [batch_size, *(input_size or (None, None)), 3],
            "channel_order": channel_order,
        },
        "network_input_size": list(detector.image_size),
        "preprocessing": "keep-ratio resize to network_input_size (cv2 INTER_LINEAR, bit-exact), pad bottom/right with 114, in the graph",
        "box_format": detector.variant.box_format,
        "strides": list(detector.strides),
        "score_threshold": float(settings["score_threshold"]),
        "iou_threshold": float(settings["iou_threshold"]),
        "nms_pre": int(settings["nms_pre"]),
        "max_candidates": int(settings["max_candidates"]),
        "max_detections": int(settings["max_detections"]),
        "outputs": {name: _output_doc(detector, name) for name in outputs},
        "exported_from_backend": keras.config.backend(),
        "keras_version": keras.__version__,
        "keras_rtmdet_version": __version__,
    }
    if hasattr(detector, "mask_threshold"):
        info["mask_threshold"] = float(detector.mask_threshold)
    info.update(extra)
    return info


def _output_doc(detector, name):
    """What output `name` holds; rotated `boxes` are (cx, cy, w, h, angle) rboxes (`box_format` "xywha")."""
    if name == "boxes" and detector.variant.box_format == "xywha":
        return OUTPUT_DOCS["rboxes"]
    return OUTPUT_DOCS[name]


def write_metadata(path, info):
    with open(path, "w") as f:
        json.dump(info, f, indent=2)
    return path


def read_metadata(path, format=None):
    """The metadata of an export (its artefact path, or the JSON itself)."""
    if not path.endswith(".json"):
        path = metadata_path(path, format or ("saved_model" if os.path.isdir(path) else "onnx"))
    with open(path) as f:
        return json.load(f)
