"""Ctrl-C during training: a stop after the step under way, so that what is saved is a whole step.

On every backend the saved state is then one of the uninterrupted run's: an
interrupt inside an eager PyTorch update would leave it half applied, one
inside a JAX step would lose the step's donated buffers.
"""

import contextlib
import signal
import sys
import threading

import keras


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C, honoured after the step under way: `epoch` and `step` (0-based) of the last finished step."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch, self.step = epoch, step


class _StopAfterStep(keras.callbacks.Callback):
    def __init__(self, requested):
        super().__init__()
        self.requested = requested
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.requested.is_set():
            raise TrainingInterrupted(
                f"Interrupted after epoch {self.epoch + 1}, step {batch + 1}.", self.epoch, batch
            )


@contextlib.contextmanager
def interrupt_after_step():
    """Within the block Ctrl-C stops `fit` after the step under way; yields the callback that does it.

    The first Ctrl-C only sets a flag (the callback raises `TrainingInterrupted`
    at the step's end); a second one interrupts at once, as usual. Outside the
    main thread signals cannot be caught and Ctrl-C keeps its usual effect.
    """
    requested = threading.Event()
    callback = _StopAfterStep(requested)
    if threading.current_thread() is not threading.main_thread():
        yield callback
        return
    previous = signal.getsignal(signal.SIGINT) or signal.default_int_handler

    def request_stop(signum, frame):
        requested.set()
        signal.signal(signal.SIGINT, previous)
        sys.stderr.write("\nStopping after the current step (Ctrl-C again to stop at once)...\n")

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield callback
    finally:
        signal.signal(signal.SIGINT, previous)
