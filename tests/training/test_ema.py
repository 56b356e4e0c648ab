"""ExpMomentumEMA against a numpy reimplementation of mmengine's, on a tiny Dense + BatchNorm model."""

import math

import keras
import numpy as np
import pytest

from keras_rtmdet.training.ema import ExpMomentumEMA
from keras_rtmdet.training.ema import exp_momentum
from tests.test_case import to_numpy

BATCH, STEPS_PER_EPOCH = 4, 3
STRONG = dict(momentum=0.1, gamma=2.0)  # the EMA visibly lags the raw weights within a few steps


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, use_bias=False),  # a bias before BN gets no gradient
            keras.layers.BatchNormalization(momentum=0.5, name="bn"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def make_data(n=BATCH * STEPS_PER_EPOCH, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def fit(model, callbacks, epochs=1, initial_epoch=0, **kwargs):
    x, y = make_data()
    return model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,
        callbacks=callbacks,
        verbose=0,
        **kwargs,
    )


def reference_ema(raw_steps, momentum=0.0002, gamma=2000, interval=1):
    """mmengine `BaseAveragedModel.update_parameters` + `ExpMomentumEMA.avg_func`, in float64."""
    avg, history = None, []
    for steps, src in enumerate(raw_steps):
        if steps == 0:
            avg = [np.array(s, np.float64) for s in src]
        elif steps % interval == 0:
            m = (1 - momentum) * math.exp(-float(1 + steps) / gamma) + momentum
            avg = [a * (1 - m) + np.asarray(s, np.float64) * m for a, s in zip(avg, src)]
        history.append([a.copy() for a in avg])
    return history


class Recorder(keras.callbacks.Callback):
    """Model weights (through the syncing `self.model`) and EMA values after each batch."""

    def __init__(self, ema):
        super().__init__()
        self.ema, self.raw, self.avg, self.at_test_begin = ema, [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.model  # noqa: B018  (on JAX: writes the trainer state back into the variables)
        self.raw.append([to_numpy(v.value) for v in self.ema.source_variables])
        self.avg.append([to_numpy(v.value) for v in self.ema.ema_variables])

    def on_test_begin(self, logs=None):
        self.at_test_begin.append([to_numpy(v.value) for v in self.model.weights])


def weights(variables):
    return [to_numpy(v.value) for v in variables]


def assert_all_close(actual, expected, rtol=1e-5, atol=1e-6):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def test_momentum_formula():
    assert exp_momentum(1) == pytest.approx(0.9998 * math.exp(-2 / 2000) + 0.0002, rel=1e-12)
    assert exp_momentum(1999) == pytest.approx(0.9998 * math.exp(-1) + 0.0002, rel=1e-12)
    assert exp_momentum(10**6) == pytest.approx(0.0002, rel=1e-6)
    with pytest.raises(ValueError):
        ExpMomentumEMA(momentum=0.0)
    with pytest.raises(ValueError):
        ExpMomentumEMA(update_every=0)


@pytest.mark.parametrize(
    "params, ema_first",
    [(dict(), True), (dict(**STRONG, update_every=2), False)],
    ids=["reference-ema-reads-trainer-state", "strong-interval2-after-sync"],
)
def test_ema_follows_mmengine_step_by_step(params, ema_first):
    model = make_model()
    ema = ExpMomentumEMA(apply_on_train_end=False, **params)
    recorder = Recorder(ema)
    fit(model, [ema, recorder] if ema_first else [recorder, ema], epochs=2)
    steps = 2 * STEPS_PER_EPOCH
    assert ema.steps == steps and len(recorder.raw) == steps
    keys = ema.ema_state().keys()
    assert sum(k.endswith(("bn/moving_mean", "bn/moving_variance")) for k in keys) == 2
    assert len(ema.source_variables) == len(model.weights)  # every weight of this model is float

    formula = {k: v for k, v in params.items() if k != "update_every"}
    want = reference_ema(recorder.raw, interval=params.get("update_every", 1), **formula)
    if ema_first:  # the recorder sees the EMA right after each update, which read the live weights itself
        for got, expected in zip(recorder.avg, want, strict=True):
            assert_all_close(got, expected)
    assert_all_close(weights(ema.ema_variables), want[-1])

    # The raw weights (BN statistics included) move every step, so the comparison above is not vacuous.
    for a, b in zip(recorder.raw[0], recorder.raw[-1]):
        assert np.abs(a - b).max() > 1e-4
    if params:  # the strong EMA lags the raw weights, BN moving statistics included
        paths = [v.path.split("/", 1)[1] for v in ema.source_variables]
        gap = {p: np.abs(e - r).max() for p, e, r in zip(paths, want[-1], recorder.raw[-1])}
        assert gap["bn/moving_mean"] > 1e-3 and gap["bn/moving_variance"] > 1e-3
        assert min(gap.values()) > 1e-4


def test_ema_does_not_change_what_fit_trains():
    plain, averaged = make_model(), make_model()
    fit(plain, [], epochs=2)
    fit(averaged, [ExpMomentumEMA(apply_on_train_end=False, **STRONG)], epochs=2)
    assert_all_close(
        weights(averaged.variables + averaged.optimizer.variables),
        weights(plain.variables + plain.optimizer.variables),
        rtol=1e-6,
        atol=1e-7,
    )


def test_validation_uses_ema_weights_and_swap_restores_raw_exactly():
    model = make_model()
    ema = ExpMomentumEMA(apply_on_train_end=False, **STRONG)
    recorder = Recorder(ema)
    x, y = make_data(8, seed=2)
    history = fit(model, [ema, recorder], epochs=2, validation_data=(x, y))

    # fit's validation ran on the EMA weights, and training went on from (and ended with) the raw ones.
    assert len(recorder.at_test_begin) == 2
    assert_all_close(recorder.at_test_begin[-1], weights(ema.ema_variables), rtol=0, atol=0)
    raw = weights(model.weights)
    for a, b in zip(raw, recorder.raw[-1], strict=True):
        np.testing.assert_array_equal(a, b)

    with ema.swap():
        assert ema.swapped
        assert_all_close(weights(model.weights), weights(ema.ema_variables), rtol=0, atol=0)
        ema_loss = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    assert not ema.swapped
    for a, b in zip(weights(model.weights), raw, strict=True):
        np.testing.assert_array_equal(a, b)
    raw_loss = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(ema_loss, rel=1e-5)
    assert abs(raw_loss - ema_loss) > 1e-4


def test_ema_weights_are_left_in_the_model_at_train_end():
    model = make_model()
    ema = ExpMomentumEMA(**STRONG)
    fit(model, [ema])
    assert_all_close(weights(model.weights), weights(ema.ema_variables), rtol=0, atol=0)


def test_save_load_round_trip_and_resume(tmp_path):
    model = make_model()
    initial = model.get_weights()
    full = ExpMomentumEMA(apply_on_train_end=False, **STRONG)
    fit(model, [full], epochs=2)

    resumed = make_model(seed=5)
    resumed.set_weights(initial)
    first = ExpMomentumEMA(apply_on_train_end=False, **STRONG)
    fit(resumed, [first], epochs=1)
    path = tmp_path / "ema.npz"
    first.save(path)
    saved = first.ema_state()
    assert int(saved["steps"]) == STEPS_PER_EPOCH == int(to_numpy(first.steps_variable.value))

    second = ExpMomentumEMA(apply_on_train_end=False, **STRONG)
    second.load(path)  # no model yet: applied at on_train_begin
    with np.load(path) as data:
        assert sorted(data.files) == sorted(saved)
        for key in saved:
            np.testing.assert_array_equal(data[key], saved[key])
    fit(resumed, [second], epochs=2, initial_epoch=1)
    assert second.steps == full.steps == 2 * STEPS_PER_EPOCH
    assert_all_close(weights(second.ema_variables), weights(full.ema_variables), rtol=1e-6, atol=1e-7)

    third = ExpMomentumEMA()
    third.set_model(resumed)
    third.load_ema_state(saved)  # built model: loaded at once
    for key, value in third.ema_state().items():
        np.testing.assert_array_equal(value, saved[key])
    with pytest.raises(ValueError, match="missing"):
        third.load_ema_state({k: v for k, v in saved.items() if "moving_mean" not in k})


def test_backup_path_resumes_an_interrupted_fit_with_backup_and_restore(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:
                raise RuntimeError("interrupted")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    model = make_model()
    initial = model.get_weights()
    full = ExpMomentumEMA(**STRONG)
    fit(model, [full], epochs=2)

    model = make_model(seed=5)
    model.set_weights(initial)
    path = tmp_path / "ema.npz"
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model, [backup, ExpMomentumEMA(backup_path=path, **STRONG), Interrupt()], epochs=2)
    assert path.exists()
    ema = ExpMomentumEMA(backup_path=path, **STRONG)
    fit(model, [backup, ema], epochs=2)
    assert not path.exists()
    assert ema.steps == full.steps == 2 * STEPS_PER_EPOCH
    assert_all_close(weights(ema.ema_variables), weights(full.ema_variables), rtol=1e-6, atol=1e-7)
    assert_all_close(weights(model.weights), weights(full.ema_variables), rtol=1e-6, atol=1e-7)


def test_half_precision_weights_are_averaged_in_float32():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, dtype="bfloat16")])
    ema = ExpMomentumEMA(**STRONG)
    ema.build(model)  # outside fit: manual `update()` calls
    assert [v.dtype for v in ema.ema_variables] == ["float32", "float32"]
    kernel = model.layers[0].kernel
    raw = []
    for step in range(3):
        kernel.assign(np.full(kernel.shape, step + 1.5, "float32"))
        raw.append(weights(model.weights))
        ema.update()
    assert_all_close(weights(ema.ema_variables), reference_ema(raw, **STRONG)[-1])
    with ema.swap():
        assert kernel.dtype == "bfloat16"
        np.testing.assert_allclose(to_numpy(kernel.value).astype("float32"), weights(ema.ema_variables)[0], rtol=1e-2)
    np.testing.assert_array_equal(to_numpy(kernel.value), raw[-1][0])


def test_fused_update_equals_the_keras_ops_update():
    from keras_rtmdet.training.ema_update import make_ema_update

    rng = np.random.default_rng(0)
    source = [keras.Variable(rng.normal(size=s).astype("float32")) for s in [(3, 4), (4,), (2, 2, 5)]]
    fused = [keras.Variable(np.ones(v.shape, "float32")) for v in source]
    plain = [keras.Variable(np.ones(v.shape, "float32")) for v in source]
    for step in range(3):
        for v in source:
            v.assign(v.value + 1.0)
        make_ema_update(fused, source)([v.value for v in source], 0.9, 0.1)
        make_ema_update(plain, source, method="keras")([v.value for v in source], 0.9, 0.1)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6)
