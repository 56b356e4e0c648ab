"""The EMA's `avg ← keep·avg + m·src` over all weights, fused per backend.

Updating a few hundred variables one `assign` at a time costs a dispatch
each; each backend has a way to do them in one go (a jitted function on JAX,
a `tf.function` on TensorFlow, `torch._foreach_*` on PyTorch). `method="keras"`
is the plain `keras.ops` loop, which the tests hold the fast paths to.
"""

import keras
import numpy as np


def make_ema_update(average, source, method="auto"):
    """Return `fn(source_values, keep, m)` that updates the `average` variables in place.

    Args:
        average: list of EMA `keras.Variable`s.
        source: the model variables they follow (same order).
        method: "auto" (the backend's fused path) or "keras".
    """
    backend = keras.backend.backend() if method == "auto" else method
    if backend == "jax":
        return _jax_update(average)
    if backend == "tensorflow":
        return _tensorflow_update(average, source)
    if backend == "torch":
        return _torch_update(average)
    if method not in ("auto", "keras"):
        raise ValueError(f"Unknown EMA update method {method!r}.")

    def fn(src, keep, m):
        for a, s in zip(average, src):
            a.assign(a.value * keep + keras.ops.cast(s, a.dtype) * m)

    return fn


def _jax_update(average):
    import jax

    def step(avg, src, keep, m):
        return [a * keep.astype(a.dtype) + s.astype(a.dtype) * m.astype(a.dtype) for a, s in zip(avg, src)]

    jitted = jax.jit(step)  # no buffer donation: a caller may still hold an EMA array

    def fn(src, keep, m):
        new = jitted([a.value for a in average], list(src), np.float32(keep), np.float32(m))
        for a, x in zip(average, new):
            a.assign(x)

    return fn


def _tensorflow_update(average, source):
    import tensorflow as tf

    @tf.function(autograph=False)
    def tf_step(keep, m):
        for a, s in zip(average, source):
            a.assign(a.value * tf.cast(keep, a.dtype) + tf.cast(s.value, a.dtype) * tf.cast(m, a.dtype))

    def fn(src, keep, m):  # reads the model variables inside the graph
        tf_step(tf.constant(keep, tf.float64), tf.constant(m, tf.float64))

    return fn


def _torch_update(average):
    import torch

    def fn(src, keep, m):
        with torch.no_grad():
            avg = [a.value for a in average]
            src = [s.detach().to(a.dtype) for a, s in zip(avg, src)]
            torch._foreach_mul_(avg, keep)
            torch._foreach_add_(avg, src, alpha=m)

    return fn
