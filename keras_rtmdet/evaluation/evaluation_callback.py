"""Evaluation during `fit`, whatever the metric: results.csv, `val_*` in the logs, best/last presets.

`EvaluationCallback` does the bookkeeping (schedule, EMA swap, CSV rows,
presets, resume); a subclass computes the metrics (`CocoEvaluationCallback`:
pycocotools AP, `DotaEvaluationCallback`: rotated VOC-style mAP).
"""

import csv
import math
import os

import keras

from keras_rtmdet.models.dense_detector import POSTPROCESS_KEYS
from keras_rtmdet.utils.scalars import as_float

RESULTS_FILE = "results.csv"
BEST_DIR = "best"
LAST_DIR = "last"


def read_best(results_csv, column="AP"):
    """The largest value of `column` in an existing results.csv (−inf if none)."""
    best = -math.inf
    if not os.path.isfile(results_csv):
        return best
    with open(results_csv, newline="") as f:
        for row in csv.DictReader(f):
            try:
                value = float(row.get(column) or "nan")
            except ValueError:
                continue
            if not math.isnan(value):
                best = max(best, value)
    return best


def append_row(results_csv, row):
    """Append `row` (dict) to a CSV, writing the header only if the file is new.

    An existing file keeps its header: keys it lacks are dropped, missing
    ones left empty, so a resumed run's rows line up with the first run's.
    """
    header = None
    if os.path.isfile(results_csv) and os.path.getsize(results_csv) > 0:
        with open(results_csv, newline="") as f:
            header = next(csv.reader(f), None)
    new = header is None
    if new:
        header = list(row)
    with open(results_csv, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


class EvaluationCallback(keras.callbacks.Callback):
    """Evaluate every `every` epochs (and after the last one) of `fit`; subclasses say how.

    A subclass sets `monitor` (the metric that picks `best`, larger is
    better) and implements `compute_metrics(model) -> {name: float}`. Each
    evaluation:

    * calls `compute_metrics` (with the EMA weights swapped in when `ema` is
      a built `ExpMomentumEMA`: the weights the reference reports),
    * appends a row to `run_dir/results.csv`: `epoch` (1-based), every
      numeric entry of `logs` (loss, loss_cls, loss_bbox, val_*, ...),
      `learning_rate` (the optimizer's current one) and the metrics,
    * adds `val_<name>` for each metric to `logs`, for History,
      EarlyStopping, ModelCheckpoint(monitor=f"val_{monitor}", mode="max")
      and other callbacks listed after this one,
    * saves `run_dir/last` and, when `monitor` beats the best so far,
      `run_dir/best` (preset directories, `from_preset`-able, of the
      evaluated (EMA) weights, with the monitored value in their metadata).

    Resume: running `fit` again on the same `run_dir` appends to results.csv
    (its header kept) and takes the best value so far from it (`best_ap`),
    so `best` is only replaced by a better model.

    Args:
        source: the validation data (a source the metric reads).
        run_dir: output directory (created if needed).
        monitor: name of the metric that picks `best`.
        every: evaluate after epochs `every`, `2·every`, ... (and the last).
        ema: an `ExpMomentumEMA` also passed to `fit`, or None.
        batch_size: images per forward pass of the evaluation.
        save_best, save_last: write the `best` / `last` presets.
        verbose: 1 shows the progress bar and the metric tables, 0 nothing.
        **postprocess_settings: post-processing overrides for evaluation.
    """

    def __init__(
        self,
        source,
        run_dir,
        monitor,
        every=1,
        ema=None,
        batch_size=8,
        save_best=True,
        save_last=True,
        verbose=1,
        **postprocess_settings,
    ):
        super().__init__()
        if int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}.")
        unknown = sorted(set(postprocess_settings) - set(POSTPROCESS_KEYS))
        if unknown:
            raise ValueError(f"Unknown post-processing setting {unknown[0]!r}; known: {POSTPROCESS_KEYS}.")
        # What the evaluation asks of `keras_rtmdet.training.ExpMomentumEMA` (the training layer sits above).
        if ema is not None and not (hasattr(ema, "built") and callable(getattr(ema, "swap", None))):
            raise ValueError(f"ema must be an ExpMomentumEMA (`built`, `swap()`) or None, got {type(ema).__name__}.")
        self.source = source
        self.run_dir = os.fspath(run_dir)
        self.monitor = monitor
        self.every = int(every)
        self.ema = ema
        self.batch_size = int(batch_size)
        self.save_best = bool(save_best)
        self.save_last = bool(save_last)
        self.verbose = int(verbose)
        self.postprocess_settings = postprocess_settings
        self.best_ap = -math.inf

    @property
    def results_csv(self):
        return os.path.join(self.run_dir, RESULTS_FILE)

    def compute_metrics(self, model):
        """{metric name: float} of `model` on `self.source`, `self.monitor` among them."""
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        os.makedirs(self.run_dir, exist_ok=True)
        self.best_ap = max(self.best_ap, read_best(self.results_csv, self.monitor))

    # The run's number of epochs when `fit` covers only part of it (a resumed epoch is a `fit` of its own).
    final_epoch = None

    def _due(self, epoch):
        last = self.final_epoch or (self.params.get("epochs") if self.params else None)
        return (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last)

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        logs = logs if logs is not None else {}
        row = {"epoch": epoch + 1}
        for key, value in logs.items():
            number = as_float(value)
            if number is not None:
                row[key] = number
        if "learning_rate" not in row:
            row["learning_rate"] = self._learning_rate()
        model = self.model
        use_ema = self.ema is not None and self.ema.built
        if use_ema:
            with self.ema.swap():
                stats = self._evaluate_and_save(model)
        else:
            stats = self._evaluate_and_save(model)
        row.update(stats)
        append_row(self.results_csv, row)
        logs.update({f"val_{key}": value for key, value in stats.items()})

    def _evaluate_and_save(self, model):
        scalars = self.compute_metrics(model)
        value = scalars[self.monitor]
        if self.save_last:
            model.save_to_preset(os.path.join(self.run_dir, LAST_DIR), metadata={self.monitor: value})
        if value > self.best_ap:
            self.best_ap = value
            if self.save_best:
                model.save_to_preset(os.path.join(self.run_dir, BEST_DIR), metadata={self.monitor: value})
        return scalars

    def _learning_rate(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        return as_float(optimizer.learning_rate)
