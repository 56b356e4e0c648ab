"""`DataParallel`: train a dense detector over several devices with the engine each backend has."""

import datetime
import os

import keras

from keras_rtmdet.distribute import replicas

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DataParallel:
    """Data-parallel training on this host's devices: each replica trains on its share of every batch.

    Build, compile and train the model inside the block::

        with keras_rtmdet.distribute.DataParallel() as parallel:   # every local GPU
            model = keras_rtmdet.RTMDet.from_preset("rtmdet_s_coco")
            train_rtmdet(model, source, "runs/s", epochs=300, batch_size=256)  # 256 images a step in all

    The batch size is the global one, as in the reference's configs (8 GPUs × 32 = 256 and the learning
    rate scaled for 256); it must be a multiple of `num_replicas`. What each backend runs:

    * JAX: `keras.distribution.DataParallel` over `devices`, set as the global distribution in the block.
      One SPMD program: batch sums, the loss normaliser and the BatchNorm statistics are global by nature.
    * TensorFlow: `tf.distribute.MirroredStrategy(devices)`, entered as the scope. The train step runs per
      replica; the loss normaliser (Σ assign metrics, mask positives) is averaged over the replicas as
      mmdet's `reduce_mean`, BatchNorm is `SyncBatchNormalization`, gradients are summed by the optimizer.
    * PyTorch: one process per GPU, launched by `torchrun --nproc-per-node N script.py` (or
      `torchrun --nproc-per-node N -m keras_rtmdet_cli train ...`). Entering joins the process group that
      torchrun describes (NCCL on GPUs, gloo on CPU) and pins the process to its `LOCAL_RANK` GPU; the
      detector's train step runs through `DistributedDataParallel`, normaliser and BatchNorm as on TF;
      `train_rtmdet` gives each process `1/N` of the images and of the batch. `devices` must be left out
      (the processes are the devices). Outside torchrun this is one process and a no-op.

    The EMA, checkpoints, logs and evaluation stay single-copy: with several processes only the chief
    (rank 0) keeps an EMA and writes files; the others read an interrupted run's backup to resume with it.

    Args:
        devices: JAX / TensorFlow: how many local devices (the first N), or their names
            (`"gpu:0"` for JAX, `"/gpu:0"` for TF); default every GPU, else every CPU device.
        timeout_minutes: PyTorch: how long a process waits in a collective for the others, e.g. while the
            chief evaluates COCO between epochs (torch's default is 10 minutes).
    """

    def __init__(self, devices=None, timeout_minutes=60):
        self.devices = devices
        self.timeout_minutes = timeout_minutes
        self._exit = None

    @property
    def num_replicas(self):
        """Devices each global batch is split over, while the block is open."""
        return replicas.data_parallel_size()

    @property
    def rank(self):
        return replicas.process_rank()

    @property
    def is_chief(self):
        return replicas.is_chief()

    def __enter__(self):
        if self._exit is not None:
            raise RuntimeError("This DataParallel block is already open.")
        backend = keras.backend.backend()
        enter = {"jax": self._enter_jax, "tensorflow": self._enter_tensorflow, "torch": self._enter_torch}.get(backend)
        if enter is None:
            raise NotImplementedError(f"DataParallel supports the jax, tensorflow and torch backends, not {backend}.")
        enter()
        return self

    def __exit__(self, *exc_info):
        exit_block, self._exit = self._exit, None
        if exit_block is not None:
            exit_block(*exc_info)
        return False

    def _enter_jax(self):
        names = _chosen(self.devices, _jax_devices())
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=names))
        self._exit = lambda *_: keras.distribution.set_distribution(previous)

    def _enter_tensorflow(self):
        import tensorflow as tf

        available = [d.name for d in tf.config.list_logical_devices("GPU")]
        available = available or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(_chosen(self.devices, available))
        scope = strategy.scope()
        scope.__enter__()
        self.strategy = strategy
        self._exit = scope.__exit__

    def _enter_torch(self):
        import torch
        import torch.distributed as dist

        if self.devices is not None:
            raise ValueError(
                "With the torch backend the replicas are processes: leave `devices` out and launch the "
                "script with `torchrun --nproc-per-node N`."
            )
        if "WORLD_SIZE" not in os.environ:
            self._exit = lambda *_: None
            return
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        if missing:
            raise ValueError(f"torch data parallelism needs torchrun's environment; {missing} are not set.")
        created = not dist.is_initialized()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        if created:
            dist.init_process_group(
                backend="nccl" if torch.cuda.is_available() else "gloo",
                timeout=datetime.timedelta(minutes=self.timeout_minutes),
            )

        def leave(*_):
            if created and dist.is_initialized():
                dist.destroy_process_group()

        self._exit = leave


def _jax_devices():
    """The GPUs, else the default platform's devices (the CPUs' on a machine without accelerator)."""
    try:
        return keras.distribution.list_devices("gpu")
    except RuntimeError:
        return keras.distribution.list_devices()


def _chosen(devices, available):
    """`devices` (None: all, an int: the first N, else names) checked against `available`."""
    if devices is None:
        return list(available)
    if isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ValueError(f"{devices} devices asked for, {len(available)} available: {available}.")
        return list(available[:devices])
    return list(devices)
