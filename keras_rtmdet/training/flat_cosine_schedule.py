"""RTMDet's learning-rate schedule: linear warm-up, flat, then cosine decay."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class FlatCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """mmengine's `LinearLR` warm-up + constant + `CosineAnnealingLR`, per step.

    * steps `[0, warmup_steps)`: `base · (r + (1 − r) · t / (warmup_steps − 1))`,
      `r = warmup_ratio` (mmengine's LinearLR counts `end − begin − 1` steps);
    * then `base` until `cosine_start_step`;
    * then `min_lr + (base − min_lr) · (1 + cos(π · (t − start) / (total − start))) / 2`,
      reaching `min_lr = base · min_lr_ratio` at `total_steps`, and staying there.

    The reference (300 epochs, batch 256): base 0.004, 1000 warm-up steps
    from ratio 1e-5, cosine over the second half (epochs 150–300) to 5 %.
    """

    def __init__(
        self,
        base_learning_rate,
        total_steps,
        cosine_start_step,
        warmup_steps=1000,
        warmup_ratio=1e-5,
        min_lr_ratio=0.05,
    ):
        if not 0 <= cosine_start_step < total_steps:
            raise ValueError(
                f"cosine_start_step must lie in [0, total_steps={total_steps}), got {cosine_start_step}."
            )
        self.base_learning_rate = float(base_learning_rate)
        self.total_steps = int(total_steps)
        self.cosine_start_step = int(cosine_start_step)
        self.warmup_steps = int(warmup_steps)
        self.warmup_ratio = float(warmup_ratio)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        base = self.base_learning_rate
        if self.warmup_steps > 1:
            progress = ops.minimum(step, self.warmup_steps - 1) / (self.warmup_steps - 1)
            warmup = self.warmup_ratio + (1.0 - self.warmup_ratio) * progress
        else:
            warmup = ops.ones_like(step)
        span = self.total_steps - self.cosine_start_step
        phase = ops.clip((step - self.cosine_start_step) / span, 0.0, 1.0)
        min_lr = base * self.min_lr_ratio
        cosine = min_lr + (base - min_lr) * (1.0 + ops.cos(math.pi * phase)) / 2.0
        lr = ops.where(step < self.cosine_start_step, base * warmup, cosine)
        return ops.where(step < self.warmup_steps, base * warmup, lr)

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "total_steps": self.total_steps,
            "cosine_start_step": self.cosine_start_step,
            "warmup_steps": self.warmup_steps,
            "warmup_ratio": self.warmup_ratio,
            "min_lr_ratio": self.min_lr_ratio,
        }
