"""`fit` runs RTMDet's training path on every backend."""

import keras
import numpy as np
import pytest

from keras_rtmdet.models.non_finite_loss import NonFiniteLossError
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from tests.test_case import assign_values
from tests.test_case import one_batch_forever
from tests.test_case import run_fit_step_test
from tests.test_case import shapes_batch
from tests.test_case import tiny_model
from tests.test_case import to_numpy
from tests.test_case import variable_values

EPOCHS = 30


@pytest.fixture(scope="module")
def compiled_det():
    """A tiny RTMDet compiled with the recipe's optimizer, and its variables' start values.

    The tests that `fit` it set every variable (the optimizer's included) back to the start first:
    a fresh model each would trace and compile the very same train step again.
    """
    model = tiny_model()
    model.compile(optimizer=rtmdet_optimizer(model, EPOCHS, 1, 4, base_learning_rate=0.004, base_batch_size=4))
    variables = model.variables + model.optimizer.variables
    start = variable_values(variables)

    def fresh():
        assign_values(variables, start)
        return model

    return fresh


def test_fit_trains_and_reports_the_loss_terms(compiled_det):
    images, targets = shapes_batch()
    model = compiled_det()
    before = to_numpy(model.head.rtm_reg[0].kernel).copy()
    history = model.fit(one_batch_forever(images, targets), steps_per_epoch=1, epochs=EPOCHS, verbose=0).history
    assert {"loss", "loss_cls", "loss_bbox"} <= set(history)
    losses = np.array(history["loss"])
    assert np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses, np.array(history["loss_cls"]) + np.array(history["loss_bbox"]), rtol=1e-4)
    # A test of the step's plumbing, not of convergence: with the soft-label
    # normalisation the loss first rises from ~0 as boxes start to overlap
    # their GTs, and 30 steps do not show where it goes from there.
    assert losses.max() > 10 * losses[0]
    assert not np.allclose(to_numpy(model.head.rtm_reg[0].kernel), before)


def test_fit_step(compiled_det):
    """RTMDet's task test (models/test_rtmdet_task.py) takes its `fit` step here, on the compiled model."""
    images, targets = shapes_batch()
    run_fit_step_test(compiled_det(), one_batch_forever(images, targets), steps_per_epoch=1)


def test_batch_without_objects_trains_without_nan(compiled_det):
    images, _ = shapes_batch()
    empty = {"boxes": np.full((4, 3, 4), -1, np.float32), "labels": np.full((4, 3), -1, np.int32)}
    model = compiled_det()
    history = model.fit(one_batch_forever(images, empty), steps_per_epoch=1, epochs=2, verbose=0).history
    assert history["loss_bbox"] == [0.0, 0.0]
    assert np.all(np.isfinite(history["loss_cls"]))
    assert all(np.all(np.isfinite(to_numpy(v))) for v in model.weights)


def test_box_formats_and_degenerate_boxes():
    images, targets = shapes_batch(2)
    model = tiny_model()
    y_pred = model(images)
    xyxy = model.compute_loss(images, targets, y_pred)
    b = targets["boxes"]
    xywh = np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], -1)
    model_xywh = tiny_model(bounding_box_format="xywh")
    model_xywh.set_weights(model.get_weights())
    np.testing.assert_allclose(
        to_numpy(model_xywh.compute_loss(images, {"boxes": xywh, "labels": targets["labels"]}, y_pred)),
        to_numpy(xyxy),
        rtol=1e-5,
    )
    degenerate = {"boxes": b.copy(), "labels": targets["labels"].copy()}
    degenerate["boxes"][:, 2] = [5, 5, 5, 5]
    degenerate["labels"][:, 2] = 1
    np.testing.assert_allclose(to_numpy(model.compute_loss(images, degenerate, y_pred)), to_numpy(xyxy), rtol=1e-5)


def test_bad_targets_are_rejected_with_a_reason():
    images, targets = shapes_batch(2)
    model = tiny_model()
    y_pred = model(images)
    with pytest.raises(ValueError, match=r"lack \['labels'\]"):
        model.compute_loss(images, {"boxes": targets["boxes"]}, y_pred)
    with pytest.raises(ValueError, match=r"must be \(batch, N, 4\)"):
        model.compute_loss(images, {"boxes": targets["boxes"][..., :3], "labels": targets["labels"]}, y_pred)
    with pytest.raises(ValueError, match="must be a dict"):
        model.compute_loss(images, targets["boxes"], y_pred)
    with pytest.warns(UserWarning, match="classes"):
        model.compute_loss(images, {"boxes": targets["boxes"], "classes": targets["labels"]}, y_pred)


def with_target(targets, key, image, instance, column, value):
    bad = {k: np.array(v, copy=True) for k, v in targets.items()}
    if column is None:
        bad[key][image, instance] = value
    else:
        bad[key][image, instance, column] = value
    return bad


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda t: with_target(t, "boxes", 3, 0, 2, np.inf), ["batch 1, image 1", "instance 0", "non-finite"]),
        (lambda t: with_target(t, "boxes", 0, 1, 0, np.nan), ["batch 0, image 0", "instance 1", "non-finite"]),
        (lambda t: with_target(t, "labels", 2, 0, None, 3), ["batch 1, image 0", "label 3", "[0, 3)"]),
        (lambda t: with_target(t, "labels", 1, 0, None, -2), ["batch 0, image 1", "label -2"]),
        (lambda t: dict(t, boxes=np.asarray(t["boxes"]) / 64.0), ["batch 0, image 0", "normalised"]),
        (lambda t: with_target(t, "boxes", 1, 0, None, [500, 500, 540, 540]), ["image 1", "far outside"]),
    ],
)
def test_fit_names_the_bad_target_before_any_step(compiled_det, change, words):
    images, targets = shapes_batch()
    model = compiled_det()
    before = variable_values(model.variables + model.optimizer.variables)
    with pytest.raises(ValueError) as error:
        model.fit(images, change(targets), batch_size=2, epochs=1, verbose=0)
    for word in words:
        assert word in str(error.value)
    after = variable_values(model.variables + model.optimizer.variables)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


class RaiseAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            raise RuntimeError("callback failed")

    def on_predict_batch_end(self, batch, logs=None):
        raise RuntimeError("callback failed")


def test_a_non_finite_loss_stops_fit_and_the_model_stays_usable(compiled_det):
    """The loss of a dataset's inf box (a dataset's targets are not checked on the host) stops `fit` at once.

    After that, and after exceptions inside `fit` and `predict`, the model still predicts and trains
    (on JAX, Keras leaves every variable empty after an exception in its loops).
    """
    images, targets = shapes_batch()
    model = compiled_det()
    bad = with_target(targets, "boxes", 1, 0, 2, np.inf)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1 .*loss_bbox=nan"):
        model.fit(one_batch_forever(images, bad), steps_per_epoch=1, epochs=2, verbose=0)
    model = compiled_det()
    with pytest.raises(RuntimeError, match="callback failed"):
        model.fit(one_batch_forever(images, targets), steps_per_epoch=3, epochs=1, verbose=0, callbacks=[RaiseAt()])
    with pytest.raises(RuntimeError, match="callback failed"):
        model.predict(images.astype("uint8"), batch_size=2, verbose=0, callbacks=[RaiseAt()])
    assert all(v.value is not None for v in model.variables)
    assert model.predict(images.astype("uint8"), verbose=0)["boxes"].shape[0] == len(images)
    history = model.fit(one_batch_forever(images, targets), steps_per_epoch=1, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
