"""The training data of a whole run as one stream of batches, each epoch a function of the seed and its number.

Each epoch's batches are drawn afresh from `(seed, epoch)`: its shuffle, its
augmentation draws, its Mosaic / MixUp pools and its stage (RTMDet's light
last epochs) depend on nothing before it. So a run resumed at epoch e, step s
reads exactly the batches the uninterrupted run reads there: the stream
starts at epoch e and only the s batches already trained are computed again.
"""

import tensorflow as tf

from keras_rtmdet.data.pipeline import train_pipeline
from keras_rtmdet.data.rotated_pipeline import rotated_train_pipeline
from keras_rtmdet.data.source_dataset import source_dataset

# Seeds of consecutive epochs are `seed * EPOCH_SEED_STRIDE + epoch`: distinct for any run shorter than this.
EPOCH_SEED_STRIDE = 1_000_003
STREAM_GRAPH_SEED = 1


def epoch_seed(seed, epoch):
    """The seed of one epoch's draws (`epoch` may be a tensor)."""
    return tf.cast(seed, tf.int64) * EPOCH_SEED_STRIDE + tf.cast(epoch, tf.int64)


def training_stream(make_epoch, start_epoch, epochs, steps_per_epoch, skip_steps=0):
    """Batches of epochs `start_epoch` .. `epochs − 1`, `steps_per_epoch` from each `make_epoch(epoch)`.

    Args:
        make_epoch: epoch (int64 scalar tensor) → an endless `tf.data.Dataset` of batches.
        skip_steps: batches of the first epoch already trained (a resume inside an epoch).
    """

    def epoch_batches(epoch):
        # Sets the seed of this function's graph only. The epoch's seeds are tensors, which TF combines
        # with the graph's seed; with a global seed of 0 (`set_random_seed(0)`) that fails
        # ("symbolic Tensor as a Python bool"), and otherwise the stream would depend on the global seed.
        tf.random.set_seed(STREAM_GRAPH_SEED)
        return make_epoch(epoch).take(int(steps_per_epoch))

    stream = tf.data.Dataset.range(int(start_epoch), int(epochs)).flat_map(epoch_batches)
    return stream.skip(int(skip_steps)).prefetch(tf.data.AUTOTUNE)


def _augmentation_seed(seed, shard):
    """Each process its own augmentation draws (the shuffle seed is shared, see `source_dataset`)."""
    return seed if shard is None else seed + shard[1]


def _epoch_samples(source, seed, epoch, with_masks, shard):
    """The source's decoded samples in the epoch's order, endless (an epoch may need more than one pass)."""
    return source_dataset(
        source, shuffle=True, seed=epoch_seed(seed, epoch), repeat=True, with_masks=with_masks, shard=shard
    )


def _pipeline_options(image_size, batch_size, max_boxes, seed, shard, epoch, capped_count):
    """The arguments both recipes' pipelines take: batching, the epoch's augmentation seed, no prefetch."""
    return dict(
        image_size=image_size,
        batch_size=batch_size,
        max_boxes=max_boxes,
        seed=epoch_seed(_augmentation_seed(seed, shard), epoch),
        prefetch=False,
        capped_count=capped_count,
    )


def staged_epochs(source, with_masks, model_size, image_size, batch_size, max_boxes, seed, switch_epoch, shard):
    """`make_epoch` of RTMDet's recipe: stage 1 (Mosaic, MixUp) before `switch_epoch` (0-based), stage 2 from it."""
    capped_count = tf.Variable(0, dtype=tf.int64, trainable=False)

    def make_epoch(epoch):
        samples = _epoch_samples(source, seed, epoch, with_masks, shard)
        if samples.element_spec["boxes"].shape[-1] == 5:
            raise ValueError(
                f"{type(source).__name__} has rotated boxes (cx, cy, w, h, angle): train an RTMDetRotated on it."
            )
        options = _pipeline_options(image_size, batch_size, max_boxes, seed, shard, epoch, capped_count)
        stages = [train_pipeline(samples, model_size, stage, **options) for stage in (1, 2)]
        stage_index = tf.cast(epoch >= switch_epoch, tf.int64)
        return tf.data.Dataset.choose_from_datasets(stages, tf.data.Dataset.from_tensors(stage_index).repeat())

    return make_epoch


def rotated_epochs(source, image_size, batch_size, max_boxes, seed, rect_labels, shard):
    """`make_epoch` of MMRotate's RTMDet-R recipe (one stage)."""
    capped_count = tf.Variable(0, dtype=tf.int64, trainable=False)

    def make_epoch(epoch):
        options = _pipeline_options(image_size, batch_size, max_boxes, seed, shard, epoch, capped_count)
        return rotated_train_pipeline(
            _epoch_samples(source, seed, epoch, False, shard), rect_labels=rect_labels, **options
        )

    return make_epoch
