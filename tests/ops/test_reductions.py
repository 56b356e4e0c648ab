"""Means over large feature maps: float32-accurate on every backend (issue 18).

TensorFlow's one-step mean over (H, W) of an NHWC map is 1.8e-6 relative off
on a 160² map (torch and XLA: 1.4e-7); the bounds below sit between the two.
"""

import numpy as np
import pytest

from keras_rtmdet.layers.csp_layer import ChannelAttention
from keras_rtmdet.layers.sync_batch_normalization import SyncBatchNormalization
from keras_rtmdet.ops.reductions import spatial_mean
from keras_rtmdet.ops.reductions import staged_mean
from tests.test_case import assign_values
from tests.test_case import to_numpy

ACCURATE = 5e-7


def feature_map(shape, seed=0):
    """Post-activation-like values: a large common offset is what the one-step mean loses."""
    return (np.random.default_rng(seed).standard_normal(shape) * 2.0 + 3.0).astype("float32")


def relative_error(actual, reference):
    return float(np.abs(to_numpy(actual) - reference).max() / np.abs(reference).max())


def test_spatial_mean_of_a_large_map_is_float32_accurate():
    x = feature_map((2, 160, 160, 64))
    reference = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)
    pooled = spatial_mean(x)
    assert tuple(pooled.shape) == (2, 1, 1, 64)
    assert relative_error(pooled, reference) <= ACCURATE


@pytest.mark.parametrize("axes, keepdims", [((0, 1, 2), False), ((-3, -2), True), ((1,), False)])
def test_staged_mean_equals_the_mean_over_any_axes(axes, keepdims):
    x = feature_map((3, 20, 24, 5), seed=1)
    reference = x.astype(np.float64).mean(axis=axes, keepdims=keepdims)
    result = staged_mean(x, axes, keepdims=keepdims)
    assert tuple(result.shape) == reference.shape
    assert relative_error(result, reference) <= ACCURATE


def test_channel_attention_gate_of_a_large_map_is_accurate():
    x = feature_map((2, 160, 160, 32), seed=2)
    layer = ChannelAttention()
    layer.build(x.shape)
    # Each channel gated by its own mean around the middle of the hard sigmoid, where the gate follows the
    # mean most steeply without saturating.
    kernel = np.eye(32, dtype="float32")[None, None]
    bias = np.full(32, -3.0, "float32")
    assign_values(layer.fc.weights, [kernel, bias])
    x64 = x.astype(np.float64)
    gate = np.clip((x64.mean(axis=(1, 2)) @ kernel[0, 0] + bias) / 6.0 + 0.5, 0.0, 1.0)
    assert 0.0 < gate.min() and gate.max() < 1.0  # no channel saturates: every mean reaches the output
    assert relative_error(layer(x), x64 * gate[:, None, None, :]) <= ACCURATE


def test_batch_norm_training_statistics_are_accurate():
    x = feature_map((8, 96, 96, 16), seed=4)
    layer = SyncBatchNormalization(momentum=0.0, epsilon=1e-5)
    out = layer(x, training=True)
    x64 = x.astype(np.float64)
    mean, variance = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    assert relative_error(layer.moving_mean, mean) <= ACCURATE
    assert relative_error(layer.moving_variance, variance) <= ACCURATE
    np.testing.assert_allclose(to_numpy(out), (x64 - mean) / np.sqrt(variance + 1e-5), atol=2e-6)
