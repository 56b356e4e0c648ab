"""COCO evaluation: pycocotools metrics, the `fit` callback and the results plot."""

from keras_rtmdet.evaluation.coco_callback import CocoEvaluationCallback
from keras_rtmdet.evaluation.coco_metrics import STAT_KEYS
from keras_rtmdet.evaluation.coco_metrics import coco_evaluate
from keras_rtmdet.evaluation.coco_metrics import detections_to_coco
from keras_rtmdet.evaluation.coco_metrics import evaluate_coco
from keras_rtmdet.evaluation.coco_metrics import print_coco_table
from keras_rtmdet.evaluation.results_plot import plot_results

__all__ = [
    "STAT_KEYS",
    "CocoEvaluationCallback",
    "coco_evaluate",
    "detections_to_coco",
    "evaluate_coco",
    "plot_results",
    "print_coco_table",
]
