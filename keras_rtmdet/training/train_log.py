"""`train_log.csv`: one row per epoch, always the same columns, across resumes."""

import csv
import math
import os

import keras

from keras_rtmdet.utils.scalars import as_float

TRAIN_LOG = "train_log.csv"


class TrainLog(keras.callbacks.Callback):
    """Appends each epoch's mean losses and the learning rate to `path`.

    The columns are fixed up front: `epoch` (1-based), `loss`, the model's
    `loss_names` and `learning_rate` (the schedule's rate at the epoch's end), so
    rows written by a resumed run line up with the earlier ones and no column
    is ever empty. Validation metrics go to `results.csv`. Rows of epochs at
    or after the one `fit` starts from are dropped when it starts: a resumed
    run logs them again.
    """

    def __init__(self, path, loss_names):
        super().__init__()
        self.path = os.fspath(path)
        self.columns = ["epoch", "loss", *loss_names, "learning_rate"]

    def on_train_begin(self, logs=None):
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch:
            return
        self._first_epoch = False
        rows = self._read_rows()
        kept = [row for row in rows if int(row["epoch"]) <= epoch]
        if len(kept) != len(rows) or not os.path.isfile(self.path):
            self._write(kept)

    def _read_rows(self):
        if not os.path.isfile(self.path):
            return []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != self.columns:
                raise ValueError(
                    f"{self.path} has the columns {reader.fieldnames}, not {self.columns} of this model: it belongs "
                    "to another run."
                )
            return list(reader)

    def _write(self, rows):
        partial = self.path + ".partial"
        with open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(partial, self.path)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "learning_rate": _learning_rate(self.model)}
        for column in self.columns[1:-1]:
            value = as_float(logs.get(column))
            row[column] = "" if value is None or not math.isfinite(value) else f"{value:.6g}"
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)


def _learning_rate(model):
    optimizer = model.optimizer
    rate = optimizer.learning_rate
    return f"{float(keras.ops.convert_to_numpy(rate)):.6g}"
