"""BatchNorm whose training statistics cover every data-parallel replica's images (the reference's SyncBN)."""

import keras
from keras import ops

from keras_rtmdet.distribute.replicas import cross_replica_mean

from keras_rtmdet.distribute.replicas import replicas_in_sync


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class SyncBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with mmcv's `SyncBN` statistics under data parallelism.

    In training, each replica's per-channel mean and mean of squares are averaged over the replicas
    (`cross_replica_mean`: an all-reduce on TensorFlow's `MirroredStrategy` and torch DDP, differentiable)
    and the variance is ``E[x²] − E[x]²`` of the whole batch, so the normalisation, the moving statistics and
    the gradients are those of one device holding every replica's images (replicas hold equal batches).
    Keras' `synchronized=True` does this on TensorFlow only; on JAX's `DataParallel` the batch axis is
    already global, so the plain statistics are the synchronised ones. With one replica, and at inference,
    this is exactly `BatchNormalization` (same variables, same config).

    Input: (..., C) with `axis=-1`; statistics over every other axis.
    """

    def _moments(self, inputs, mask):
        if mask is not None or replicas_in_sync() == 1:
            return super()._moments(inputs, mask)
        axes = self._reduction_axes
        local = ops.stack([ops.mean(inputs, axis=axes), ops.mean(ops.square(inputs), axis=axes)])
        mean, mean_of_squares = ops.unstack(cross_replica_mean(local), num=2)
        return mean, ops.maximum(mean_of_squares - ops.square(mean), 0.0)
