"""Shared helpers for the test suite (the keras-hub `TestCase` idea, as functions)."""

import json
import os

import keras
import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# Dense-array tolerance of the reference fixtures (fixtures/README.md).
DENSE_REL_TOL = 2e-4


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def trainable_parameter_count(model):
    """Trainable scalars of `model`, each shared variable once (as the reference counts)."""
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def build_shapes_only(build):
    """`build()` with every variable created by shape only, never initialised.

    The model is the real one (same layers, variables, shapes and trainable
    flags), so `trainable_parameter_count` counts it as before, without
    drawing up to 100M random values (on JAX: compiling every initializer).
    Its variables have no values: only for counting. They are taken off
    Keras' list of variables to initialise later, which would fill them.
    """
    from keras.src.backend.common import global_state

    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            return build()
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def one_batch_forever(x, y):
    """`(x, y)` as one batch, repeated: `fit(it, steps_per_epoch=1, epochs=N)` takes N steps on it.

    The steps of `fit(x, y, batch_size=len(x), epochs=N)` (less the reshuffle of the batch's rows each
    epoch), one epoch each as before; but Keras keeps this iterator for all epochs, where numpy arrays
    get a new one every epoch (~0.1-0.2 s on TensorFlow, for each of N epochs).
    """
    import tensorflow as tf

    return tf.data.Dataset.from_tensors((x, y)).repeat()


def load_fixture(name):
    """The arrays and meta.json of a reference fixture folder."""
    folder = os.path.join(FIXTURES, name)
    data = {"path": folder}
    for part in ("inputs", "features", "head", "preds"):
        data[part] = dict(np.load(os.path.join(folder, f"{part}.npz")))
    with open(os.path.join(folder, "meta.json")) as f:
        data["meta"] = json.load(f)
    data["checkpoint"] = os.path.join(folder, "checkpoint.pth")
    return data


def nchw_to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def assert_dense_close(actual, reference_nchw, name):
    """max|Δ| ≤ 2e-4 · max|ref|, the fixtures' dense-array tolerance."""
    ref = nchw_to_nhwc(reference_nchw) if reference_nchw.ndim == 4 else reference_nchw
    actual = to_numpy(actual)
    assert actual.shape == ref.shape, f"{name}: shape {actual.shape} != {ref.shape}"
    err = np.abs(actual - ref).max() / np.abs(ref).max()
    assert err <= DENSE_REL_TOL, f"{name}: relative error {err:.3g} > {DENSE_REL_TOL}"
    return err


def run_serialization_test(obj):
    """`get_config` → `from_config` gives an equal config, and survives JSON."""
    config = obj.get_config()
    clone = type(obj).from_config(config)
    assert json.loads(json.dumps(clone.get_config())) == json.loads(json.dumps(config))
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(revived) is type(obj)
    return clone
