"""Telling dataset inputs of `predict` (already preprocessed) from raw images."""

import keras


def is_dataset(x):
    """True for a `keras.utils.PyDataset` or a `tf.data` dataset."""
    if isinstance(x, keras.utils.PyDataset):
        return True
    module = type(x).__module__
    return module.startswith("tensorflow") and "data" in module
