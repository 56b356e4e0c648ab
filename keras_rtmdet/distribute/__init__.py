"""Data-parallel training: `DataParallel` and the cross-replica collectives the losses and SyncBN use."""

from keras_rtmdet.distribute.data_parallel import DataParallel
from keras_rtmdet.distribute.replicas import cross_replica_mean
from keras_rtmdet.distribute.replicas import is_chief
from keras_rtmdet.distribute.replicas import process_count
from keras_rtmdet.distribute.replicas import process_rank

__all__ = ["DataParallel", "cross_replica_mean", "is_chief", "process_count", "process_rank"]
