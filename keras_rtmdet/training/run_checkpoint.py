"""The state of a training run on disk, for an exact resume from an epoch end or from an interrupted step.

`run_dir/backup/` holds the model's weights with the optimizer's slots and
step count (`model.save_weights`), the EMA (`ema.npz`), the running means of
the epoch's losses (`metrics.npz`, for a stop inside an epoch) and
`state.json`: the next epoch and step to run and the run's seed. It is
written at every epoch end and when a run stops early, and replaced whole
(written beside, then renamed), so a crash while writing keeps the previous one.
"""

import json
import os
import shutil

import keras
import numpy as np

BACKUP_DIR = "backup"
WEIGHTS_FILE = "latest.weights.h5"
EMA_FILE = "ema.npz"
METRICS_FILE = "metrics.npz"
STATE_FILE = "state.json"


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the run at every epoch end; `restore` / `save` for the rest.

    Args:
        run_dir: the run's folder (the checkpoint is `run_dir/backup/`).
        steps_per_epoch: steps of every epoch (the position inside an epoch is
            counted from the optimizer's step count).
        seed: the run's seed, stored for the resume.
        ema: the run's `ExpMomentumEMA`, saved and restored with the weights, or None.
        write: False for a data-parallel process other than the chief: it
            restores from the chief's checkpoint but never writes one.
    """

    def __init__(self, run_dir, steps_per_epoch, seed, ema=None, write=True):
        super().__init__()
        self.seed = seed
        self.folder = os.path.join(os.fspath(run_dir), BACKUP_DIR)
        self.steps_per_epoch = int(steps_per_epoch)
        self.ema = ema
        self.write = write
        self._metrics = None

    def exists(self):
        return os.path.isfile(os.path.join(self.folder, STATE_FILE))

    def read_state(self):
        """`state.json` as a dict (`epoch`, `step`, `seed`), or None without a checkpoint."""
        if not self.exists():
            return None
        path = os.path.join(self.folder, STATE_FILE)
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(f"Cannot read the run checkpoint {path}: {error}.") from error

    def restore(self, model):
        """Load the checkpoint into `model` (and the EMA); return `state.json`'s dict, or None without one.

        The optimizer must be built (`DenseDetector.compile` builds it). The
        epoch's loss means are restored when that epoch begins (`on_epoch_begin`).
        """
        state = self.read_state()
        if state is None:
            return None
        weights = os.path.join(self.folder, WEIGHTS_FILE)
        try:
            model.load_weights(weights)
        except (OSError, ValueError) as error:
            raise ValueError(f"Cannot resume from {weights}: {error}") from error
        if self.ema is not None:
            self.ema.load(os.path.join(self.folder, EMA_FILE))
        metrics = os.path.join(self.folder, METRICS_FILE)
        if state["step"] and os.path.isfile(metrics):
            with np.load(metrics) as data:
                self._metrics = (state["epoch"], [data[f"m{i}"] for i in range(len(data.files))])
        return state

    def position(self, model):
        """(epoch, step) of the next step, from the optimizer's step count."""
        done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        return divmod(done, self.steps_per_epoch)

    def save(self, model):
        """Write the checkpoint of `model` as it is now (a chief's call; others return at once)."""
        if not self.write:
            return
        epoch, step = self.position(model)
        partial = self.folder + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        model.save_weights(os.path.join(partial, WEIGHTS_FILE))
        if self.ema is not None and self.ema.built:
            self.ema.save(os.path.join(partial, EMA_FILE))
        if step:
            values = {f"m{i}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(model.metrics_variables)}
            np.savez(os.path.join(partial, METRICS_FILE), **values)
        with open(os.path.join(partial, STATE_FILE), "w") as f:
            json.dump({"epoch": epoch, "step": step, "seed": self.seed}, f)
        stale = self.folder + ".old"
        shutil.rmtree(stale, ignore_errors=True)
        if os.path.isdir(self.folder):
            os.replace(self.folder, stale)
        os.replace(partial, self.folder)
        shutil.rmtree(stale, ignore_errors=True)

    def remove(self):
        """Delete the checkpoint (the run finished)."""
        if self.write:
            shutil.rmtree(self.folder, ignore_errors=True)

    def on_epoch_begin(self, epoch, logs=None):
        if self._metrics is not None and self._metrics[0] == epoch:
            for variable, value in zip(self.model.metrics_variables, self._metrics[1]):
                variable.assign(value)
        self._metrics = None

    def on_epoch_end(self, epoch, logs=None):
        self.save(self.model)
