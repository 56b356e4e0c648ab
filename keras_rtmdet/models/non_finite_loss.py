"""Stop `fit` at the first non-finite loss, naming where, before the step's weights go anywhere."""

import math

import keras


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: `epoch` and `step` (0-based) of the step that gave it."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch, self.step = epoch, step


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise `NonFiniteLossError` (epoch, step and every loss term named) at the first non-finite loss.

    `DenseDetector.fit` puts one first among the callbacks: the step's
    weights are already updated when it runs, and the callbacks after it must
    not average, checkpoint or save them. Reading the loss waits for the step
    to finish on the device, as Keras' progress bar does.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if "loss" not in logs:
            return
        loss = float(keras.ops.convert_to_numpy(logs["loss"]))
        if math.isfinite(loss):
            return
        terms = ", ".join(
            f"{key}={float(keras.ops.convert_to_numpy(value)):.4g}"
            for key, value in sorted(logs.items())
            if key != "loss" and key.startswith("loss")
        )
        raise NonFiniteLossError(
            f"The loss became {loss} at epoch {self.epoch + 1}, step {batch + 1}"
            f"{f' ({terms})' if terms else ''}: training stopped. Common causes: a learning rate too high for "
            "the batch size, or targets with non-finite or extreme coordinates.",
            self.epoch,
            batch,
        )
