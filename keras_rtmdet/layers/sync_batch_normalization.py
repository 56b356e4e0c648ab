"""BatchNorm whose training statistics cover every data-parallel replica's images (the reference's SyncBN)."""

import keras
from keras import ops

from keras_rtmdet.distribute.replicas import cross_replica_mean
from keras_rtmdet.distribute.replicas import replicas_in_sync
from keras_rtmdet.ops.reductions import accurate_mean


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class SyncBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with mmcv's `SyncBN` statistics under data parallelism.

    In training, each replica's per-channel mean and mean of squares are averaged over the replicas
    (`cross_replica_mean`: an all-reduce on TensorFlow's `MirroredStrategy` and torch DDP, differentiable)
    and the variance is ``E[x²] − E[x]²`` of the whole batch, so the normalisation, the moving statistics and
    the gradients are those of one device holding every replica's images (replicas hold equal batches).
    Keras' `synchronized=True` does this on TensorFlow only; on JAX's `DataParallel` the batch axis is
    already global, so the plain statistics are the synchronised ones. With one replica, and at inference,
    this is `BatchNormalization` (same variables, same config).

    The statistics are `accurate_mean`s, in float32 for half-precision inputs (TensorFlow's own
    `moments` over (B, H, W) is 25× less accurate than torch's: 4e-6 against 2e-7 relative), and one
    replica's variance is two-pass, E[(x − E[x])²], as torch's BatchNorm (Keras' E[x²] − E[x]² on
    torch loses a relative eps·E[x]²/Var).

    Input: (..., C) with `axis=-1`; statistics over every other axis.
    """

    def _moments(self, inputs, mask):
        if mask is not None:
            return super()._moments(inputs, mask)
        axes = self._reduction_axes
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        x = ops.cast(inputs, "float32") if dtype in ("float16", "bfloat16") else inputs
        if replicas_in_sync() == 1:
            mean = accurate_mean(x, axes, keepdims=True)
            variance = accurate_mean(ops.square(x - mean), axes)
            mean = ops.squeeze(mean, axis=tuple(axes))
        else:
            local = ops.stack([accurate_mean(x, axes), accurate_mean(ops.square(x), axes)])
            mean, mean_of_squares = ops.unstack(cross_replica_mean(local), num=2)
            variance = ops.maximum(mean_of_squares - ops.square(mean), 0.0)
        return ops.cast(mean, dtype), ops.cast(variance, dtype)
