"""What the rest of the package asks of a detector variant, declared once by its class.

Training, evaluation, export and the command line never test a model's
class: they read its `variant` (a `DetectorVariant`) and call its hooks
(`training_stages`, the post-processing hooks of `DensePostprocessing`).
A new variant is a new `DenseDetector` subclass with its own `variant`; the
functions below find it by task name or preset without a list to extend.
"""

import dataclasses
import json
import os

# The recipes' AdamW learning rates and the batch sizes they are given for: MMDetection's RTMDet
# (8 GPUs × 32) and MMRotate's RTMDet-R schedule_3x (0.004/16 for a total batch of 8).
REFERENCE_LR, REFERENCE_BATCH = 0.004, 256
ROTATED_LR, ROTATED_BATCH = 0.004 / 16, 8
# What a run trains for when the user does not say (the paper's recipes; `rtmdet train` fills its options).
DETECTION_RECIPE = {"image_size": 640, "epochs": 300, "batch_size": 32, "val_every": 10}
ROTATED_RECIPE = {"image_size": 1024, "epochs": 36, "batch_size": 8, "val_every": 12}


@dataclasses.dataclass(frozen=True)
class DetectorVariant:
    """A detector variant's traits.

    Attributes:
        task: its short name (`rtmdet train --task`): "det", "ins", "rot".
        display_name: "RTMDet", "RTMDet-Ins", "RTMDet-R".
        box_format: the boxes `predict` returns and `fit` takes: "xyxy" (pixels), or "xywha" (rotated:
            cx, cy, w, h in pixels, angle in radians).
        predicts_masks: `predict` also returns `masks` (B, K, H, W).
        evaluation: the protocol that scores it: "coco" (pycocotools, `coco_iou_types`) or "dota"
            (VOC-style rotated mAP, DOTA's).
        coco_iou_types: the COCO IoU types scored ("bbox", and "segm" with masks).
        sliding_windows: large images are detected by overlapping windows merged by its NMS (DOTA scenes).
        sizes: the sizes its preset tables hold ("tiny" ... "x").
        preset_pattern: the built-in preset of a size, e.g. "rtmdet_{size}_coco".
        learning_rate, learning_rate_batch: the recipe's AdamW rate and the batch size it is given for.
        two_stage_recipe: trains with Mosaic / MixUp, then a light last stage (RTMDet); else one stage.
        run_defaults: image_size, epochs, batch_size, val_every of its recipe.
        axis_aligned_nms: its NMS is the class-aware NMS of axis-aligned boxes that export formats have an
            operator for (ONNX `NonMaxSuppression`, TensorFlow's `combined_non_max_suppression`); when
            False (rotated boxes), an end-to-end export traces the model's own `suppress` instead.
    """

    task: str
    display_name: str
    box_format: str
    predicts_masks: bool
    evaluation: str
    coco_iou_types: tuple
    sliding_windows: bool
    sizes: tuple
    preset_pattern: str
    learning_rate: float
    learning_rate_batch: int
    two_stage_recipe: bool
    run_defaults: dict
    axis_aligned_nms: bool = True

    def preset_for_size(self, size):
        """The built-in preset name of `size`; a ValueError naming the sizes there are otherwise."""
        if size not in self.sizes:
            raise ValueError(f"{self.display_name} comes in sizes {', '.join(self.sizes)}; got {size!r}.")
        return self.preset_pattern.format(size=size)


def detector_classes():
    """{task: class} of every detector variant (the `DenseDetector` subclasses that declare one)."""
    from keras_rtmdet.models.dense_detector import DenseDetector

    found, pending = {}, [DenseDetector]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        variant = cls.__dict__.get("variant")
        if variant is not None:
            found.setdefault(variant.task, cls)
    return found


def detector_class(task):
    """The detector class of a task name ("det", "ins", "rot"); a ValueError listing them otherwise."""
    classes = detector_classes()
    if task not in classes:
        raise ValueError(f"Unknown task {task!r}; known: {', '.join(sorted(classes))}.")
    return classes[task]


def preset_variant(preset):
    """The `DetectorVariant` of a built-in preset name or a preset directory, read without building the model.

    None when neither a preset table nor a directory's config.json names one.
    """
    from keras_rtmdet.models.preset_loading import CONFIG_FILE

    config = os.path.join(os.fspath(preset), CONFIG_FILE)
    classes = detector_classes().values()
    if os.path.isfile(config):
        with open(config) as f:
            class_name = json.load(f).get("class_name")
        return next((cls.variant for cls in classes if cls.__name__ == class_name), None)
    return next((cls.variant for cls in classes if preset in cls.presets), None)
