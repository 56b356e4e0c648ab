"""keras_rtmdet: RTMDet real-time detectors for Keras 3 (TensorFlow, PyTorch, JAX)."""

from keras_rtmdet.models.cspnext.cspnext_backbone import CSPNeXt
from keras_rtmdet.models.rtmdet.cspnext_pafpn import CSPNeXtPAFPN
from keras_rtmdet.models.rtmdet.rtmdet import RTMDet
from keras_rtmdet.models.rtmdet.rtmdet_head import RTMDetSepBNHead
from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import RTMDetPreprocessor
from keras_rtmdet.version import __version__

__all__ = [
    "CSPNeXt",
    "CSPNeXtPAFPN",
    "RTMDet",
    "RTMDetPreprocessor",
    "RTMDetSepBNHead",
    "__version__",
]
