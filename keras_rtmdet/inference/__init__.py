"""Inference paths beyond `model.predict`: sliding windows over large images, compiled serving per backend."""

from keras_rtmdet.inference.large_image import merge_patch_detections
from keras_rtmdet.inference.large_image import predict_large_image
from keras_rtmdet.inference.torch_compile import CompiledDetector
from keras_rtmdet.inference.torch_compile import compile_for_inference

__all__ = ["CompiledDetector", "compile_for_inference", "merge_patch_detections", "predict_large_image"]
