"""COCO evaluation during `fit`: results.csv, `val_AP` in the logs, best/last presets."""

import json
import os

from keras_rtmdet.evaluation.coco_metrics import IOU_TYPE_PREFIX
from keras_rtmdet.evaluation.coco_metrics import STAT_KEYS
from keras_rtmdet.evaluation.coco_metrics import _check_iou_types
from keras_rtmdet.evaluation.coco_metrics import evaluate_coco
from keras_rtmdet.evaluation.evaluation_callback import EvaluationCallback
from keras_rtmdet.evaluation.evaluation_plots import write_evaluation_figures

# The latest evaluation's whole `evaluate_coco` dict, beside `val_precision_recall.png` and `val_confusion_matrix.png`.
DETAILS_FILE = "val_metrics.json"


class CocoEvaluationCallback(EvaluationCallback):
    """Evaluate COCO AP every `every` epochs (and after the last one) of `fit`.

    An `EvaluationCallback` (results.csv rows, `val_*` logs, EMA weights,
    best/last presets, resume) whose metrics are `evaluate_coco`'s 12 stats
    on `source` (segm ones prefixed `segm_`): `val_AP`, `val_AP50`, ... in
    the logs (for `ModelCheckpoint(monitor="val_AP", mode="max")`), and
    `best` follows the AP of the first IoU type. Each evaluation also writes
    its per-class table, PR curves and confusion matrix (`DETAILS_FILE`) and
    their figures (`val_precision_recall.png`, `val_confusion_matrix.png`).

    Args:
        source: a `DetectionSource` with the validation images.
        run_dir: output directory (created if needed).
        every: evaluate after epochs `every`, `2·every`, ... (and the last).
        ema: an `ExpMomentumEMA` also passed to `fit`, or None.
        batch_size: images per forward pass of the evaluation.
        iou_types: `"bbox"` and/or `"segm"`.
        save_best, save_last: write the `best` / `last` presets.
        verbose: 1 shows the progress bar and the AP tables, 0 nothing.
        **postprocess_settings: post-processing overrides for evaluation.
    """

    def __init__(
        self,
        source,
        run_dir,
        every=1,
        ema=None,
        batch_size=8,
        iou_types=("bbox",),
        save_best=True,
        save_last=True,
        verbose=1,
        **postprocess_settings,
    ):
        iou_types = _check_iou_types(iou_types)
        super().__init__(
            source,
            run_dir,
            IOU_TYPE_PREFIX[iou_types[0]] + "AP",
            every=every,
            ema=ema,
            batch_size=batch_size,
            save_best=save_best,
            save_last=save_last,
            verbose=verbose,
            **postprocess_settings,
        )
        self.iou_types = iou_types

    def compute_metrics(self, model):
        stats = evaluate_coco(
            model,
            self.source,
            batch_size=self.batch_size,
            iou_types=self.iou_types,
            verbose=self.verbose,
            print_table=self.verbose > 0,
            **self.postprocess_settings,
        )
        # The latest evaluation in detail: per-class table, PR curves, confusion matrix (JSON and figures).
        with open(os.path.join(self.run_dir, DETAILS_FILE), "w") as f:
            json.dump(stats, f, indent=1, default=float)
        write_evaluation_figures(stats, self.run_dir, prefix="val_")
        return {
            prefix + key: stats[prefix + key]
            for prefix in (IOU_TYPE_PREFIX[t] for t in self.iou_types)
            for key in STAT_KEYS
        }
