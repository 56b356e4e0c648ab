"""RTMDet training augmentations as TensorFlow ops for tf.data pipelines.

Each per-sample transform maps a sample dict (`keras_rtmdet.data.detection_source`)
to a sample dict; `cached_mosaic` / `cached_mixup` are dataset transformations
for `Dataset.apply`.
"""

from keras_rtmdet.data.transforms.box_utils import clip_boxes, filter_instances, filter_small_boxes, is_inside, masks_to_boxes
from keras_rtmdet.data.transforms.geometric import pad_to, random_crop, random_flip, random_resize, random_resize_crop
from keras_rtmdet.data.transforms.mask_targets import add_mask_targets, mask_centers, subsample_masks
from keras_rtmdet.data.transforms.mosaic_mixup import cached_mixup, cached_mosaic, mixup, mosaic
from keras_rtmdet.data.transforms.photometric import apply_hsv_gains, yolox_hsv

__all__ = [
    "add_mask_targets",
    "apply_hsv_gains",
    "cached_mixup",
    "cached_mosaic",
    "clip_boxes",
    "filter_instances",
    "filter_small_boxes",
    "is_inside",
    "mask_centers",
    "masks_to_boxes",
    "mixup",
    "mosaic",
    "pad_to",
    "random_crop",
    "random_flip",
    "random_resize",
    "random_resize_crop",
    "subsample_masks",
    "yolox_hsv",
]
