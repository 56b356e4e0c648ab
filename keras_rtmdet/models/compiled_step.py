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
- PyTorch, and the fallback: the `keras.ops` step itself, run eagerly without
  recording gradients (`compile_step(..., backend="eager")` forces it; the
  tests check that both agree). Compiling the whole step on torch is
  `keras_rtmdet.inference.compile_for_inference`'s job (fixed shapes).
"""

import keras
import numpy as np

from keras_rtmdet.ops.no_gradients import no_gradients

COMPILING_BACKENDS = ("jax", "tensorflow")


def compile_step(model, step, backend=None):
    """`step(*arrays, thresholds)` compiled for `backend` (default: Keras'); returns a callable of the same.

    Args:
        model: the `keras.Model` whose variables `step` reads.
        step: a function of backend tensors (the arrays) and a dict of scalar
            thresholds, written in `keras.ops`.
        backend: `"jax"`, `"tensorflow"`, or `"eager"` for the uncompiled step.
    """
    backend = backend or keras.config.backend()
    if backend == "jax":
        return _jax_step(model, step)
    if backend == "tensorflow":
        return _tensorflow_step(model, step)
    return _eager_step(step)


def step_thresholds(values, backend=None):
    """Scalar thresholds as the compiled step wants them: tensors where a Python number would be baked in."""
    backend = backend or keras.config.backend()
    if backend not in COMPILING_BACKENDS:
        return dict(values)  # eager: Python numbers need no device round trip (torchvision's NMS takes a float)
    dtypes = {key: "int32" if isinstance(value, (int, np.integer)) else "float32" for key, value in values.items()}
    return {key: keras.ops.convert_to_tensor(np.asarray(value, dtypes[key])) for key, value in values.items()}


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


def _eager_step(step):
    def call(*args):
        with no_gradients():
            return step(*args)

    return call
