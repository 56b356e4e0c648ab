"""Random draws that are stateless when given a seed.

Every random transform takes `seed`: either `None` (TensorFlow's global,
stateful generator) or a (2,) int tensor, as `tf.random.stateless_*` expects.
The pipelines pass one seed per element (zipped from `tf.data.Dataset.random`)
so that results do not depend on the order in which parallel `map` calls run.
"""

import tensorflow as tf


def split_seed(seed, num):
    """`num` independent seeds (or `num` Nones) from one."""
    if seed is None:
        return [None] * num
    return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def fold_seed(seed, index):
    """A seed for element `index` of a group (e.g. of a mosaic pool)."""
    if seed is None:
        return None
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(index, tf.int64))


def uniform(seed, shape=(), minval=0.0, maxval=1.0, dtype=tf.float32):
    """U[minval, maxval) floats; for integer dtypes, integers in [minval, maxval)."""
    if seed is None:
        return tf.random.uniform(shape, minval, maxval, dtype)
    return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype)


def bernoulli(seed, prob, shape=()):
    """True with probability `prob`."""
    return uniform(seed, shape) < prob
