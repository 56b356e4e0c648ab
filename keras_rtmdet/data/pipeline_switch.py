"""Switch the staged training pipeline from stage 1 to stage 2 inside one `fit`."""

import keras


class PipelineSwitch(keras.callbacks.Callback):
    """mmdet `PipelineSwitchHook`: from epoch `switch_epoch` (0-based) on, stage 2.

    Sets `stage_variable` (the int `tf.Variable` read by
    `staged_train_pipeline`) to 1 at `on_epoch_begin`. Batches already
    prefetched are stage 1: when `fit` makes a fresh iterator each epoch (no
    `steps_per_epoch`) the switch is exact, since the iterator is created after
    `on_epoch_begin`; with a repeated dataset and `steps_per_epoch`, the first
    few batches of the switch epoch (the prefetch buffers) are still stage 1.
    A run resumed past `switch_epoch` gets stage 2 from its first epoch.

    Args:
        stage_variable: int `tf.Variable`, 0 for stage 1, 1 for stage 2.
        switch_epoch: first 0-based epoch of stage 2 (280 of 300 in the reference).
    """

    def __init__(self, stage_variable, switch_epoch=280):
        super().__init__()
        self.stage_variable = stage_variable
        self.switch_epoch = switch_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= self.switch_epoch:
            self.stage_variable.assign(1)
