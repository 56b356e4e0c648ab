"""Serve a detector on the torch backend through `torch.export` + `torch.compile`.

Keras on the torch backend runs layer by layer in eager mode, paying about
0.3 ms of Python per layer; an RTMDet forward is CPU-bound even at batch 64.
Keras' own `jit_compile=True` does not help on torch (Dynamo guards on every
Keras layer). Exporting the functional graph with `torch.export.export` gives
a plain FX graph that `torch.compile` handles well: with
`mode="reduce-overhead"` (inductor + CUDA graphs) RTMDet-s ran ~60× faster
than Keras-torch eager on an H200 (docs/performance.md §3.7).

The price is a **fixed input shape**: one compiled artefact serves one
(batch, height, width) and dtype; compile another for another shape.
`CompiledDetector.detect` compiles the whole step the same way: the forward,
decoding, NMS (`ops.graph_capture`: no value read back to the host) and the
rescale, with the thresholds as inputs.
"""

import keras
import numpy as np

from keras_rtmdet.models.compiled_step import compile_torch_step
from keras_rtmdet.models.dense_postprocessing import RUNTIME_SETTINGS
from keras_rtmdet.models.dense_postprocessing import first_detections
from keras_rtmdet.utils.input_checks import check_postprocess_settings

__all__ = ["CompiledDetector", "compile_for_inference"]


def _require_torch_backend():
    backend = keras.config.backend()
    if backend != "torch":
        raise RuntimeError(
            f"compile_for_inference needs the torch backend, but Keras runs on {backend!r}. "
            "Set KERAS_BACKEND=torch before importing keras (on JAX, jit `model.stateless_call` instead; "
            "on TensorFlow, use tf.function)."
        )


class CompiledDetector:
    """A detector's forward, exported and compiled for one input shape.

    Calling it returns the raw outputs (`cls_logits`, box outputs) like
    `model(images)`; `detect` returns detections, from a second compiled
    graph that also holds `model.postprocess` (built on its first call,
    compiled without CUDA graphs: see `compiled_step.TORCH_COMPILE_MODE`).

    With `mode="reduce-overhead"` on CUDA the outputs live in CUDA-graph
    memory that the *next* call overwrites: use or copy (`.clone()`) them
    before calling again.
    """

    def __init__(self, model, compiled, exported, input_shape, dtype, backend="inductor"):
        self.model = model
        self.compiled = compiled
        self.exported = exported
        self.input_shape = tuple(input_shape)
        self.dtype = dtype
        # The compiled steps' own mode: CUDA graphs fail around the NMS loop (`compiled_step.TORCH_COMPILE_MODE`).
        self._detect_step = compile_torch_step(model, self._detect_function(), backend)

    @property
    def image_size(self):
        return self.input_shape[1:3]

    def _check(self, images):
        shape = tuple(images.shape)
        if shape != self.input_shape:
            raise ValueError(
                f"This CompiledDetector was compiled for inputs of shape {self.input_shape} "
                f"(batch, height, width, channels) but got {shape}; compile another one for that "
                "shape (compile_for_inference(model, batch_size, image_size))."
            )
        # Moves to the model's device and casts to the compiled dtype.
        return keras.ops.convert_to_tensor(images, dtype=self.dtype)

    def __call__(self, images):
        """(B, H, W, 3) pixels in [0, 255] → dict of raw per-prior outputs."""
        import torch

        images = self._check(images)
        with torch.no_grad():
            if hasattr(torch, "compiler") and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
                # Tell CUDA-graph trees that a new inference step starts, so
                # the previous step's outputs may be overwritten.
                torch.compiler.cudagraph_mark_step_begin()
            return self.compiled(images)

    def _detect_function(self):
        model, image_size = self.model, self.image_size

        def step(images, scale_factors, thresholds):
            outputs = model(images, training=False)
            return model.postprocess(outputs, image_size, scale_factors, thresholds)

        return step

    def detect(self, images, scale_factors=None, **settings):
        """Forward + `model.postprocess`, one compiled graph → padded detections dict (backend tensors).

        Args:
            images: as `__call__`'s.
            scale_factors: optional (B, 2) (w_scale, h_scale): boxes are
                divided by them (original-image pixels).
            **settings: per-call `score_threshold`, `iou_threshold`,
                `min_bbox_size`, `max_detections` (≤ the model's): inputs of
                the graph, never a recompilation.
        """
        images = self._check(images)
        settings = check_postprocess_settings(settings, self.model.nms_methods)
        static = sorted(set(settings) - set(RUNTIME_SETTINGS))
        if static or settings.get("max_detections", 0) > self.model.max_detections:
            raise ValueError(
                f"{static or ['max_detections']} fix the compiled graph's shapes; set them on the model "
                "before compile_for_inference. Per call: score_threshold, iou_threshold, min_bbox_size and "
                "max_detections up to the model's."
            )
        if scale_factors is None:
            scale_factors = np.ones((self.input_shape[0], 2), "float32")
        thresholds = self._detect_step.thresholds(self.model.runtime_thresholds(settings))
        out = self._detect_step(images, keras.ops.convert_to_tensor(scale_factors, "float32"), thresholds)
        return first_detections(out, settings["max_detections"]) if "max_detections" in settings else out


def compile_for_inference(
    model,
    batch_size,
    image_size=None,
    mode="reduce-overhead",
    dtype=None,
    backend="inductor",
    **compile_kwargs,
):
    """Export `model`'s forward for one input shape and `torch.compile` it.

    Args:
        model: a detector (e.g. `RTMDet`) on the torch backend.
        batch_size: the fixed batch size.
        image_size: (height, width) of the padded input; defaults to
            `model.image_size`. Multiples of 32.
        mode: `torch.compile` mode ("reduce-overhead" uses CUDA graphs on
            GPU; None for the default mode). Inductor only.
        dtype: dtype of the input images (default "float32"); inputs of
            another dtype are cast. The compute dtype follows the model's
            dtype policy (e.g. `mixed_bfloat16` set before building it).
        backend: `torch.compile` backend ("inductor"; "eager" skips code
            generation, for tests and debugging).
        **compile_kwargs: further `torch.compile` arguments.

    Returns: a `CompiledDetector`. Exporting takes seconds and compiling tens
    of seconds for a full-size model; the first call triggers the compile.
    """
    _require_torch_backend()
    import torch

    if image_size is None:
        image_size = model.image_size
    height, width = (int(s) for s in image_size)
    dtype = keras.backend.standardize_dtype(dtype or "float32")
    shape = (int(batch_size), height, width, 3)

    class _Forward(torch.nn.Module):
        def __init__(self, detector):
            super().__init__()
            self.detector = detector

        def forward(self, images):
            return self.detector(images, training=False)

    example = keras.ops.convert_to_tensor(keras.ops.zeros(shape, dtype=dtype))
    wrapper = _Forward(model).eval()
    with torch.no_grad():
        exported = torch.export.export(wrapper, (example,))
    if backend != "inductor":
        mode = None  # modes are inductor settings; other backends ignore them with a warning
    compiled = torch.compile(exported.module(), mode=mode, backend=backend, dynamic=False, **compile_kwargs)
    return CompiledDetector(model, compiled, exported, shape, dtype, backend=backend)
