"""Scalars out of Keras logs, whatever the backend's tensor type."""

import keras
import numpy as np


def as_float(value):
    """A float for a numeric scalar (a Python number, numpy or backend tensor), None for anything else."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        return None
    try:
        array = np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:
        return None
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array.reshape(()))
