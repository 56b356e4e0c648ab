"""Training data: dataset readers, tf.data pipelines with the RTMDet augmentations, the stage switch.

Readers and the synthetic generator import no TensorFlow; the pipelines need it
(tf.data is the data engine on every Keras backend).
"""

from keras_rtmdet.data.coco_json import CocoJsonSource
from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.data.source_dataset import source_dataset
from keras_rtmdet.data.synthetic import SyntheticShapesSource
from keras_rtmdet.data.tfds_source import TfdsSource

__all__ = [
    "CocoJsonSource",
    "DetectionSource",
    "SyntheticShapesSource",
    "TfdsSource",
    "source_dataset",
]
