"""Export of RTMDet detectors for serving: SavedModel, ONNX, LiteRT, OpenVINO, TF-TRT and TensorRT (`export`)."""

from keras_rtmdet.export.export import EXPORT_FORMATS
from keras_rtmdet.export.export import export
from keras_rtmdet.export.metadata import read_metadata
from keras_rtmdet.models.dense_detector import register_exporter

register_exporter(export)

__all__ = ["EXPORT_FORMATS", "export", "read_metadata"]
