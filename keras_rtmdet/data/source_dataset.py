"""Any `DetectionSource` as a `tf.data.Dataset` of sample dicts (decoded, not yet augmented).

An image that cannot be read or decoded while streaming (a file gone since
the source was built, a JPEG corrupt in the middle that passes the
construction check) follows the source's `on_corrupt`: `"raise"` stops with
an error naming the file, `"skip"` leaves the sample out of the stream with a
warning and records it in `source.skipped` (`decode_or_skip`,
`skip_unreadable`). A stream without such images is unchanged, element for
element.
"""

import functools
import re

import numpy as np

from keras_rtmdet.data.coco_json import CocoJsonSource
from keras_rtmdet.data.detection_source import unreadable_image
from keras_rtmdet.utils.image_io import ImageReadError


def _signature(tf, with_masks, box_columns=4):
    spec = {
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "boxes": tf.TensorSpec((None, box_columns), tf.float32),
        "labels": tf.TensorSpec((None,), tf.int32),
        "image_id": tf.TensorSpec((), tf.int64),
    }
    if with_masks:
        spec["masks"] = tf.TensorSpec((None, None, None), tf.uint8)
    return spec


def decode_image_bytes(tf, data):
    """(H, W, 3) uint8 RGB from encoded bytes, in the graph; JPEGs decoded exactly as OpenCV (the reference) does."""
    # TF's default (fast) IDCT differs from libjpeg's accurate one by up to ±5 levels.
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )
    image.set_shape((None, None, 3))
    return image


def _op_error_text(error):
    """An `OpError`'s message without TF's function-node prefix and op suffix."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
    return re.sub(r"\s*\[Op:\w+\].*$", "", text).strip()


def _second_try(tf, source, name, inputs, read, decode):
    """Host side of `decode_or_skip` for an image that failed in the graph: decode it eagerly once more.

    Returns the (H, W, 3) image if it decodes now, else applies `source.on_corrupt` (`unreadable_image`):
    raises naming the file, or returns a (0, 0, 3) image for `skip_unreadable` to drop.
    """
    name = name.decode() if isinstance(name, bytes) else str(name)
    try:
        return decode(read(tf.constant(inputs))).numpy()
    except tf.errors.OpError as error:
        reason = _op_error_text(error)
    unreadable_image(source, name, reason)
    return np.zeros((0, 0, 3), np.uint8)


def decode_or_skip(tf, source, name, inputs, read, decode):
    """(H, W, 3) uint8 `decode(read(inputs))` in the graph, following `source.on_corrupt` where that fails.

    An op error inside a tf.data function cannot be caught in the graph, and would end the whole
    iteration with an anonymous message (`jpeg::Uncompress failed`). So the decode runs in a one-element
    dataset whose `ignore_errors` leaves it empty on failure: it stays in the graph, parallel and free of
    the GIL, for about 0.15-0.2 ms of CPU per image (a 640x480 JPEG takes 1.1 ms to decode; decoding
    eagerly in a `numpy_function` instead cost 0.7 ms and the GIL). Only for a failed image does the host
    step in (`_second_try`): it names the file and raises (`on_corrupt="raise"`), or records and warns
    and returns a (0, 0, 3) image, which `skip_unreadable` drops (`"skip"`). Pixels of good images are
    `decode`'s own, unchanged.

    Args:
        name: scalar string tensor naming the image (its file, or a tfds split and image id).
        inputs: what `read` takes (a file path, or the encoded bytes themselves).
        read: inputs → encoded bytes, in the graph; decode: bytes → (H, W, 3) uint8, in the graph.
    """

    def attempt(x):
        return decode(read(x)), tf.constant(True)

    failed = tf.data.Dataset.from_tensors((tf.zeros((0, 0, 3), tf.uint8), tf.constant(False)))
    once = tf.data.Dataset.from_tensors(inputs).map(attempt).ignore_errors()
    image, decoded = once.concatenate(failed).take(1).get_single_element()

    def second_try():
        host = functools.partial(_second_try, tf, source, read=read, decode=decode)
        return tf.numpy_function(host, [name, inputs], tf.uint8, stateful=True)

    image = tf.cond(decoded, lambda: image, second_try)
    image.set_shape((None, None, 3))
    return image


def skip_unreadable(tf, ds):
    """Leave out the samples whose image could not be read (a (0, 0, 3) image, see `decode_or_skip`)."""
    return ds.filter(lambda sample: tf.size(sample["image"]) > 0)


def _coco_json_dataset(tf, source, ids, with_masks):
    """File reads and JPEG/PNG decoding in the tf.data graph, in parallel; masks through pycocotools."""
    # Masks are decoded per element in the pipeline, not all up front.
    boxes, labels, counts = source.targets(ids)
    # Each image's span of flat arrays, not `tf.ragged.constant` of a list of arrays: that fails inside a
    # tf.data function (a per-epoch flat_map) and takes a Python pass over the objects.
    boxes, labels = tf.constant(boxes), tf.constant(labels)
    table = tf.data.Dataset.from_tensor_slices(
        {
            "path": [source.image_path(i) for i in ids],
            "image_id": np.array(ids, np.int64),
            "start": np.cumsum(counts) - counts,
            "count": counts,
        }
    )

    def decode(row):
        image = decode_or_skip(
            tf, source, row["path"], row["path"], tf.io.read_file, functools.partial(decode_image_bytes, tf)
        )
        span = slice(row["start"], row["start"] + row["count"])
        sample = {"image": image, "boxes": boxes[span], "labels": labels[span], "image_id": row["image_id"]}
        if with_masks:
            masks = tf.numpy_function(
                lambda i: source.annotations(int(i), with_masks=True)["masks"], [row["image_id"]], tf.uint8
            )
            sample["masks"] = tf.ensure_shape(masks, (None, None, None))
        return sample

    return table, decode


def _sample_or_skip(source, image_id, with_masks, signature):
    """`source.sample(image_id)`, or an empty sample (a (0, 0, 3) image) for an unreadable image it skips.

    Readers through OpenCV (`read_image`) catch missing, truncated and undecodable files here, by the
    source's `on_corrupt` (`unreadable_image`); a JPEG with a corrupt middle decodes there with libjpeg
    warnings only, and is not caught.
    """
    try:
        return source.sample(image_id, with_masks=with_masks)
    except ImageReadError as error:
        unreadable_image(source, error.path, error.reason)
    return {key: np.zeros([d or 0 for d in spec.shape], spec.dtype.as_numpy_dtype) for key, spec in signature.items()}


def _box_columns(source, ids):
    """4 for xyxy boxes, 5 for rotated ones (a `DotaSource`), read off the first image's annotations."""
    return int(np.shape(source.annotations(ids[0], with_masks=False)["boxes"])[-1]) if ids else 4


def source_dataset(source, shuffle=True, seed=None, repeat=False, with_masks=None, shard=None):
    """Samples of `source` as tf.data: `{"image", "boxes", "labels", "image_id"[, "masks"]}`.

    `"boxes"` is (N, 4) xyxy, or (N, 5) rboxes for rotated sources (`DotaSource`,
    `SyntheticRotatedSource`), as the source's `annotations` give them.

    COCO JSON sources read and decode files inside the graph
    (`num_parallel_calls=AUTOTUNE`); tensorflow-datasets sources stream
    through tfds; other sources (synthetic) run their Python `sample`.
    Shuffling reorders image ids before decoding, anew each epoch.

    Args:
        source: a `DetectionSource`.
        shuffle: shuffle the order each epoch.
        seed: shuffle seed.
        repeat: repeat forever.
        with_masks: include `"masks"` (N, H, W) uint8; None: the source's
            own `with_masks`. tensorflow-datasets sources have no masks.
        shard: `(count, index)`: this process' share of the stream in data-parallel training, every
            `count`-th sample from `index` of the one order all processes draw (so they must pass the
            same `seed`; None becomes 0). Shards are disjoint and reshuffled together each epoch, as
            mmengine's `DefaultSampler`.
    """
    import tensorflow as tf

    if shard is not None:
        count, index = (int(v) for v in shard)
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} is not in [0, {count}).")
        seed = 0 if seed is None else seed

    with_masks = source.with_masks if with_masks is None else bool(with_masks)
    if hasattr(source, "training_dataset"):
        if with_masks:
            raise ValueError(f"{type(source).__name__} reads boxes only: it has no masks to train on.")
        # Sharded, or seeded to be reproduced (a resumed run), the file order must be fixed: tfds draws its own.
        ds = source.training_dataset(shuffle_files=shuffle and shard is None and seed is None)
        if shuffle:
            ds = ds.shuffle(1024, seed=seed, reshuffle_each_iteration=True)
        ds = ds.repeat() if repeat else ds
        return ds if shard is None else ds.shard(count, index)

    ids = list(source.image_ids)
    if isinstance(source, CocoJsonSource):
        ds, decode = _coco_json_dataset(tf, source, ids, with_masks)
    else:
        ds = tf.data.Dataset.from_tensor_slices(np.array(ids, np.int64))
        signature = _signature(tf, with_masks, _box_columns(source, ids))

        def decode(image_id):
            def load(i):
                sample = _sample_or_skip(source, int(i), with_masks, signature)
                return tuple(np.asarray(sample[k], spec.dtype.as_numpy_dtype) for k, spec in signature.items())

            values = tf.numpy_function(load, [image_id], [s.dtype for s in signature.values()])
            return {k: tf.ensure_shape(v, s.shape) for (k, s), v in zip(signature.items(), values)}

    if shuffle:
        ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if shard is not None:
        ds = ds.shard(count, index)
    return skip_unreadable(tf, ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE))


def samples_dataset(samples):
    """tf.data over in-memory numpy sample dicts (all with the keys of the first).

    Every dimension is dynamic but the columns of `"boxes"` (4 xyxy or 5 rotated).
    """
    import tensorflow as tf

    def shape(key, value):
        dims = [None] * np.ndim(value)
        if key == "boxes":
            dims[-1] = np.shape(value)[-1]
        return dims

    spec = {k: tf.TensorSpec(shape(k, v), tf.as_dtype(np.asarray(v).dtype)) for k, v in samples[0].items()}
    return tf.data.Dataset.from_generator(lambda: iter(samples), output_signature=spec)
