"""The RTMDet optimiser: AdamW with the reference's decay exclusions and schedule."""

import keras

from keras_rtmdet.models.detector_variant import REFERENCE_BATCH
from keras_rtmdet.models.detector_variant import REFERENCE_LR
from keras_rtmdet.training.flat_cosine_schedule import FlatCosineSchedule


def scaled_learning_rate(batch_size, base_learning_rate=REFERENCE_LR, base_batch_size=REFERENCE_BATCH):
    """Linear scaling rule: `lr = base_lr · batch_size / base_batch_size`.

    (mmdet's `--auto-scale-lr` scales against 16, not 256, and would inflate
    RTMDet's rate 16×; this uses the batch the rate was tuned for.)
    """
    return base_learning_rate * batch_size / base_batch_size


def no_decay_variables(model):
    """Normalisation weights and every bias: the reference's `norm_decay_mult=0`
    and `bias_decay_mult=0`."""
    names = ("gamma", "beta", "bias")
    return [v for v in model.trainable_variables if v.path.split("/")[-1] in names]


def rtmdet_optimizer(
    model,
    epochs,
    steps_per_epoch,
    batch_size,
    base_learning_rate=REFERENCE_LR,
    base_batch_size=REFERENCE_BATCH,
    weight_decay=0.05,
    warmup_steps=1000,
    warmup_ratio=1e-5,
    cosine_fraction=0.5,
    min_lr_ratio=0.05,
):
    """AdamW + `FlatCosineSchedule` as RTMDet trains, for a given run length.

    Args:
        model: the model whose norm weights and biases get no weight decay.
        epochs, steps_per_epoch: the run; the cosine covers the last
            `cosine_fraction` of it (reference: epochs 150–300).
        batch_size: the global batch; the rate scales linearly from
            `base_learning_rate` at `base_batch_size`.
        weight_decay: decoupled decay (0.05) on conv kernels only.
        warmup_steps, warmup_ratio: linear warm-up (1000 steps from 1e-5),
            capped at a tenth of the run for short runs.
        min_lr_ratio: final rate as a fraction of the peak (5 %).

    Returns: a `keras.optimizers.AdamW` (β = 0.9, 0.999; ε = 1e-8 like torch).
    """
    total = int(epochs * steps_per_epoch)
    if total < 1:
        raise ValueError(f"epochs × steps_per_epoch must be positive, got {epochs} × {steps_per_epoch}.")
    schedule = FlatCosineSchedule(
        scaled_learning_rate(batch_size, base_learning_rate, base_batch_size),
        total_steps=total,
        cosine_start_step=int(round(total * (1.0 - cosine_fraction))),
        warmup_steps=min(int(warmup_steps), max(total // 10, 1)),
        warmup_ratio=warmup_ratio,
        min_lr_ratio=min_lr_ratio,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8
    )
    optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return optimizer
