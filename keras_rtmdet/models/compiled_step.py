"""One function, `compile_step`, that compiles a model's inference step for the Keras backend.

`keras.Model.predict` costs far more than the step it runs (an epoch
iterator, callbacks, a progress bar, numpy round trips: on an H200 RTMDet-s
`predict` took 24 ms on JAX for a 3.9 ms graph), and its compiled function
bakes Python values in: every new threshold was a new compilation. A step
compiled here takes its thresholds as scalar tensors and is called directly:

- JAX: `jax.jit` of the step under a `keras.StatelessScope` holding the
  variables' current values (passed in on every call, so changed weights are
  seen and never retraced).
- TensorFlow: `tf.function(reduce_retracing=True)`, with XLA when the model's
  `jit_compile` resolves to it (Keras' own rule: not on CPU-only machines).
- PyTorch with `model.jit_compile = True`: the whole step exported
  (`torch.export`) and compiled (`torch.compile`, inductor) once per input
  shape. The parameters stay the model's own tensors,
  so changed weights are seen. Keras' own rule leaves `jit_compile` off on
  torch: compiling costs tens of seconds per shape.
- PyTorch otherwise, and the fallback: the `keras.ops` step itself, run
  eagerly without recording gradients (`compile_step(..., backend="eager")`
  forces it; the tests check that every form agrees with it).
"""

import keras
import numpy as np

from keras_rtmdet.ops.no_gradients import no_gradients

COMPILING_BACKENDS = ("jax", "tensorflow")
STEP_BACKENDS = ("jax", "tensorflow", "torch", "eager")
# `torch.compile` mode of compiled torch steps. Not "reduce-overhead": recording the CUDA graphs of a
# step holding the NMS `while_loop` failed in inductor's graph partitioning (torch 2.11, H100: an
# assertion on a partition input), so the whole-step graph runs without CUDA graphs.
TORCH_COMPILE_MODE = "default"
# The `torch.compile` backend of compiled torch steps (tests set "eager": the export alone, fast).
TORCH_COMPILER = "inductor"


class CompiledStep:
    """A compiled `step(*arrays, thresholds)`; `compiled` steps want fixed shapes and tensor thresholds."""

    def __init__(self, call, compiled):
        self._call = call
        self.compiled = compiled

    def __call__(self, *args):
        return self._call(*args)

    def thresholds(self, values):
        """Scalar thresholds as this step wants them: tensors where a Python number would be baked in."""
        if not self.compiled:
            return dict(values)  # eager: Python numbers need no device round trip (torchvision's NMS takes a float)
        dtypes = {key: "int32" if isinstance(value, (int, np.integer)) else "float32" for key, value in values.items()}
        return {key: keras.ops.convert_to_tensor(np.asarray(value, dtypes[key])) for key, value in values.items()}


def compile_step(model, step, backend=None):
    """`step(*arrays, thresholds)` compiled for `backend` (default: Keras'); returns a `CompiledStep`.

    Args:
        model: the `keras.Model` whose variables `step` reads.
        step: a function of backend tensors (the arrays, possibly in dicts)
            and a dict of scalar thresholds, written in `keras.ops`.
        backend: one of `STEP_BACKENDS`; `"torch"` compiles (export +
            `torch.compile` with `TORCH_COMPILER`) when `model.jit_compile`
            is True, else runs eagerly.
    """
    backend = backend or keras.config.backend()
    if backend not in STEP_BACKENDS:
        raise ValueError(f"Unknown step backend {backend!r}; choose one of {STEP_BACKENDS}.")
    if backend == "jax":
        return CompiledStep(_jax_step(model, step), compiled=True)
    if backend == "tensorflow":
        return CompiledStep(_tensorflow_step(model, step), compiled=True)
    if backend == "torch" and model.jit_compile is True:
        return compile_torch_step(model, step)
    return CompiledStep(_eager_step(step), compiled=False)


def _jax_step(model, step):
    import jax

    variables = list(model.trainable_variables) + list(model.non_trainable_variables)

    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return step(*args)

    jitted = jax.jit(pure)

    def call(*args):
        return jitted([variable.value for variable in variables], *args)

    return call


def _tensorflow_step(model, step):
    import tensorflow as tf

    return tf.function(step, reduce_retracing=True, jit_compile=bool(model.jit_compile))


def compile_torch_step(model, step, compiler=None, mode=None):
    """`step` exported (`torch.export`) and compiled (`torch.compile`) once per input shape: a `CompiledStep`.

    Args:
        compiler: the `torch.compile` backend (default `TORCH_COMPILER`).
        mode: its mode (default `TORCH_COMPILE_MODE`; inductor only: another compiler ignores it).
    """
    import torch

    compiler = compiler or TORCH_COMPILER
    mode = (mode or TORCH_COMPILE_MODE) if compiler == "inductor" else None

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model  # registers the model's parameters and buffers

        def forward(self, *args):
            return step(*args)

    module = Step().eval()
    compiled = {}

    def call(*args):
        args = torch.utils._pytree.tree_map(lambda x: x if x is None else keras.ops.convert_to_tensor(x), args)
        leaves = torch.utils._pytree.tree_leaves(args)
        key = tuple(leaf if leaf is None else (tuple(leaf.shape), leaf.dtype) for leaf in leaves)
        with torch.no_grad():
            if key not in compiled:
                exported = torch.export.export(module, tuple(args))
                compiled[key] = torch.compile(exported.module(), mode=mode, backend=compiler, dynamic=False)
            # A new step begins: CUDA-graph trees may reuse the previous step's output memory.
            torch.compiler.cudagraph_mark_step_begin()
            return compiled[key](*args)

    return CompiledStep(call, compiled=True)


def _eager_step(step):
    def call(*args):
        with no_gradients():
            return step(*args)

    return call
