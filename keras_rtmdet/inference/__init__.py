"""Inference paths beyond `model.predict`: sliding windows over large images, videos, compiled serving per backend."""

from keras_rtmdet.inference.large_image import merge_patch_detections
from keras_rtmdet.inference.large_image import predict_large_image
from keras_rtmdet.inference.torch_compile import CompiledDetector
from keras_rtmdet.inference.torch_compile import compile_for_inference
from keras_rtmdet.inference.video import FrameDetections
from keras_rtmdet.inference.video import VideoFileWriter
from keras_rtmdet.inference.video import VideoReader
from keras_rtmdet.inference.video import detect_video

__all__ = [
    "CompiledDetector",
    "FrameDetections",
    "VideoFileWriter",
    "VideoReader",
    "compile_for_inference",
    "detect_video",
    "merge_patch_detections",
    "predict_large_image",
]
