"""Serving helpers: fast, fixed-shape inference paths per backend."""

from keras_rtmdet.inference.torch_compile import CompiledDetector
from keras_rtmdet.inference.torch_compile import compile_for_inference

__all__ = ["CompiledDetector", "compile_for_inference"]
