"""Any `DetectionSource` as a `tf.data.Dataset` of sample dicts (decoded, not yet augmented)."""

import numpy as np

from keras_rtmdet.data.coco_json import CocoJsonSource


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


def _coco_json_dataset(tf, source, ids, with_masks):
    """File reads and JPEG/PNG decoding in the tf.data graph, in parallel; masks through pycocotools."""
    # Masks are decoded per element in the pipeline, not all up front.
    annotations = [source.annotations(i, with_masks=False) for i in ids]
    table = tf.data.Dataset.from_tensor_slices(
        {
            "path": [source.image_path(i) for i in ids],
            "image_id": np.array(ids, np.int64),
            "boxes": tf.ragged.constant([a["boxes"] for a in annotations], dtype=tf.float32, ragged_rank=1, inner_shape=(4,)),
            "labels": tf.ragged.constant([a["labels"] for a in annotations], dtype=tf.int32),
        }
    )

    def decode(row):
        image = decode_image_bytes(tf, tf.io.read_file(row["path"]))
        sample = {"image": image, "boxes": row["boxes"], "labels": row["labels"], "image_id": row["image_id"]}
        if with_masks:
            masks = tf.numpy_function(
                lambda i: source.annotations(int(i), with_masks=True)["masks"], [row["image_id"]], tf.uint8
            )
            sample["masks"] = tf.ensure_shape(masks, (None, None, None))
        return sample

    return table, decode


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
        # Sharded, the file order must be the same in every process.
        ds = source.training_dataset(shuffle_files=shuffle and shard is None)
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
                sample = source.sample(int(i), with_masks=with_masks)
                return tuple(np.asarray(sample[k], spec.dtype.as_numpy_dtype) for k, spec in signature.items())

            values = tf.numpy_function(load, [image_id], [s.dtype for s in signature.values()])
            return {k: tf.ensure_shape(v, s.shape) for (k, s), v in zip(signature.items(), values)}

    if shuffle:
        ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if shard is not None:
        ds = ds.shard(count, index)
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


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
