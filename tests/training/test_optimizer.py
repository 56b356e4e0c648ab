"""AdamW decay exclusions and the flat-cosine schedule, against mmengine's formulas."""

import math

import numpy as np
import pytest

from keras_rtmdet.training.flat_cosine_schedule import FlatCosineSchedule
from keras_rtmdet.training.optimizer import no_decay_variables
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from keras_rtmdet.training.optimizer import scaled_learning_rate
from tests.test_case import tiny_model
from tests.test_case import to_numpy


def reference_lr(t, base=0.004, iters_per_epoch=459, epochs=300, cosine_epoch=150):
    """mmengine: LinearLR(1e-5, end=1000) then CosineAnnealingLR(begin=150 ep, eta_min=5 %)."""
    if t < 1000:
        return base * (1e-5 + (1 - 1e-5) * min(t, 999) / 999)
    start, total = cosine_epoch * iters_per_epoch, epochs * iters_per_epoch
    if t < start:
        return base
    eta_min = base * 0.05
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * min(t - start, total - start) / (total - start))) / 2


def test_schedule_follows_the_reference():
    schedule = FlatCosineSchedule(0.004, total_steps=300 * 459, cosine_start_step=150 * 459)
    steps = [0, 1, 500, 998, 999, 1000, 5000, 150 * 459 - 1, 150 * 459, 200 * 459, 300 * 459 - 1, 300 * 459]
    got = [float(to_numpy(schedule(s))) for s in steps]
    want = [reference_lr(s) for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[-1] == pytest.approx(0.004 * 0.05, rel=1e-5)


def test_learning_rate_scales_linearly_with_the_batch():
    assert scaled_learning_rate(256) == pytest.approx(0.004)
    assert scaled_learning_rate(32) == pytest.approx(0.0005)


def test_norm_weights_and_biases_get_no_weight_decay():
    model = tiny_model()
    excluded = {v.path for v in no_decay_variables(model)}
    assert "stem-0/bn/gamma" in excluded and "bbox_head/rtm_cls-0/bias" in excluded
    assert "stage1-1/attention/fc/bias" in excluded
    assert not any(p.endswith("kernel") for p in excluded)
    optimizer = rtmdet_optimizer(model, epochs=10, steps_per_epoch=5, batch_size=8)
    optimizer.build(model.trainable_variables)
    kernel = next(v for v in model.trainable_variables if v.path == "stem-0/conv/kernel")
    gamma = next(v for v in model.trainable_variables if v.path == "stem-0/bn/gamma")
    assert optimizer._use_weight_decay(kernel) and not optimizer._use_weight_decay(gamma)
    assert optimizer.weight_decay == pytest.approx(0.05)


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="cosine_start_step"):
        FlatCosineSchedule(0.004, total_steps=10, cosine_start_step=10)
    model = tiny_model()
    with pytest.raises(ValueError, match="must be positive"):
        rtmdet_optimizer(model, epochs=0, steps_per_epoch=5, batch_size=8)
