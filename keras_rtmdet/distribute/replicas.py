"""What a data-parallel replica needs to know about the others: the one backend-specific module of training.

Three engines, three meanings of "replica":

* JAX, `keras.distribution.DataParallel`: one SPMD program over global arrays. A sum over the batch is already
  a sum over every device's shard, so there is nothing to reduce: `cross_replica_mean` is the identity and
  `replicas_in_sync` is 1 (the program sees one replica holding the whole batch).
* TensorFlow, `tf.distribute.MirroredStrategy`: the train step runs once per device (a replica context) on
  that device's slice of the batch; the optimizer sums the replicas' gradients.
* PyTorch, DDP under `torchrun`: one process per device, each with its own slice; DDP averages gradients.

Every function here is a no-op outside data-parallel training, so the model, loss and BatchNorm code call
them unconditionally.
"""

import functools

import keras
import numpy as np


def _backend():
    return keras.backend.backend()


def _tf_replica_context():
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None


def torch_process_group_size():
    """World size of the initialised `torch.distributed` process group (1 without one)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def process_count():
    """Training processes that each read their own share of the data: torch's world size, else 1."""
    return torch_process_group_size() if _backend() == "torch" else 1


def process_rank():
    """This process' index among `process_count()` (0 is the chief, the one that writes files)."""
    if _backend() == "torch" and torch_process_group_size() > 1:
        import torch.distributed as dist

        return dist.get_rank()
    return 0


def is_chief():
    return process_rank() == 0


def replicas_in_sync():
    """Replicas computing parts of the current step, whose sums must be combined (1 on JAX: it computes it whole).

    On TensorFlow, only inside a replica context (the train step under `strategy.run`); outside it there is
    nothing to combine.
    """
    backend = _backend()
    if backend == "tensorflow":
        context = _tf_replica_context()
        return 1 if context is None else context.num_replicas_in_sync
    if backend == "torch":
        return torch_process_group_size()
    return 1


def local_replica_count():
    """Devices each batch of this process is split over: TF's mirrored replicas, JAX's mesh, 1 on torch."""
    backend = _backend()
    if backend == "jax":
        distribution = keras.distribution.distribution()
        return 1 if distribution is None else int(np.prod(distribution.device_mesh.shape))
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync
    return 1


def data_parallel_size():
    """Devices each global batch is split over: `local_replica_count()` on each of `process_count()`."""
    return local_replica_count() * process_count()


def cross_replica_mean(x):
    """The mean of `x` over the replicas of this train step (mmdet's `reduce_mean`), differentiable.

    `x` itself with a single replica. Every replica must call it, in the same order (it is a collective).
    """
    backend = _backend()
    if backend == "tensorflow":
        context = _tf_replica_context()
        if context is None:
            return x
        import tensorflow as tf

        return context.all_reduce(tf.distribute.ReduceOp.MEAN, x)
    if backend == "torch":
        world = torch_process_group_size()
        if world == 1:
            return x
        return _torch_all_reduce_sum(x) / world
    return x


def _torch_all_reduce_sum(x):
    return _torch_all_reduce_function().apply(x)


@functools.cache
def _torch_all_reduce_function():
    """A differentiable all-reduce sum: the gradient of a sum over processes is the sum of their gradients.

    torch's own (`torch.distributed.nn.functional.all_reduce`) is deprecated from 2.13 and its successor in
    `_functional_collectives` has autograd only in recent releases; this is the same two collectives.
    """
    import torch
    import torch.distributed as dist

    class AllReduceSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            value = value.clone()
            dist.all_reduce(value)
            return value

        @staticmethod
        def backward(ctx, grad):
            grad = grad.clone()
            dist.all_reduce(grad)
            return grad

    return AllReduceSum


def scale_loss_for_gradient_sum(loss):
    """`loss / replicas` where the optimizer sums the replicas' gradients (TensorFlow), else `loss`.

    With it, each replica's loss of "local sum / cross-replica mean normaliser" gives the gradient of the
    whole batch's loss on every engine (DDP averages gradients; JAX computes the whole batch in one program).
    """
    if _backend() == "tensorflow":
        context = _tf_replica_context()
        if context is not None:
            return loss / context.num_replicas_in_sync
    return loss
