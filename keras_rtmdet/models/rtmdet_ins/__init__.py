"""RTMDet-Ins: instance segmentation."""

from keras_rtmdet.models.rtmdet_ins.mask_feat_module import MaskFeatModule
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins import RTMDetIns
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_head import RTMDetInsSepBNHead

__all__ = ["MaskFeatModule", "RTMDetIns", "RTMDetInsSepBNHead"]
