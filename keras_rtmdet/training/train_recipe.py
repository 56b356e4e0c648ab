"""The whole RTMDet (and RTMDet-R) training recipe as one call: data stages, optimizer, EMA, evaluation, resume."""

import os
import secrets

from keras_rtmdet.distribute.replicas import data_parallel_size
from keras_rtmdet.distribute.replicas import process_count
from keras_rtmdet.distribute.replicas import process_rank
from keras_rtmdet.models.non_finite_loss import NonFiniteLossError
from keras_rtmdet.training.ema import ExpMomentumEMA
from keras_rtmdet.training.optimizer import REFERENCE_BATCH
from keras_rtmdet.training.optimizer import REFERENCE_LR
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from keras_rtmdet.training.run_checkpoint import RunCheckpoint
from keras_rtmdet.training.stop_conditions import TrainingInterrupted
from keras_rtmdet.training.stop_conditions import interrupt_after_step
from keras_rtmdet.training.train_log import TRAIN_LOG
from keras_rtmdet.training.train_log import TrainLog
from keras_rtmdet.training.training_stream import rotated_epochs
from keras_rtmdet.training.training_stream import staged_epochs
from keras_rtmdet.training.training_stream import training_stream
from keras_rtmdet.utils.input_checks import check_image_size

# The reference trains 300 epochs and drops Mosaic/MixUp for the last 20.
REFERENCE_EPOCHS, REFERENCE_STAGE2_EPOCHS = 300, 20

# MMRotate's RTMDet-R schedule_3x: lr 0.004/16 for a total batch of 8.
ROTATED_LEARNING_RATE, ROTATED_BATCH_SIZE = 0.004 / 16, 8

MODEL_SIZES = ("tiny", "s", "m", "l", "x")


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
    until `epochs − stage2_epochs`, then stage 2 (no Mosaic/MixUp). AdamW +
    flat-cosine as `rtmdet_optimizer`, EMA as `ExpMomentumEMA`. With
    `val_source`, COCO metrics every `val_every` epochs (on the EMA weights)
    go to `run_dir/results.csv`, `run_dir/best` and `run_dir/last` presets;
    each epoch's losses to `run_dir/train_log.csv` (`TrainLog`).

    Resume: `run_dir/backup/` (`RunCheckpoint`) is written at the start, at
    every epoch end and when the run stops early; call again with the same
    arguments and the run goes on from there exactly as the uninterrupted
    run would (each epoch's data is a function of the seed and the epoch,
    `training_stream`). Ctrl-C stops after the step under way, saves, and
    raises `TrainingInterrupted`; a non-finite loss raises
    `NonFiniteLossError` (epoch and step named) and leaves the model and the
    checkpoint at the last epoch end, `best/` and `last/` untouched.

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
        seed: augmentation and shuffling seed (None: a random one; a resumed run keeps its own).
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
    image_size = check_image_size(image_size or model.image_size[0])[0]
    os.makedirs(run_dir, exist_ok=True)
    process_batch = batch_size // processes
    # Every process must draw the one shuffle order of the shards (`source_dataset`).
    seed = _run_seed(0 if seed is None and processes > 1 else seed, run_dir, steps_per_epoch)

    if rotated:
        rect_labels = rect_labels_of(train_source) if rect_labels is None else rect_labels
        stages = rotated_epochs(train_source, image_size, process_batch, max_boxes, seed, rect_labels, shard)
        default_rate, default_batch = ROTATED_LEARNING_RATE, ROTATED_BATCH_SIZE
    else:
        stage2_epochs = stage2_epochs_for(epochs) if stage2_epochs is None else int(stage2_epochs)
        stages = staged_epochs(
            train_source, instance_segmentation, model_size, image_size, process_batch, max_boxes, seed,
            switch_epoch=epochs - stage2_epochs, shard=shard,
        )
        default_rate, default_batch = REFERENCE_LR, REFERENCE_BATCH
    schedule = dict(
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        base_learning_rate=default_rate if base_learning_rate is None else base_learning_rate,
        base_batch_size=default_batch if base_batch_size is None else base_batch_size,
        warmup_steps=warmup_steps,
    )
    ema_callback = ExpMomentumEMA(apply_on_train_end=False) if ema and chief else None
    checkpoint = RunCheckpoint(run_dir, steps_per_epoch, seed, ema=ema_callback, write=chief)
    _compile_for(model, schedule, resuming=checkpoint.exists())
    if ema_callback is not None:
        ema_callback.build(model)
    start = checkpoint.restore(model)
    if start is None:
        checkpoint.save(model)
        start = {"epoch": 0, "step": 0}
    callbacks = [ema_callback] if ema_callback is not None else []
    if val_source is not None and chief:
        evaluation = _evaluation_callback(val_source, run_dir, val_every, ema_callback, rotated, instance_segmentation)
        evaluation.final_epoch = epochs
        callbacks.append(evaluation)
    if chief:
        callbacks.append(TrainLog(os.path.join(run_dir, TRAIN_LOG), model.loss_names))
    callbacks.append(checkpoint)
    with interrupt_after_step() as stop_on_interrupt:
        callbacks += [stop_on_interrupt, *extra_callbacks]
        try:
            history = _fit_from(
                model, stages, start["epoch"], start["step"], epochs, steps_per_epoch, callbacks,
                verbose if chief else 0,
            )
        except TrainingInterrupted:
            checkpoint.save(model)
            raise
        except NonFiniteLossError:
            checkpoint.restore(model)
            raise
    checkpoint.remove()
    if ema_callback is not None:
        ema_callback.apply_to_model()
    return history


def _compile_for(model, schedule, resuming):
    """Compile `model` with `rtmdet_optimizer(**schedule)`, unless it is resuming the run it was compiled for.

    Calling `train_rtmdet` again on the model an interruption stopped (a notebook cell run again) then
    skips the trace and compilation of the train step; the checkpoint's state is loaded either way.
    """
    # A string: Keras would wrap a dict attribute of a model in its own tracking type.
    key = repr(sorted(schedule.items()))
    if resuming and model.optimizer is not None and getattr(model, "_rtmdet_schedule", None) == key:
        return
    model.compile(optimizer=rtmdet_optimizer(model, **schedule))
    model._rtmdet_schedule = key


def _run_seed(seed, run_dir, steps_per_epoch):
    """The run's seed: a resumed run's own, else `seed`, else a fresh random one (kept in the checkpoint)."""
    state = RunCheckpoint(run_dir, steps_per_epoch, seed).read_state()
    if state is None:
        return secrets.randbelow(2**31) if seed is None else int(seed)
    if seed is not None and int(seed) != state["seed"]:
        raise ValueError(
            f"{run_dir} holds an interrupted run with seed {state['seed']}; resume it with that seed (or None), "
            f"not {seed}, or train in another run_dir."
        )
    return int(state["seed"])


def _fit_from(model, stages, epoch, step, epochs, steps_per_epoch, callbacks, verbose):
    """`fit` from epoch `epoch`, step `step` to the end: an epoch resumed inside is a `fit` of its own.

    Returns the `History` of the last `fit`, its `history` holding every epoch run here.
    """
    runs = []
    if step:
        data = training_stream(stages, epoch, epoch + 1, steps_per_epoch, skip_steps=step)
        runs.append((data, epoch, epoch + 1, steps_per_epoch - step))
        epoch += 1
    if epoch < epochs:
        runs.append((training_stream(stages, epoch, epochs, steps_per_epoch), epoch, epochs, steps_per_epoch))
    logs = {}
    history = None
    for data, first, last, steps in runs:
        history = model.fit(
            data, initial_epoch=first, epochs=last, steps_per_epoch=steps, callbacks=callbacks, shuffle=False,
            verbose=verbose,
        )
        for key, values in history.history.items():
            logs.setdefault(key, []).extend(values)
    if history is not None:
        history.history = logs
    return history


def rect_labels_of(source):
    """Labels of `source` annotated as axis-aligned boxes: its `rect_labels`, else its DOTA rect classes by name."""
    from keras_rtmdet.utils.dota_classes import DOTA_RECT_CLASSES

    labels = getattr(source, "rect_labels", None)
    if labels is not None:
        return [int(label) for label in labels]
    return [i for i, name in enumerate(source.class_names) if name in DOTA_RECT_CLASSES]


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
