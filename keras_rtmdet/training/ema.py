"""The reference's weight EMA: mmdet/mmengine `ExpMomentumEMA` driven by `EMAHook`, as a Keras callback."""

import contextlib
import math
import os

import keras
import numpy as np

from keras_rtmdet.training.ema_update import make_ema_update

STEPS_KEY = "steps"


def exp_momentum(steps, momentum=0.0002, gamma=2000):
    """The weight of the new value at update `steps` ≥ 1: `(1 − momentum)·exp(−(1 + steps)/gamma) + momentum`.

    `steps` is mmengine's counter *before* it is incremented, i.e. the number of updates already done. The first
    update (`steps == 0`) copies; the second uses `steps = 1`, so `m = 0.9998·exp(−2/2000) + 0.0002 ≈ 0.9990`;
    m decays towards `momentum` with time constant `gamma` updates (≈ 0.37 after 2000 updates, ≈ 0.0002 late on).
    """
    return (1.0 - momentum) * math.exp(-float(1 + steps) / gamma) + momentum


def _ema_dtype(dtype):
    # A 0.0002 step is below bf16/fp16 resolution: half-precision weights are averaged in float32.
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _copy(x, dtype):
    # A real copy: on JAX, `assign` keeps the array itself, and the trainer donates (deletes) its state arrays.
    return keras.ops.copy(keras.ops.cast(x, dtype))


class ExpMomentumEMA(keras.callbacks.Callback):
    """Exponential moving average of every float weight of the model, updated after each training batch.

    The reference (spec §4.3 "EMA") trains with mmengine's
    `EMAHook(ema_type='ExpMomentumEMA', momentum=0.0002, gamma=2000, interval=1, update_buffers=True)`.
    That hook keeps a counter `steps` (starting at 0) and, after every training iteration, calls
    `update_parameters`, which does::

        if steps == 0:                      avg = src                     (a plain copy)
        elif steps % interval == 0:         m = (1 - momentum) * exp(-(1 + steps) / gamma) + momentum
                                            avg = (1 - m) * avg + m * src
        steps += 1

    So `steps` in the formula is the number of updates done *before* this one: the first update copies, the second
    uses `exp(-2/gamma)`, the k-th (1-based, k ≥ 2) uses `exp(-k/gamma)`; the spec's "update number s ≥ 1" is
    this 0-based counter. This callback reproduces that exactly
    (`exp_momentum` is the formula), with `update_every` as mmengine's `interval`: the counter advances on every
    batch and batches whose counter is not a multiple of `update_every` leave the average unchanged.

    What is averaged: every floating-point variable of `model.weights`, trainable or not, so BatchNorm
    `moving_mean` / `moving_variance` are averaged as well (mmengine's `update_buffers=True`). Integer variables
    are skipped (like `num_batches_tracked`); optimizer, metric and seed-generator state are not model weights.
    Keras lists a shared variable once, so a weight shared by several layers (the head's shared convs) is
    averaged once per step, while mmengine's `state_dict()` walk averages it k times (an effective
    `1 − (1 − m)^k`, spec §4.3 [DERIVED]); this only matters for bit-faithful training. EMA copies of
    float16/bfloat16 weights are kept in float32.

    Use:

    * `model.fit(..., callbacks=[ExpMomentumEMA()])`. The EMA variables (non-trainable `keras.Variable`s held by
      the callback, not by the model: `ema_variables`, in the order of `source_variables`) are created in
      `on_train_begin` (or by `build` / `load`), initialised from the current weights. The counter is a Python
      int (`steps`), mirrored in the int32 variable `steps_variable` when that is read or the state is saved,
      so the update never waits on the device.
    * Validation inside `fit` runs on the EMA weights: `on_test_begin` swaps them into the model and
      `on_test_end` puts the raw weights back (bit-exact). Outside `fit`, use `with ema.swap(): model.evaluate(...)`.
    * At the end of `fit`, `apply_on_train_end=True` leaves the EMA weights in the model, so weights saved
      afterwards are the EMA (the reference's released `state_dict`). Set it to False to keep training the raw
      weights with a later `fit` (a further `fit` with `True` continues the EMA but trains from the EMA weights).
      To save EMA weights mid-training, `with ema.swap(): model.save_weights(path)`.
    * Resume: the EMA is state (counter + averages) that Keras checkpoints don't know about. `ema.save(path)`
      writes it as an `.npz` (keys: `"steps"` and each variable's `path`), `ema.load(path)` reads it; load it
      before `fit` on the resumed model (the variables are created on load if the model is built, else at
      `on_train_begin`). With `backup_path=...` the callback does this itself, mirroring
      `keras.callbacks.BackupAndRestore(save_freq="epoch")`: it saves at every `on_epoch_end`, loads the file in
      `on_train_begin` if it exists, and deletes it at a successful `on_train_end` when `delete_backup=True`.
      Put the file next to (not inside) BackupAndRestore's `backup_dir`, which that callback removes.

    Backends: on JAX, `fit` keeps the weights of the running epoch in its own functional state and writes them
    into the model's variables only at epoch end, or when a callback reads the public `Callback.model` property
    (which calls `model.jax_state_sync()`). The callback reads its model through that property before every
    read or write of the weights. A sync only points each variable at the array the last step produced (no
    device work, no copy, nothing waits for the device), and the next step gathers them again: host time of
    a few µs per model, optimizer and metric variable (≈ 6 ms a step for RTMDet-s's ≈ 950 on a 2-core CPU).
    The update itself is one jitted function on JAX, a `tf.function` on TensorFlow and `torch._foreach_*`
    in-place ops on PyTorch.

    With `steps_per_execution = k`, `on_train_batch_end` runs once per k optimizer steps, so the EMA (and its
    counter) advances once per k steps; keep `steps_per_execution=1` for the reference's schedule.

    Args:
        momentum: the final weight of the new value (mmengine `momentum`, 0.0002).
        gamma: the decay time constant of the extra momentum, in updates (2000).
        update_every: mmengine's `interval`: average only when the counter is a multiple of it.
        apply_on_train_end: leave the EMA weights in the model when `fit` ends.
        swap_on_test: evaluate on the EMA weights (`on_test_begin` / `on_test_end`).
        backup_path: optional `.npz` path for automatic save (each epoch end) / restore (train begin).
        delete_backup: remove `backup_path` when `fit` finishes normally.
    """

    def __init__(
        self,
        momentum=0.0002,
        gamma=2000,
        update_every=1,
        apply_on_train_end=True,
        swap_on_test=True,
        backup_path=None,
        delete_backup=True,
    ):
        super().__init__()
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"momentum must lie in (0, 1), got {momentum}.")
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}.")
        if int(update_every) != update_every or update_every < 1:
            raise ValueError(f"update_every must be a positive integer, got {update_every}.")
        self.momentum = float(momentum)
        self.gamma = float(gamma)
        self.update_every = int(update_every)
        self.apply_on_train_end = bool(apply_on_train_end)
        self.swap_on_test = bool(swap_on_test)
        self.backup_path = None if backup_path is None else os.fspath(backup_path)
        self.delete_backup = bool(delete_backup)
        self._steps = 0
        self._steps_variable = None
        self._steps_variable_value = None
        self._source = None  # the model's float weights
        self._average = None  # their EMA copies
        self._keys = None
        self._owner = None  # the model the variables were built for
        self._backup = None  # raw weights while swapped
        self._pending_state = None
        self._update_fn = None

    # ------------------------------------------------------------------ state

    def _synced_model(self):
        """The callback's model (else the one built for), its variables holding the weights of the latest step.

        On JAX, mid-epoch, the `Callback.model` property is what writes the trainer's state into the variables.
        """
        model = self.model
        return self._owner if model is None else model

    @property
    def built(self):
        return self._average is not None

    @property
    def steps(self):
        """Updates done so far (mmengine's `steps`)."""
        return self._steps

    @property
    def steps_variable(self):
        """The counter as a non-trainable int32 `keras.Variable` (brought up to date when read)."""
        if self._steps_variable is not None and self._steps_variable_value != self._steps:
            self._steps_variable.assign(self._steps)
            self._steps_variable_value = self._steps
        return self._steps_variable

    @property
    def ema_variables(self):
        return list(self._average or [])

    @property
    def source_variables(self):
        return list(self._source or [])

    @property
    def swapped(self):
        return self._backup is not None

    def current_momentum(self):
        """The weight the next averaging update gives the new value."""
        return exp_momentum(self._steps, self.momentum, self.gamma)

    def build(self, model=None):
        """Create the EMA variables for `model` (default: the callback's model), initialised from its weights."""
        model = self._synced_model() if model is None else model
        if model is None or not model.built:
            raise ValueError("ExpMomentumEMA.build needs a built model.")
        if self.model is None:
            self.set_model(model)
        if self._owner is model and self.built:
            return
        seen, source = set(), []
        for v in model.weights:
            if id(v) not in seen and keras.backend.is_float_dtype(v.dtype):
                seen.add(id(v))
                source.append(v)
        keys, used = [], {STEPS_KEY}
        for v in source:
            key, n = v.path, 1
            while key in used:
                key, n = f"{v.path}#{n}", n + 1
            used.add(key)
            keys.append(key)
        average = [
            keras.Variable(
                initializer=_copy(v.value, _ema_dtype(v.dtype)),
                dtype=_ema_dtype(v.dtype),
                trainable=False,
                autocast=False,
                name="ema_" + v.path.replace("/", "_"),
            )
            for v in source
        ]
        self._source, self._average, self._keys, self._owner = source, average, keys, model
        self._steps = 0
        self._steps_variable = keras.Variable(0, dtype="int32", trainable=False, name="ema_steps")
        self._steps_variable_value = 0
        self._backup = None
        self._update_fn = None

    def ema_state(self):
        """`{"steps": int64 array, <variable path>: numpy array, ...}`, the EMA state as numpy arrays."""
        if not self.built:
            if self._pending_state is not None:
                return dict(self._pending_state)
            raise ValueError("The EMA has no state yet: build it (or fit) first.")
        self.steps_variable  # noqa: B018 (syncs the counter variable)
        state = {STEPS_KEY: np.asarray(self._steps, dtype=np.int64)}
        for key, v in zip(self._keys, self._average):
            state[key] = keras.ops.convert_to_numpy(v.value)
        return state

    def load_ema_state(self, state):
        """Restore `ema_state()` output (or an opened `.npz`). Keys and shapes must match exactly.

        If the model is not built yet, the state is kept and applied in `on_train_begin`.
        """
        state = {k: np.asarray(state[k]) for k in state}
        if STEPS_KEY not in state:
            raise ValueError(f"EMA state has no {STEPS_KEY!r} entry.")
        model = self._synced_model()
        if not self.built or self._owner is not model:
            if model is None or not model.built:
                self._pending_state = state
                return
            self.build(model)
        expected = set(self._keys) | {STEPS_KEY}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"EMA state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}.")
        for key, v in zip(self._keys, self._average):
            if tuple(state[key].shape) != tuple(v.shape):
                raise ValueError(f"EMA state {key!r} has shape {state[key].shape}, the model {tuple(v.shape)}.")
        for key, v in zip(self._keys, self._average):
            v.assign(state[key].astype(v.dtype))
        self._steps = int(state[STEPS_KEY])
        self._pending_state = None

    def save(self, path):
        """Write `ema_state()` to `path` (an `.npz`), atomically."""
        path = os.fspath(path)
        state = self.ema_state()
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **state)
        os.replace(tmp, path)

    def load(self, path):
        """Read a file written by `save`."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            self.load_ema_state({k: data[k] for k in data.files})

    # ------------------------------------------------------------------ update

    def update(self):
        """One EMA update from the model's current weights (what `on_train_batch_end` does)."""
        if not self.built:
            self.build()
        if self._steps == 0:
            for a, s in zip(self._average, self._source_values()):
                a.assign(_copy(s, a.dtype))
        elif self._steps % self.update_every == 0:
            m = exp_momentum(self._steps, self.momentum, self.gamma)
            self._average_fn()(self._source_values(), 1.0 - m, m)
        self._steps += 1  # a Python int: assigning a device variable every step could stall the GPU stream

    def _source_values(self):
        self._synced_model()
        return [v.value for v in self._source]

    def _average_fn(self):
        """`fn(source_values, keep, m)`: `avg ← keep·avg + m·src` for every EMA variable."""
        if self._update_fn is None:
            self._update_fn = make_ema_update(self._average, self._source)
        return self._update_fn

    # ------------------------------------------------------------------ swap

    def swap_in(self):
        """Put the EMA weights into the model, keeping a copy of the raw ones (no-op if already swapped)."""
        if self._backup is not None:
            return
        if not self.built:
            raise ValueError("The EMA has no state yet: build it (or fit) first.")
        self._backup = [keras.ops.copy(value) for value in self._source_values()]
        self._write_average_into_model()

    def swap_out(self):
        """Put the raw weights back, exactly as they were before `swap_in` (no-op if not swapped)."""
        if self._backup is None:
            return
        self._synced_model()  # else a later sync would overwrite these writes with the trainer's state
        for v, b in zip(self._source, self._backup):
            v.assign(b)
        self._backup = None

    @contextlib.contextmanager
    def swap(self):
        """`with ema.swap(): model.evaluate(...)`: the EMA weights inside, the raw weights again after."""
        already = self.swapped
        self.swap_in()
        try:
            yield self
        finally:
            if not already:
                self.swap_out()

    def apply_to_model(self):
        """Write the EMA weights into the model for good (the raw weights are dropped)."""
        if self._backup is not None:
            self._backup = None  # the model already holds the EMA weights
            return
        self._write_average_into_model()

    def _write_average_into_model(self):
        self._synced_model()  # else a later sync would overwrite these writes with the trainer's state
        for v, a in zip(self._source, self._average):
            v.assign(_copy(a.value, v.dtype))

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        model = self.model
        if not self.built or self._owner is not model:
            self.build(model)
        if self._pending_state is not None:
            self.load_ema_state(self._pending_state)
        if self.backup_path is not None and os.path.exists(self.backup_path):
            self.load(self.backup_path)
        self.swap_out()

    def on_train_batch_end(self, batch, logs=None):
        self.update()

    def on_epoch_end(self, epoch, logs=None):
        if self.backup_path is not None:
            self.save(self.backup_path)

    def on_test_begin(self, logs=None):
        if self.swap_on_test and self.built:
            self.swap_in()

    def on_test_end(self, logs=None):
        if self.swap_on_test:
            self.swap_out()

    def on_train_end(self, logs=None):
        if self.apply_on_train_end:
            self.apply_to_model()
        else:
            self.swap_out()
        if self.backup_path is not None and self.delete_backup and os.path.exists(self.backup_path):
            os.remove(self.backup_path)
