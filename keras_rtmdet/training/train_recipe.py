"""The whole RTMDet (and RTMDet-R) training recipe as one call: data stages, optimizer, EMA, evaluation, resume."""

import os

import keras

from keras_rtmdet.distribute.replicas import data_parallel_size
from keras_rtmdet.distribute.replicas import process_count
from keras_rtmdet.distribute.replicas import process_rank
from keras_rtmdet.training.optimizer import REFERENCE_BATCH
from keras_rtmdet.training.optimizer import REFERENCE_LR
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from keras_rtmdet.training.resumable import resumable_training_callbacks

# The reference trains 300 epochs and drops Mosaic/MixUp for the last 20.
REFERENCE_EPOCHS, REFERENCE_STAGE2_EPOCHS = 300, 20

# MMRotate's RTMDet-R schedule_3x: lr 0.004/16 for a total batch of 8.
ROTATED_LEARNING_RATE, ROTATED_BATCH_SIZE = 0.004 / 16, 8

MODEL_SIZES = ("tiny", "s", "m", "l", "x")
TRAIN_LOG = "train_log.csv"  # every epoch's losses and learning rate (Keras CSVLogger, 0-based epochs)


def stage2_epochs_for(epochs):
    """The light-augmentation epochs at the end of an `epochs` run: the reference's 20/300 share, at least 1."""
    return max(1, round(epochs * REFERENCE_STAGE2_EPOCHS / REFERENCE_EPOCHS)) if epochs > 1 else 0


def train_rtmdet(
    model,
    train_source,
    run_dir,
    epochs,
    batch_size,
    val_source=None,
    model_size="s",
    image_size=None,
    stage2_epochs=None,
    max_boxes=100,
    val_every=1,
    base_learning_rate=None,
    base_batch_size=None,
    warmup_steps=1000,
    ema=True,
    seed=None,
    verbose="auto",
    extra_callbacks=(),
    rect_labels=None,
):
    """Train `model` on `train_source` with RTMDet's recipe; resumable in `run_dir`.

    Stage 1 (Mosaic, RandomResize, RandomCrop, HSV, flip, pad, MixUp) runs
    until `epochs − stage2_epochs`, then a `PipelineSwitch` turns to stage 2
    (no Mosaic/MixUp). AdamW + flat-cosine as `rtmdet_optimizer`, EMA as
    `ExpMomentumEMA`, backups for resume in `run_dir` (call again with the
    same arguments to resume an interrupted run). With `val_source`, COCO
    metrics every `val_every` epochs (on the EMA weights) go to
    `run_dir/results.csv`, `run_dir/best` and `run_dir/last` presets.

    An `RTMDetIns` trains on the sources' masks (the training samples carry
    them, with the Ins crop and FilterAnnotations, and the stride-4 mask
    targets of `train_pipeline`) and is evaluated with bbox and segm AP
    (`best` follows the box AP, as the first IoU type); a detection model
    reads boxes only, whatever the source's `with_masks`.

    An `RTMDetRotated` trains with MMRotate's 36e recipe instead: one stage of
    `rotated_train_pipeline` (keep-ratio resize, h/v/diagonal flip, random
    rotation, pad; no Mosaic/MixUp, images without objects dropped) on
    sources with (N, 5) rboxes (`DotaSource`, `SyntheticRotatedSource`), the
    learning rate 0.004/16 at batch 8 (scaled linearly), and DOTA mAP
    (`DotaEvaluationCallback`, `best` by mAP50) on `val_source`.

    Args:
        model: an `RTMDet`, `RTMDetIns` or `RTMDetRotated` with the source's number of classes.
        train_source, val_source: `DetectionSource`s (COCO JSON, tfds, synthetic; DOTA / synthetic
            rotated for an `RTMDetRotated`).
        run_dir: output directory.
        epochs, batch_size: the run; an epoch is `len(train_source) // batch_size` steps.
        model_size: which augmentation strengths to use (tiny/s/m/l/x; unused by `RTMDetRotated`).
        image_size: training size (default: the model's `image_size`).
        stage2_epochs: light-stage epochs (default: 20/300 of `epochs`; `RTMDetRotated` has one stage).
        max_boxes: objects kept per training image.
        base_learning_rate, base_batch_size: see `rtmdet_optimizer` (default: 0.004 at 256, RTMDet-R
            0.004/16 at 8).
        warmup_steps: linear warm-up iterations (both recipes: 1000).
        ema: train with the EMA (the reference does).
        seed: augmentation and shuffling seed.
        rect_labels: `RTMDetRotated` only: labels annotated as axis-aligned boxes (rotated by multiples
            of 90°); default the source's `rect_labels`, else its DOTA storage-tank / roundabout classes.

    Data-parallel: call it inside `keras_rtmdet.distribute.DataParallel` with the global `batch_size`.
    With several processes (torch), each reads its shard of the images (`source_dataset(shard=...)`, the
    same shuffle `seed` everywhere, 0 if None) in batches of `batch_size / processes`, and only the chief
    (rank 0) keeps the EMA, writes the backups, logs and presets and evaluates; the others resume from its
    backup and train silently.

    Returns: the Keras `History`. At the end the model holds the EMA weights (the chief's, with several
    processes).
    """
    from keras_rtmdet.models.rtmdet_ins.rtmdet_ins import RTMDetIns
    from keras_rtmdet.models.rtmdet_rotated.rtmdet_rotated import RTMDetRotated

    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size must be one of {MODEL_SIZES}, got {model_size!r}.")
    if train_source.num_classes != model.head.num_classes:
        raise ValueError(
            f"The training data has {train_source.num_classes} classes but the model's head has "
            f"{model.head.num_classes}: build the model with num_classes={train_source.num_classes}."
        )
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}.")
    replicas, processes, rank = data_parallel_size(), process_count(), process_rank()
    if batch_size % replicas:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {replicas} data-parallel replicas.")
    chief, shard = rank == 0, ((processes, rank) if processes > 1 else None)
    steps_per_epoch = len(train_source) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{len(train_source)} training images are fewer than one batch of {batch_size}.")
    rotated = isinstance(model, RTMDetRotated)
    instance_segmentation = isinstance(model, RTMDetIns)
    if instance_segmentation and val_source is not None:
        _check_has_segmentations(val_source)
    if rotated and stage2_epochs:
        raise ValueError("RTMDet-R trains in one stage (no Mosaic/MixUp): stage2_epochs does not apply.")
    image_size = int(image_size or model.image_size[0])
    os.makedirs(run_dir, exist_ok=True)
    process_batch = batch_size // processes

    if rotated:
        dataset = _rotated_dataset(train_source, image_size, process_batch, max_boxes, seed, rect_labels, shard)
        stage_callbacks = []
        default_rate, default_batch = ROTATED_LEARNING_RATE, ROTATED_BATCH_SIZE
    else:
        stage2_epochs = stage2_epochs_for(epochs) if stage2_epochs is None else int(stage2_epochs)
        dataset, stage_callbacks = _staged_dataset(
            train_source, instance_segmentation, model_size, image_size, process_batch, max_boxes, seed,
            switch_epoch=epochs - stage2_epochs, shard=shard,
        )
        default_rate, default_batch = REFERENCE_LR, REFERENCE_BATCH
    model.compile(
        optimizer=rtmdet_optimizer(
            model,
            epochs,
            steps_per_epoch,
            batch_size,
            base_learning_rate=default_rate if base_learning_rate is None else base_learning_rate,
            base_batch_size=default_batch if base_batch_size is None else base_batch_size,
            warmup_steps=warmup_steps,
        )
    )
    ema = ema and chief
    callbacks = resumable_training_callbacks(run_dir, ema=ema, restore_only=not chief)
    ema_callback = callbacks[-1] if ema else None
    callbacks.extend(stage_callbacks)
    if val_source is not None and chief:
        callbacks.append(_evaluation_callback(val_source, run_dir, val_every, ema_callback, rotated, instance_segmentation))
    if chief:
        callbacks.append(keras.callbacks.CSVLogger(os.path.join(run_dir, TRAIN_LOG), append=True))
    callbacks.extend(extra_callbacks)
    return model.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,
        verbose=verbose if chief else 0,
    )


def _staged_dataset(train_source, with_masks, model_size, image_size, batch_size, max_boxes, seed, switch_epoch, shard):
    """RTMDet's two-stage stream and the `PipelineSwitch` that turns it to stage 2 at `switch_epoch`."""
    import tensorflow as tf

    from keras_rtmdet.data.pipeline import staged_train_pipeline
    from keras_rtmdet.data.pipeline_switch import PipelineSwitch
    from keras_rtmdet.data.source_dataset import source_dataset

    stage = tf.Variable(0, dtype=tf.int64, trainable=False, name="pipeline_stage")
    samples = source_dataset(train_source, shuffle=True, seed=seed, repeat=True, with_masks=with_masks, shard=shard)
    if samples.element_spec["boxes"].shape[-1] == 5:
        raise ValueError(
            f"{type(train_source).__name__} has rotated boxes (cx, cy, w, h, angle): train an RTMDetRotated on it."
        )
    dataset = staged_train_pipeline(
        samples,
        stage_variable=stage,
        model_size=model_size,
        image_size=image_size,
        batch_size=batch_size,
        max_boxes=max_boxes,
        seed=_augmentation_seed(seed, shard),
    )
    return dataset, [PipelineSwitch(stage, switch_epoch=switch_epoch)]


def _augmentation_seed(seed, shard):
    """Each process its own augmentation draws (the shuffle seed is shared, see `source_dataset`)."""
    return seed if shard is None or seed is None else seed + shard[1]


def rect_labels_of(source):
    """Labels of `source` annotated as axis-aligned boxes: its `rect_labels`, else its DOTA rect classes by name."""
    from keras_rtmdet.utils.dota_classes import DOTA_RECT_CLASSES

    labels = getattr(source, "rect_labels", None)
    if labels is not None:
        return [int(label) for label in labels]
    return [i for i, name in enumerate(source.class_names) if name in DOTA_RECT_CLASSES]


def _rotated_dataset(train_source, image_size, batch_size, max_boxes, seed, rect_labels, shard):
    from keras_rtmdet.data.rotated_pipeline import rotated_train_pipeline
    from keras_rtmdet.data.source_dataset import source_dataset

    samples = source_dataset(train_source, shuffle=True, seed=seed, repeat=True, with_masks=False, shard=shard)
    return rotated_train_pipeline(
        samples,
        image_size=image_size,
        batch_size=batch_size,
        max_boxes=max_boxes,
        rect_labels=rect_labels_of(train_source) if rect_labels is None else rect_labels,
        seed=_augmentation_seed(seed, shard),
    )


def _evaluation_callback(val_source, run_dir, every, ema, rotated, instance_segmentation):
    if rotated:
        from keras_rtmdet.evaluation.dota_callback import DotaEvaluationCallback

        return DotaEvaluationCallback(val_source, run_dir, every=every, ema=ema)
    from keras_rtmdet.evaluation.coco_callback import CocoEvaluationCallback

    iou_types = ("bbox", "segm") if instance_segmentation else ("bbox",)
    return CocoEvaluationCallback(val_source, run_dir, every=every, ema=ema, iou_types=iou_types)


def _check_has_segmentations(source):
    """Fail before training, not at the first evaluation, when segm AP cannot be computed."""
    from keras_rtmdet.evaluation.coco_metrics import has_segmentations

    if not has_segmentations(source.coco):
        raise ValueError(
            f"The validation data ({type(source).__name__}) has no instance masks, which the segm "
            "evaluation of an RTMDetIns needs."
        )
