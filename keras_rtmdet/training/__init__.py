"""Training RTMDet: the recipe, optimiser, schedule, EMA, checkpoints and callbacks (the losses: `keras_rtmdet.losses`)."""

from keras_rtmdet.training.ema import ExpMomentumEMA
from keras_rtmdet.training.flat_cosine_schedule import FlatCosineSchedule
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from keras_rtmdet.models.non_finite_loss import NonFiniteLossError
from keras_rtmdet.training.resumable import resumable_training_callbacks
from keras_rtmdet.training.run_checkpoint import RunCheckpoint
from keras_rtmdet.training.stop_conditions import TrainingInterrupted
from keras_rtmdet.training.train_log import TrainLog

__all__ = [
    "ExpMomentumEMA",
    "FlatCosineSchedule",
    "NonFiniteLossError",
    "RunCheckpoint",
    "TrainLog",
    "TrainingInterrupted",
    "resumable_training_callbacks",
    "rtmdet_optimizer",
]
