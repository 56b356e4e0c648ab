"""PyTorch data parallelism: Keras' train step with the forward pass through `DistributedDataParallel`.

Keras' torch trainer has no DDP of its own, so a dense detector's `train_step` comes here when a
`torch.distributed` process group of several processes exists (`torchrun`, see `DataParallel`). DDP's
backward hooks all-reduce (average) the gradients in buckets while the backward pass runs; the Keras
optimizer then applies them, identically on every process, so the weights stay equal without being sent.
"""

import keras
import torch

from keras_rtmdet.distribute.replicas import cross_replica_mean

_WRAPPER = "_distributed_data_parallel"


def distributed_module(model):
    """`model` wrapped in `torch.nn.parallel.DistributedDataParallel`, made on first use.

    Making it broadcasts the chief's weights to every process, which is why it waits for the first train
    step: by then `BackupAndRestore` has restored an interrupted run's weights on every process.
    """
    ddp = model.__dict__.get(_WRAPPER)
    if ddp is None:
        device_ids = [torch.cuda.current_device()] if torch.cuda.is_available() else None
        # No buffer to keep in sync: Keras' non-trainable variables (BN statistics) are parameters without
        # gradient, equal on every process because SyncBatchNormalization computes them from the whole batch.
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        # Stored around Keras' and torch's attribute tracking: as a tracked sub-module the wrapper would make
        # the model contain itself.
        object.__setattr__(model, _WRAPPER, ddp)
    return ddp


def ddp_train_step(model, data):
    """Keras 3's torch `train_step`, with the forward pass through DDP and the logged loss averaged over processes."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred = distributed_module(model)(x, training=True)
    model.zero_grad()
    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    batch_size = next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
    # Keras' own "loss" metric (a private attribute, as in Keras' trainers).
    model._loss_tracker.update_state(cross_replica_mean(loss.detach()), sample_weight=batch_size)
    loss = model.optimizer.scale_loss(loss)
    loss.backward()
    trainable_weights = model.trainable_weights[:]
    with torch.no_grad():
        model.optimizer.apply([v.value.grad for v in trainable_weights], trainable_weights)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
