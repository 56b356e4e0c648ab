"""keras_rtmdet: RTMDet real-time detectors for Keras 3 (TensorFlow, PyTorch, JAX)."""

from keras_rtmdet import export as _registers_the_exporter  # noqa: F401  (DenseDetector.export calls it)
from keras_rtmdet.models.cspnext.cspnext_backbone import CSPNeXt
from keras_rtmdet.models.cspnext.cspnext_classifier import CSPNeXtClassifier
from keras_rtmdet.models.dense_detector import DenseDetector
from keras_rtmdet.models.detections import Detections
from keras_rtmdet.models.rtmdet.cspnext_pafpn import CSPNeXtPAFPN
from keras_rtmdet.models.rtmdet.rtmdet import RTMDet
from keras_rtmdet.models.rtmdet.rtmdet_head import RTMDetSepBNHead
from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import RTMDetPreprocessor
from keras_rtmdet.models.rtmdet_ins.mask_feat_module import MaskFeatModule
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins import RTMDetIns
from keras_rtmdet.models.rtmdet_ins.rtmdet_ins_head import RTMDetInsSepBNHead
from keras_rtmdet.models.rtmdet_rotated.rotated_rtmdet_head import RotatedRTMDetSepBNHead
from keras_rtmdet.models.rtmdet_rotated.rtmdet_rotated import RTMDetRotated
from keras_rtmdet.version import __version__

__all__ = [
    "CSPNeXt",
    "CSPNeXtClassifier",
    "CSPNeXtPAFPN",
    "DenseDetector",
    "Detections",
    "MaskFeatModule",
    "RotatedRTMDetSepBNHead",
    "RTMDet",
    "RTMDetIns",
    "RTMDetInsSepBNHead",
    "RTMDetPreprocessor",
    "RTMDetRotated",
    "RTMDetSepBNHead",
    "__version__",
]
