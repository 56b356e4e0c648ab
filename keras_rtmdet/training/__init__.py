"""Training RTMDet: targets, losses, optimiser, schedule and EMA."""

from keras_rtmdet.training.dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from keras_rtmdet.training.dynamic_soft_label_assigner import mask_centers_of_mass
from keras_rtmdet.training.losses import giou_loss
from keras_rtmdet.training.losses import quality_focal_loss
from keras_rtmdet.training.losses import rtmdet_detection_loss
from keras_rtmdet.training.ema import ExpMomentumEMA
from keras_rtmdet.training.flat_cosine_schedule import FlatCosineSchedule
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from keras_rtmdet.models.non_finite_loss import NonFiniteLossError
from keras_rtmdet.training.resumable import resumable_training_callbacks
from keras_rtmdet.training.run_checkpoint import RunCheckpoint
from keras_rtmdet.training.stop_conditions import TrainingInterrupted
from keras_rtmdet.training.train_log import TrainLog

__all__ = [
    "DynamicSoftLabelAssigner",
    "ExpMomentumEMA",
    "FlatCosineSchedule",
    "NonFiniteLossError",
    "RunCheckpoint",
    "TrainLog",
    "TrainingInterrupted",
    "giou_loss",
    "mask_centers_of_mass",
    "quality_focal_loss",
    "rtmdet_detection_loss",
    "resumable_training_callbacks",
    "rtmdet_optimizer",
]
