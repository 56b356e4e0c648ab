"""DOTA (rotated) evaluation during `fit`: results.csv, `val_mAP50` in the logs, best/last presets."""

import json
import os

from keras_rtmdet.evaluation.coco_callback import DETAILS_FILE
from keras_rtmdet.evaluation.dota_metrics import EVAL_MODES
from keras_rtmdet.evaluation.dota_metrics import evaluate_dota_model
from keras_rtmdet.evaluation.evaluation_callback import EvaluationCallback
from keras_rtmdet.evaluation.evaluation_plots import write_evaluation_figures

# The scalars of `evaluate_dota` written per evaluation (mean over classes with ground truth).
DOTA_STAT_KEYS = ("mAP50", "mAP75", "mmAP")


class DotaEvaluationCallback(EvaluationCallback):
    """Evaluate rotated-box mAP (`evaluate_dota_model`) every `every` epochs (and after the last one) of `fit`.

    An `EvaluationCallback` (results.csv rows, `val_*` logs, EMA weights,
    best/last presets, resume) whose metrics are `mAP50`, `mAP75` and `mmAP`
    (0.50:0.05:0.95), then `AP50_<class>` per class (NaN for a class
    without ground truth); `best` follows `mAP50` (`val_mAP50` in the logs).
    Patches are scored as they are (no merge into whole scenes). Each
    evaluation also writes its whole `evaluate_dota` dict (per-class table,
    PR curves, confusion matrix) to `DETAILS_FILE` and the figures
    `val_precision_recall.png` and `val_confusion_matrix.png`, as the COCO
    callback does.

    Args:
        source: a `DotaSource` or `SyntheticRotatedSource` (`image_ids`,
            `load_image`, `annotations` with (N, 5) rboxes, `class_names`).
        run_dir: output directory (created if needed).
        every: evaluate after epochs `every`, `2·every`, ... (and the last).
        ema: an `ExpMomentumEMA` also passed to `fit`, or None.
        batch_size: images per forward pass of the evaluation.
        eval_mode: `"area"` (VOC2012, default) or `"11points"` (VOC07,
            MMRotate's `DOTAMetric` default).
        save_best, save_last: write the `best` / `last` presets.
        verbose: 1 shows the progress bar and the DOTA table, 0 nothing.
        **postprocess_settings: post-processing overrides for evaluation.
    """

    def __init__(
        self,
        source,
        run_dir,
        every=1,
        ema=None,
        batch_size=8,
        eval_mode="area",
        save_best=True,
        save_last=True,
        verbose=1,
        **postprocess_settings,
    ):
        if eval_mode not in EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}.")
        super().__init__(
            source,
            run_dir,
            "mAP50",
            every=every,
            ema=ema,
            batch_size=batch_size,
            save_best=save_best,
            save_last=save_last,
            verbose=verbose,
            **postprocess_settings,
        )
        self.eval_mode = eval_mode

    def compute_metrics(self, model):
        results = evaluate_dota_model(
            model,
            self.source,
            batch_size=self.batch_size,
            eval_mode=self.eval_mode,
            verbose=self.verbose,
            print_table=self.verbose > 0,
            **self.postprocess_settings,
        )
        with open(os.path.join(self.run_dir, DETAILS_FILE), "w") as f:
            json.dump(results, f, indent=1, default=float)
        write_evaluation_figures(results, self.run_dir, prefix="val_")
        scalars = {key: results[key] for key in DOTA_STAT_KEYS}
        scalars.update({f"AP50_{name}": value for name, value in results["per_class_AP"].items()})
        return scalars
