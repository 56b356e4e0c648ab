"""Callbacks that make a training run resumable: Keras state plus the EMA."""

import os

import keras

from keras_rtmdet.training.ema import ExpMomentumEMA
from keras_rtmdet.training.run_checkpoint import BACKUP_DIR

EMA_BACKUP = "ema_backup.npz"


class RestoreOnlyBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that resumes from the backup but never writes or deletes it.

    For the non-chief processes of data-parallel training: the chief's backup holds the weights and
    optimizer state every process has, so each resumes from it while only the chief writes it.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, delete_checkpoint=False)

    def _save_model(self):
        pass


def resumable_training_callbacks(run_dir, ema=True, restore_only=False, **ema_kwargs):
    """`[BackupAndRestore, ExpMomentumEMA]` sharing one run directory.

    Run the same `fit` again with callbacks built for the same `run_dir` after
    an interruption and it goes on from the last finished epoch: weights,
    optimizer slots and iteration count (so the learning-rate schedule's
    position) come from `BackupAndRestore` (`run_dir/backup/`), the EMA
    average and counter from `run_dir/ema_backup.npz`. Both are deleted when
    `fit` ends normally.

    Args:
        run_dir: directory for the backups (created if needed).
        ema: add an `ExpMomentumEMA` (the reference trains with one).
        restore_only: read `run_dir/backup/` to resume but never write it (`RestoreOnlyBackupAndRestore`):
            a data-parallel process other than the chief.
        **ema_kwargs: forwarded to `ExpMomentumEMA` (momentum, gamma, ...).

    Returns: the list of callbacks, the EMA last (`callbacks[-1]`).
    """
    os.makedirs(run_dir, exist_ok=True)
    backup = RestoreOnlyBackupAndRestore if restore_only else keras.callbacks.BackupAndRestore
    callbacks = [backup(os.path.join(run_dir, BACKUP_DIR))]
    if ema:
        callbacks.append(ExpMomentumEMA(backup_path=os.path.join(run_dir, EMA_BACKUP), **ema_kwargs))
    elif ema_kwargs:
        raise ValueError(f"EMA settings {sorted(ema_kwargs)} given with ema=False.")
    return callbacks
