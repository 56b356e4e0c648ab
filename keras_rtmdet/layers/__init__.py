from keras_rtmdet.layers.batch_norm_folding import batch_norm_folding
from keras_rtmdet.layers.conv_module import ConvModule
from keras_rtmdet.layers.conv_module import DepthwiseSeparableConvModule
from keras_rtmdet.layers.csp_layer import ChannelAttention
from keras_rtmdet.layers.csp_layer import CSPLayer
from keras_rtmdet.layers.csp_layer import CSPNeXtBlock
from keras_rtmdet.layers.csp_layer import SPPBottleneck
from keras_rtmdet.layers.image_normalization import ImageNormalization
from keras_rtmdet.layers.sync_batch_normalization import SyncBatchNormalization

__all__ = [
    "CSPLayer",
    "CSPNeXtBlock",
    "ChannelAttention",
    "ConvModule",
    "DepthwiseSeparableConvModule",
    "ImageNormalization",
    "SPPBottleneck",
    "SyncBatchNormalization",
    "batch_norm_folding",
]
