"""Conv → BatchNorm folded into one conv at inference: equal to the unfolded pair, training untouched."""

import keras
import numpy as np
import pytest

from keras_rtmdet.layers.batch_norm_folding import batch_norm_folding
from keras_rtmdet.layers.batch_norm_folding import batch_norm_folding_enabled
from keras_rtmdet.layers.conv_module import ConvModule
from keras_rtmdet.models.rtmdet.rtmdet_head import RTMDetSepBNHead
from tests.test_case import to_numpy

CHANNELS = 8
CONV_MODULES = {
    "dense_3x3": dict(filters=12, kernel_size=3),
    "dense_3x3_stride_2": dict(filters=12, kernel_size=3, strides=2),
    "depthwise_5x5": dict(filters=CHANNELS, kernel_size=5, groups=CHANNELS),
}
LEVEL_SIZES = (12, 6, 3)
# Half-precision results against float32 (max|Δ| / max|ref|): bfloat16 has 8 significant bits, float16 11,
# and an output sums 9-200 rounded products (measured: ≤ 1.1e-2 and ≤ 1.4e-3 on the three backends).
MIXED_REL_TOL = {"mixed_bfloat16": 3e-2, "mixed_float16": 5e-3}


def conv_module(name, dtype=None):
    layer = ConvModule(**CONV_MODULES[name], dtype=dtype)
    layer.build((None, 13, 13, CHANNELS))
    return layer


def head(dtype=None):
    layer = RTMDetSepBNHead(num_classes=3, in_channels=CHANNELS, feat_channels=CHANNELS, dtype=dtype)
    layer.build([(None, size, size, CHANNELS) for size in LEVEL_SIZES])
    return layer


LAYERS = sorted(CONV_MODULES) + ["head"]


def make_layer(name, dtype=None):
    """A built ConvModule of `CONV_MODULES` or, for "head", a three-level head."""
    return head(dtype) if name == "head" else conv_module(name, dtype)


def randomize_weights(layer, seed=0):
    """Non-trivial BatchNorm statistics and affine weights (a fresh BN is the identity), random kernels."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        shape = variable.shape
        if variable.name == "moving_variance":
            value = rng.uniform(0.05, 3.0, shape)
        elif variable.name == "gamma":
            value = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
        elif variable.name == "kernel":
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 1.0, shape)
        variable.assign(value.astype("float32"))
    return layer


def layer_inputs(name, seed=1):
    rng = np.random.default_rng(seed)
    if name == "head":
        return [rng.normal(size=(2, size, size, CHANNELS)).astype("float32") for size in LEVEL_SIZES]
    return rng.normal(size=(2, 13, 13, CHANNELS)).astype("float32")


def outputs(layer, x, training=False):
    """The layer's outputs as a flat list of float32 numpy arrays."""
    return [to_numpy(keras.ops.cast(y, "float32")) for y in keras.tree.flatten(layer(x, training=training))]


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("name", LAYERS)
def test_folded_inference_equals_conv_then_batch_norm(name):
    layer = randomize_weights(make_layer(name))
    x = layer_inputs(name)
    folded = outputs(layer, x)
    with batch_norm_folding(False):
        unfolded = outputs(layer, x)
    for actual, expected in zip(folded, unfolded, strict=True):
        assert relative_error(actual, expected) <= 1e-5


@pytest.mark.parametrize("policy", sorted(MIXED_REL_TOL))
@pytest.mark.parametrize("name", LAYERS)
def test_folded_inference_under_mixed_precision_is_close_to_float32(name, policy):
    reference = randomize_weights(make_layer(name))
    mixed = make_layer(name, dtype=policy)
    mixed.set_weights(reference.get_weights())
    x = layer_inputs(name)
    results = keras.tree.flatten(mixed(x, training=False))
    assert all(keras.backend.standardize_dtype(y.dtype) == mixed.compute_dtype for y in results)
    for actual, expected in zip(outputs(mixed, x), outputs(reference, x), strict=True):
        assert relative_error(actual, expected) <= MIXED_REL_TOL[policy]


@pytest.mark.parametrize("name", sorted(CONV_MODULES))
def test_training_mode_is_unchanged_by_the_switch(name):
    x = layer_inputs(name)
    results = {}
    for enabled in (True, False):
        layer = randomize_weights(conv_module(name))
        with batch_norm_folding(enabled):
            results[enabled] = outputs(layer, x, training=True) + [to_numpy(v) for v in layer.non_trainable_weights]
    for folded, unfolded in zip(results[True], results[False], strict=True):
        np.testing.assert_array_equal(folded, unfolded)


def training_gradients(layer, x):
    """Gradients of a weighted sum of `layer(x, training=True)`'s outputs by its trainable variables."""
    weights = [np.random.default_rng(2).normal(size=y.shape).astype("float32") for y in outputs(layer, x, True)]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(*trainable):
        y, _ = layer.stateless_call(list(trainable), non_trainable, x, training=True)
        flat = keras.tree.flatten(y)
        return sum(keras.ops.sum(keras.ops.multiply(a, w)) for a, w in zip(flat, weights, strict=True))

    trainable = [to_numpy(v) for v in layer.trainable_variables]
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(loss, argnums=tuple(range(len(trainable))))(*trainable)]
    if backend == "torch":
        tensors = [keras.ops.convert_to_tensor(t).requires_grad_(True) for t in trainable]
        loss(*tensors).backward()
        return [t.grad.cpu().numpy() for t in tensors]
    import tensorflow as tf

    tensors = [tf.constant(t) for t in trainable]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = loss(*tensors)
    return [g.numpy() for g in tape.gradient(value, tensors)]


@pytest.mark.parametrize("name", ["dense_3x3_stride_2", "depthwise_5x5", "head"])
def test_training_gradients_flow_to_every_weight(name):
    layer = randomize_weights(make_layer(name))
    x = layer_inputs(name)
    grads = training_gradients(layer, x)
    with batch_norm_folding(False):
        unfolded_grads = training_gradients(layer, x)
    assert len(grads) == len(layer.trainable_variables)
    for variable, grad, unfolded in zip(layer.trainable_variables, grads, unfolded_grads, strict=True):
        assert np.all(np.isfinite(grad)) and np.any(grad != 0), variable.path
        np.testing.assert_array_equal(grad, unfolded)


@pytest.mark.backend_independent
def test_switch_is_scoped_and_restored_on_error():
    assert batch_norm_folding_enabled()
    with batch_norm_folding(False):
        assert not batch_norm_folding_enabled()
        with batch_norm_folding(True):
            assert batch_norm_folding_enabled()
        assert not batch_norm_folding_enabled()
    with pytest.raises(RuntimeError), batch_norm_folding(False):
        raise RuntimeError
    assert batch_norm_folding_enabled()
