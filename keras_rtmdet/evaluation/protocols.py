"""The evaluation a detector declares (`model.variant.evaluation`): COCO (pycocotools) or DOTA mAP.

The recipe and `rtmdet val` ask these functions, which read the model's
`variant`: RTMDet is scored by COCO box AP, RTMDet-Ins adds mask (segm) AP,
RTMDet-R is scored by DOTA's rotated mAP.
"""

import warnings


def _segm_scored(model):
    return "segm" in model.variant.coco_iou_types


def check_validation_data(model, source):
    """Fail before training, not at the first evaluation, when the data cannot score the model's IoU types."""
    from keras_rtmdet.evaluation.coco_metrics import has_segmentations

    if model.variant.evaluation == "coco" and _segm_scored(model) and not has_segmentations(source.coco):
        raise ValueError(
            f"The validation data ({type(source).__name__}) has no instance masks, which the segm "
            f"evaluation of an {model.variant.display_name} needs."
        )


def evaluation_callback(model, source, run_dir, every=1, ema=None):
    """The `fit` callback that scores `model` on `source` every `every` epochs and keeps `best/` and `last/`."""
    if model.variant.evaluation == "dota":
        from keras_rtmdet.evaluation.dota_callback import DotaEvaluationCallback

        return DotaEvaluationCallback(source, run_dir, every=every, ema=ema)
    from keras_rtmdet.evaluation.coco_callback import CocoEvaluationCallback

    return CocoEvaluationCallback(source, run_dir, every=every, ema=ema, iou_types=model.variant.coco_iou_types)


def evaluate_model(
    model, source, batch_size=8, verbose=1, print_table=True, on_note=warnings.warn, **postprocess_settings
):
    """The model's metrics on every image of `source` (`evaluate_coco` or `evaluate_dota_model`'s stats).

    Segmentation AP is scored when the model predicts masks and the data
    has them; data without masks gives box AP only, and `on_note` is told.
    `verbose`: a progress bar; `print_table`: the metrics as a table.
    """
    if model.variant.evaluation == "dota":
        from keras_rtmdet.evaluation.dota_metrics import evaluate_dota_model

        return evaluate_dota_model(
            model, source, batch_size=batch_size, verbose=verbose, print_table=print_table, **postprocess_settings
        )
    from keras_rtmdet.evaluation.coco_metrics import evaluate_coco
    from keras_rtmdet.evaluation.coco_metrics import has_segmentations

    iou_types = model.variant.coco_iou_types
    if _segm_scored(model) and not has_segmentations(source.coco):
        on_note("the validation data has no instance masks: box AP only.")
        iou_types = tuple(kind for kind in iou_types if kind != "segm")
    return evaluate_coco(
        model, source, batch_size=batch_size, iou_types=iou_types, verbose=verbose, print_table=print_table,
        **postprocess_settings,
    )
