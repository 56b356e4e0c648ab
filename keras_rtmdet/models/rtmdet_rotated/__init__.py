"""RTMDet-R: rotated object detection."""

from keras_rtmdet.models.rtmdet_rotated.rotated_rtmdet_head import RotatedRTMDetSepBNHead
from keras_rtmdet.models.rtmdet_rotated.rtmdet_rotated import RTMDetRotated

__all__ = ["RTMDetRotated", "RotatedRTMDetSepBNHead"]
