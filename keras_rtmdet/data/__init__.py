"""Training data: dataset readers, tf.data pipelines with the RTMDet augmentations, the stage switch.

Readers and the synthetic generator import no TensorFlow; the pipelines need it
(tf.data is the data engine on every Keras backend).
"""

from keras_rtmdet.data.coco_json import CocoJsonSource
from keras_rtmdet.data.dataset_report import DatasetReport
from keras_rtmdet.data.dataset_report import dataset_report
from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.data.dota import DOTA_CLASSES
from keras_rtmdet.data.dota import DotaSource
from keras_rtmdet.data.dota import polygons_to_rboxes
from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.data.dota_split import parse_patch_name
from keras_rtmdet.data.dota_split import patch_windows
from keras_rtmdet.data.dota_split import split_annotations
from keras_rtmdet.data.dota_split import split_dota
from keras_rtmdet.data.source_dataset import source_dataset
from keras_rtmdet.data.synthetic import SyntheticShapesSource
from keras_rtmdet.data.synthetic_rotated import SyntheticRotatedSource
from keras_rtmdet.data.tfds_source import TfdsSource

__all__ = [
    "CocoJsonSource",
    "DOTA_CLASSES",
    "DatasetReport",
    "DetectionSource",
    "DotaSource",
    "SyntheticRotatedSource",
    "SyntheticShapesSource",
    "TfdsSource",
    "dataset_report",
    "parse_patch_name",
    "patch_windows",
    "polygons_to_rboxes",
    "rboxes_to_polygons",
    "source_dataset",
    "split_annotations",
    "split_dota",
]
