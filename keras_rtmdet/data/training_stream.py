"""The training data of a whole run as one stream of batches, each epoch a function of the seed and its number.

Each epoch's batches are drawn afresh from `(seed, epoch)`: its shuffle, its
augmentation draws, its Mosaic / MixUp pools and its stage (RTMDet's light
last epochs, a pipeline of its own from the switch epoch on) depend on
nothing before it. So a run resumed at epoch e, step s
reads exactly the batches the uninterrupted run reads there: the stream
starts at epoch e and only the s batches already trained are computed again.
"""

import tensorflow as tf

from keras_rtmdet.data.pipeline import train_pipeline
from keras_rtmdet.data.rotated_pipeline import rotated_train_pipeline
from keras_rtmdet.data.source_dataset import source_dataset

# The reference trains 300 epochs and drops Mosaic/MixUp for the last 20.
REFERENCE_EPOCHS, REFERENCE_STAGE2_EPOCHS = 300, 20
# Seeds of consecutive epochs are `seed * EPOCH_SEED_STRIDE + epoch`: distinct for any run shorter than this.
EPOCH_SEED_STRIDE = 1_000_003
STREAM_GRAPH_SEED = 1


def stage2_epochs_for(epochs):
    """The light-augmentation epochs at the end of an `epochs` run: the reference's 20/300 share, at least 1."""
    return max(1, round(epochs * REFERENCE_STAGE2_EPOCHS / REFERENCE_EPOCHS)) if epochs > 1 else 0


def epoch_seed(seed, epoch):
    """The seed of one epoch's draws (`epoch` may be a tensor)."""
    return tf.cast(seed, tf.int64) * EPOCH_SEED_STRIDE + tf.cast(epoch, tf.int64)


def training_stream(stages, start_epoch, epochs, steps_per_epoch, skip_steps=0):
    """Batches of epochs `start_epoch` .. `epochs − 1`, `steps_per_epoch` from each epoch's stage.

    Args:
        stages: `[(first_epoch, make_epoch), ...]` in epoch order, the first from epoch 0: each
            `make_epoch(epoch)` (epoch an int64 scalar tensor) gives an endless `tf.data.Dataset` of
            batches, used from its `first_epoch` to the next stage's (only the stages the run reaches
            are ever built or iterated).
        skip_steps: batches of the first epoch already trained (a resume inside an epoch).
    """
    ends = [first for first, _ in stages[1:]] + [int(epochs)]
    stream = None
    for (first, make_epoch), end in zip(stages, ends):
        low, high = max(int(first), int(start_epoch)), min(int(end), int(epochs))
        if low >= high:
            continue
        part = tf.data.Dataset.range(low, high).flat_map(_epoch_batches(make_epoch, steps_per_epoch))
        stream = part if stream is None else stream.concatenate(part)
    if stream is None:
        raise ValueError(f"No epochs to train from epoch {start_epoch} of {epochs}.")
    return stream.skip(int(skip_steps)).prefetch(tf.data.AUTOTUNE)


def _epoch_batches(make_epoch, steps_per_epoch):
    def epoch_batches(epoch):
        # Sets the seed of this function's graph only. The epoch's seeds are tensors, which TF combines
        # with the graph's seed; with a global seed of 0 (`set_random_seed(0)`) that fails
        # ("symbolic Tensor as a Python bool"), and otherwise the stream would depend on the global seed.
        tf.random.set_seed(STREAM_GRAPH_SEED)
        return make_epoch(epoch).take(int(steps_per_epoch))

    return epoch_batches


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
    """`training_stream`'s stages of RTMDet's recipe: 1 (Mosaic, MixUp) up to `switch_epoch` (0-based), then 2."""
    capped_count = tf.Variable(0, dtype=tf.int64, trainable=False)

    def stage_epochs(stage):
        def make_epoch(epoch):
            samples = _epoch_samples(source, seed, epoch, with_masks, shard)
            if samples.element_spec["boxes"].shape[-1] == 5:
                raise ValueError(
                    f"{type(source).__name__} has rotated boxes (cx, cy, w, h, angle): train an RTMDetRotated on it."
                )
            options = _pipeline_options(image_size, batch_size, max_boxes, seed, shard, epoch, capped_count)
            return train_pipeline(samples, model_size, stage, **options)

        return make_epoch

    return [(0, stage_epochs(1)), (int(switch_epoch), stage_epochs(2))]


def rotated_epochs(source, image_size, batch_size, max_boxes, seed, rect_labels, shard):
    """`training_stream`'s stages of MMRotate's RTMDet-R recipe: one."""
    capped_count = tf.Variable(0, dtype=tf.int64, trainable=False)

    def make_epoch(epoch):
        options = _pipeline_options(image_size, batch_size, max_boxes, seed, shard, epoch, capped_count)
        return rotated_train_pipeline(
            _epoch_samples(source, seed, epoch, False, shard), rect_labels=rect_labels, **options
        )

    return [(0, make_epoch)]
