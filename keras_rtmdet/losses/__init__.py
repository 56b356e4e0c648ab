"""What a detector's loss needs, below the models: label assignment, target normalisation and the losses.

Written in `keras.ops` only; the models import these, the training recipe does not.
"""

from keras_rtmdet.losses.detection_losses import giou_loss
from keras_rtmdet.losses.detection_losses import quality_focal_loss
from keras_rtmdet.losses.detection_losses import rtmdet_detection_loss
from keras_rtmdet.losses.dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from keras_rtmdet.losses.dynamic_soft_label_assigner import mask_centers_of_mass
from keras_rtmdet.losses.mask_loss import rtmdet_mask_loss
from keras_rtmdet.losses.rotated_assigner import RotatedDynamicSoftLabelAssigner
from keras_rtmdet.losses.rotated_losses import rtmdet_rotated_loss

__all__ = [
    "DynamicSoftLabelAssigner",
    "RotatedDynamicSoftLabelAssigner",
    "giou_loss",
    "mask_centers_of_mass",
    "quality_focal_loss",
    "rtmdet_detection_loss",
    "rtmdet_mask_loss",
    "rtmdet_rotated_loss",
]
