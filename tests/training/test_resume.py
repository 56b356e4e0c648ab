"""An RTMDet `fit` killed midway resumes where it stopped: weights, optimizer, schedule position and EMA."""

import numpy as np
import pytest

from keras_rtmdet.training.ema import ExpMomentumEMA
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from keras_rtmdet.training.resumable import resumable_training_callbacks
from tests.test_case import AtStep
from tests.test_case import assign_values
from tests.test_case import shapes_batch
from tests.test_case import tiny_model
from tests.test_case import to_numpy
from tests.test_case import variable_values

EPOCHS, BATCH, NUM_IMAGES = 3, 2, 4
STEPS_PER_EPOCH = NUM_IMAGES // BATCH
EMA = dict(momentum=0.05, gamma=4.0)  # fast enough that a lost or repeated EMA step shows


def kill(model):
    raise KeyboardInterrupt("killed")


def compiled_model():
    model = tiny_model()
    # Warm-up (capped at a tenth of the run = 1 step here), flat, then cosine: every step sees another rate.
    model.compile(
        optimizer=rtmdet_optimizer(model, EPOCHS, STEPS_PER_EPOCH, BATCH, base_learning_rate=0.004, base_batch_size=4)
    )
    return model


def run(model, callbacks):
    images, targets = shapes_batch(NUM_IMAGES)
    return model.fit(images, targets, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=callbacks)


def variables(model):
    return model.variables + model.optimizer.variables


def state(model, ema):
    return tuple(variable_values(group) for group in (model.weights, model.optimizer.variables, ema.ema_variables))


def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    model = compiled_model()
    start = variable_values(variables(model))
    ema = ExpMomentumEMA(**EMA)
    full = run(model, [ema]).history
    expected = state(model, ema)
    assert int(to_numpy(model.optimizer.iterations)) == EPOCHS * STEPS_PER_EPOCH

    # The killed run starts from the same fresh state. It reuses this model and its compiled
    # train step (a fresh model would trace and compile the very same step again) with every
    # variable, the optimizer's slots and iteration count included, set back to its start.
    assign_values(variables(model), start)
    assert int(to_numpy(model.optimizer.iterations)) == 0
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(model, resumable_training_callbacks(run_dir, **EMA) + [AtStep(1, 1, kill)])
    assert sorted(p.name for p in run_dir.iterdir()) == ["backup", "ema_backup.npz"]

    # The resumed run starts from the fresh state again, with new callbacks (a new EMA): the state it
    # resumes with can only come from the files in run_dir. (A fresh model would only compile the
    # same train step once more.)
    assign_values(variables(model), start)
    callbacks = resumable_training_callbacks(run_dir, **EMA)
    ema = callbacks[-1]
    resumed = run(model, callbacks).history

    assert ema.steps == EPOCHS * STEPS_PER_EPOCH
    assert int(to_numpy(model.optimizer.iterations)) == EPOCHS * STEPS_PER_EPOCH
    # Resumed from the end of epoch 0: epochs 1 and 2 ran again and logged the same losses.
    np.testing.assert_allclose(resumed["loss"], full["loss"][1:], rtol=1e-4)
    names = ["model weights", "optimizer state", "EMA"]
    for name, got, want in zip(names, state(model, ema), expected, strict=True):
        assert len(got) == len(want), name
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)
    assert list(run_dir.iterdir()) == []
