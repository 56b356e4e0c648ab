"""`train_rtmdet` stopped (a NaN loss, Ctrl-C inside an epoch) and resumed ends exactly where the uninterrupted run does."""

import csv
import json
import os
import signal

import keras
import numpy as np
import pytest

from keras_rtmdet.data.synthetic import SyntheticShapesSource
from keras_rtmdet.models.non_finite_loss import NonFiniteLossError
from keras_rtmdet.training.stop_conditions import TrainingInterrupted
from keras_rtmdet.training.train_recipe import train_rtmdet
from tests.test_case import AtStep
from tests.test_case import SIZE
from tests.test_case import tiny_model
from tests.test_case import variable_values

# 3 epochs of 3 steps, the last in stage 2: the NaN (epoch 2, step 2) goes back to the end of epoch 1;
# Ctrl-C (epoch 2, after step 2) leaves one step of a stage-1 epoch and a stage-2 epoch to the last resume.
EPOCHS, BATCH, IMAGES = 3, 2, 6
INTERRUPT_AT = (1, 1)  # (epoch, batch), 0-based: Ctrl-C arrives while this step runs


def press_ctrl_c(model):
    os.kill(os.getpid(), signal.SIGINT)


def shapes(images, seed):
    return SyntheticShapesSource(images, image_size=(SIZE, SIZE), num_classes=3, seed=seed)


def train(run_dir, callbacks=(), model=None, **kwargs):
    model = model or tiny_model()
    train_rtmdet(
        model, shapes(IMAGES, 0), run_dir, epochs=EPOCHS, batch_size=BATCH, model_size="tiny", image_size=SIZE,
        stage2_epochs=1, warmup_steps=1, seed=3, verbose=0, extra_callbacks=callbacks, **kwargs,
    )
    return model


def scramble(variables):
    rng = np.random.default_rng(0)
    for variable in variables:
        value = keras.ops.convert_to_numpy(variable.value)
        variable.assign(rng.normal(size=value.shape).astype(value.dtype) if value.dtype.kind == "f" else value + 7)


def read_log(run_dir):
    with open(os.path.join(run_dir, "train_log.csv"), newline="") as f:
        return list(csv.reader(f))


def poison_the_stem(model):
    """A NaN kernel at the network's input: the next step's loss is NaN."""
    kernel = model.backbone.weights[0]
    kernel.assign(keras.ops.full(kernel.shape, float("nan")))


def test_run_stopped_by_a_nan_then_by_ctrl_c_resumes_to_the_uninterrupted_run(tmp_path):
    """One run's life: a NaN loss (back to the last epoch end), then Ctrl-C inside an epoch, then the end.

    Each stop is resumed on the same model, as a notebook would (its compiled train step is reused, so
    the test compiles twice, not four times); before the last resume every variable, the optimizer's
    included, is scrambled, so what it resumes with can only come from run_dir.
    """
    whole = train(tmp_path / "whole")

    run_dir = tmp_path / "stopped"
    model = tiny_model()
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 2 .*loss_cls=nan"):
        train(run_dir, [AtStep(1, 0, poison_the_stem, when="end")], model=model)
    state = json.loads((run_dir / "backup" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (1, 0)  # the checkpoint of the last epoch end, kept
    assert len(read_log(run_dir)) == 2  # no epoch-end callback saw the NaN step (evaluation, presets, log)
    assert all(np.all(np.isfinite(value)) for value in variable_values(model.weights))  # back at that epoch end

    with pytest.raises(TrainingInterrupted) as stop:
        train(run_dir, [AtStep(*INTERRUPT_AT, press_ctrl_c)], model=model)
    assert (stop.value.epoch, stop.value.step) == INTERRUPT_AT  # the step under way was finished
    state = json.loads((run_dir / "backup" / "state.json").read_text())
    assert state == {"epoch": INTERRUPT_AT[0], "step": INTERRUPT_AT[1] + 1, "seed": 3}
    assert len(read_log(run_dir)) == 1 + INTERRUPT_AT[0]  # header and the finished epoch

    scramble(model.variables + model.optimizer.variables)
    resumed = train(run_dir, model=model)
    # Same data order, same augmentation draws, same optimizer and EMA state: the same numbers, bit for bit.
    for name, a, b in zip([v.path for v in whole.weights], variable_values(whole.weights), variable_values(resumed.weights)):
        np.testing.assert_array_equal(a, b, err_msg=name)
    whole_log, resumed_log = read_log(tmp_path / "whole"), read_log(run_dir)
    assert whole_log[0] == ["epoch", "loss", "loss_cls", "loss_bbox", "learning_rate"]
    assert resumed_log == whole_log and len(whole_log) == 1 + EPOCHS
    assert all(cell != "" for row in whole_log for cell in row)
    assert not (run_dir / "backup").exists()
