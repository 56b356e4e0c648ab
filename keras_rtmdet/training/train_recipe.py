"""The whole RTMDet (and RTMDet-R) training recipe as one call: data stages, optimizer, EMA, evaluation, resume."""

import os
import secrets

from keras_rtmdet.data.training_stream import training_stream
from keras_rtmdet.distribute.replicas import data_parallel_size
from keras_rtmdet.distribute.replicas import process_count
from keras_rtmdet.distribute.replicas import process_rank
from keras_rtmdet.evaluation.protocols import check_validation_data
from keras_rtmdet.evaluation.protocols import evaluation_callback
from keras_rtmdet.models.non_finite_loss import NonFiniteLossError
from keras_rtmdet.training.ema import ExpMomentumEMA
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from keras_rtmdet.training.run_checkpoint import RunCheckpoint
from keras_rtmdet.training.stop_conditions import TrainingInterrupted
from keras_rtmdet.training.stop_conditions import interrupt_after_step
from keras_rtmdet.training.train_log import TRAIN_LOG
from keras_rtmdet.training.train_log import TrainLog
from keras_rtmdet.utils.input_checks import check_image_size

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
    if val_source is not None:
        check_validation_data(model, val_source)
    image_size = check_image_size(image_size or model.image_size[0])[0]
    process_batch = batch_size // processes
    # Every process must draw the one shuffle order of the shards (`source_dataset`).
    seed = _run_seed(0 if seed is None and processes > 1 else seed, run_dir, steps_per_epoch)
    stages = model.training_stages(
        train_source, image_size, process_batch, max_boxes, seed, shard, epochs,
        model_size=model_size, stage2_epochs=stage2_epochs, rect_labels=rect_labels,
    )
    os.makedirs(run_dir, exist_ok=True)
    schedule = dict(
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        base_learning_rate=model.variant.learning_rate if base_learning_rate is None else base_learning_rate,
        base_batch_size=model.variant.learning_rate_batch if base_batch_size is None else base_batch_size,
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
        evaluation = evaluation_callback(model, val_source, run_dir, val_every, ema_callback)
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
