from keras_rtmdet.ops.boxes import distance_to_boxes
from keras_rtmdet.ops.boxes import pairwise_iou
from keras_rtmdet.ops.nms import batched_nms_keep
from keras_rtmdet.ops.priors import point_priors

__all__ = [
    "batched_nms_keep",
    "distance_to_boxes",
    "pairwise_iou",
    "point_priors",
]
