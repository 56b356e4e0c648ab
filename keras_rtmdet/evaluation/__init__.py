"""Evaluation: COCO (pycocotools) and DOTA metrics, their `fit` callbacks, the results and evaluation plots."""

from keras_rtmdet.evaluation.coco_callback import CocoEvaluationCallback
from keras_rtmdet.evaluation.coco_metrics import STAT_KEYS
from keras_rtmdet.evaluation.coco_metrics import coco_evaluate
from keras_rtmdet.evaluation.coco_metrics import detections_to_coco
from keras_rtmdet.evaluation.coco_metrics import evaluate_coco
from keras_rtmdet.evaluation.coco_metrics import print_coco_table
from keras_rtmdet.evaluation.confusion_matrix import confusion_matrix
from keras_rtmdet.evaluation.dota_callback import DotaEvaluationCallback
from keras_rtmdet.evaluation.dota_metrics import dota_average_precision
from keras_rtmdet.evaluation.dota_metrics import evaluate_dota
from keras_rtmdet.evaluation.dota_metrics import evaluate_dota_model
from keras_rtmdet.evaluation.dota_metrics import print_dota_table
from keras_rtmdet.evaluation.dota_metrics import write_dota_submission
from keras_rtmdet.evaluation.evaluation_plots import plot_confusion_matrix
from keras_rtmdet.evaluation.evaluation_plots import plot_precision_recall
from keras_rtmdet.evaluation.evaluation_plots import write_evaluation_figures
from keras_rtmdet.evaluation.results_plot import plot_results

__all__ = [
    "STAT_KEYS",
    "CocoEvaluationCallback",
    "DotaEvaluationCallback",
    "coco_evaluate",
    "confusion_matrix",
    "detections_to_coco",
    "dota_average_precision",
    "evaluate_coco",
    "evaluate_dota",
    "evaluate_dota_model",
    "plot_confusion_matrix",
    "plot_precision_recall",
    "plot_results",
    "print_coco_table",
    "print_dota_table",
    "write_dota_submission",
    "write_evaluation_figures",
]
