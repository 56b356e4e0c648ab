"""CachedMosaic and CachedMixUp as tf.data dataset transformations.

mmdet keeps a cache of the last `max_cached_images` samples (popping a random
or the oldest entry when full) and draws the partners of each sample from it.
A cache is state shared across elements, which a parallel `map` cannot hold,
so here the cache is a *pool*: `pool_size` consecutive samples are batched
(`padded_batch`), every sample of the pool is combined with partners drawn at
random from that same pool (itself included, as in mmdet), and the pool is
unbatched again, so as many samples come out as go in. `pool_size` plays the
part of `max_cached_images` (Mosaic 40, tiny 20; MixUp 20, tiny 10); with the
input shuffled, a pool is a random subset of the data, which is what the
random pop approximates (tiny's FIFO cache, `random_pop=False`, differs only
in which recent samples are eligible). mmdet skips Mosaic while its cache
holds <= 4 samples and MixUp while it holds <= 1; a pool always mixes.

Usage: `ds.apply(cached_mosaic(img_scale=640, pool_size=40))`.

Inside a pool the instances are padded with label -1 (boxes -1) and images
with 0 up to the largest image; `pool_member` strips the padding again.
"""

import tensorflow as tf

from keras_rtmdet.data.transforms import box_utils
from keras_rtmdet.data.transforms.geometric import flip_horizontal, image_size, place_on_canvas, resize_sample
from keras_rtmdet.data.transforms.random_ops import fold_seed, split_seed, uniform

_SIZE_KEY = "_size"


def _padding_values(element_spec):
    values = {}
    for key, spec in element_spec.items():
        fill = -1 if key in ("boxes", "labels") else 0
        values[key] = tf.constant(fill, spec.dtype)
    return values


def pooled(ds, pool_size):
    """Batch `pool_size` samples into one padded pool (dict of stacked tensors)."""
    ds = ds.map(lambda s: {**s, _SIZE_KEY: tf.shape(s["image"])[:2]}, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.padded_batch(pool_size, padding_values=_padding_values(ds.element_spec))


def pool_member(pool, index):
    """Sample `index` of a pool, with the image and instance padding removed."""
    h, w = pool[_SIZE_KEY][index][0], pool[_SIZE_KEY][index][1]
    valid = pool["labels"][index] >= 0
    sample = {
        "image": pool["image"][index, :h, :w],
        "boxes": tf.boolean_mask(pool["boxes"][index], valid),
        "labels": tf.boolean_mask(pool["labels"][index], valid),
        "image_id": pool["image_id"][index],
    }
    if "masks" in pool:
        sample["masks"] = tf.boolean_mask(pool["masks"][index][:, :h, :w], valid)
    return sample


def per_pool_member(build, pool_size, seed=None):
    """Dataset transformation: pool, then `build(pool, index, seed)` for every member, in order."""

    def expand(pool, pool_seed):
        count = tf.shape(pool["image_id"], out_type=tf.int64)[0]
        members = tf.data.Dataset.range(count)
        return members.map(
            lambda i: build(pool, tf.cast(i, tf.int32), fold_seed(pool_seed, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def apply(ds):
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        return tf.data.Dataset.zip((pooled(ds, pool_size), seeds)).flat_map(expand)

    return apply


def _concat_instances(samples):
    out = {key: tf.concat([s[key] for s in samples], axis=0) for key in ("boxes", "labels")}
    if "masks" in samples[0]:
        out["masks"] = tf.concat([s["masks"] for s in samples], axis=0)
    return out


def _place_masks(masks, top, left, height, width):
    """(N, h, w) masks placed like `place_on_canvas`, as (N, height, width)."""
    channels_last = tf.transpose(masks, [1, 2, 0])
    return tf.transpose(place_on_canvas(channels_last, top, left, height, width, 0), [2, 0, 1])


def _fit_size(height, width, target_h, target_w):
    """mmdet's Mosaic/MixUp resize: ratio min(target_h/h, target_w/w) and int() sizes."""
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    ratio = tf.minimum(tf.cast(target_h, tf.float64) / h, tf.cast(target_w, tf.float64) / w)
    new_h = tf.maximum(tf.cast(tf.floor(h * ratio), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.floor(w * ratio), tf.int32), 1)
    return new_h, new_w, tf.cast(ratio, tf.float32)


def mosaic(samples, center_x, center_y, img_scale=640, pad_val=114):
    """Combine 4 samples on a (2·img_scale)² canvas of `pad_val` around (center_x, center_y).

    mmdet `Mosaic._mosaic_combine`: sample k is resized by min(S/h, S/w)
    (int() sizes, bilinear) and put with its bottom-right (k=0), bottom-left
    (1), top-right (2) or top-left (3) corner on the centre; what leaves the
    canvas is cut. Boxes are scaled by the ratio, translated, clipped to the
    canvas and filtered with `is_inside`; masks are resized (nearest, to the
    image's size) and translated the same way. The image_id is samples[0]'s.
    """
    size = 2 * img_scale
    regions = []
    instances = []
    for k, sample in enumerate(samples):
        h, w = image_size(sample)
        new_h, new_w, ratio = _fit_size(h, w, img_scale, img_scale)
        resized = resize_sample(sample, new_h, new_w, box_scale=(ratio, ratio))
        left = center_x - new_w if k in (0, 2) else center_x
        top = center_y - new_h if k in (0, 1) else center_y
        # The four images never overlap: each fills only its quadrant of the canvas.
        region_left = 0 if k in (0, 2) else center_x
        region_top = 0 if k in (0, 1) else center_y
        region_w = center_x if k in (0, 2) else size - center_x
        region_h = center_y if k in (0, 1) else size - center_y
        regions.append(
            place_on_canvas(resized["image"], top - region_top, left - region_left, region_h, region_w, pad_val)
        )
        placed = {"labels": resized["labels"], "boxes": box_utils.translate_boxes(resized["boxes"], left, top)}
        if "masks" in sample:
            placed["masks"] = _place_masks(resized["masks"], top, left, size, size)
        instances.append(placed)
    top_row = tf.concat(regions[:2], axis=1)
    bottom_row = tf.concat(regions[2:], axis=1)
    out = _concat_instances(instances)
    out["image"] = tf.ensure_shape(tf.concat([top_row, bottom_row], axis=0), [size, size, 3])
    out["image_id"] = samples[0]["image_id"]
    out["boxes"] = box_utils.clip_boxes(out["boxes"], size, size)
    if "masks" in out:
        out["masks"] = tf.ensure_shape(out["masks"], [None, size, size])
    return box_utils.filter_instances(out, box_utils.is_inside(out["boxes"], size, size))


def cached_mosaic(img_scale=640, pool_size=40, center_ratio_range=(0.5, 1.5), pad_val=114, seed=None):
    """Dataset transformation: mmdet `CachedMosaic` with a pool of `pool_size` as the cache.

    Output images are (2·img_scale, 2·img_scale, 3) uint8.
    """

    def build(pool, index, member_seed):
        seed_partners, seed_x, seed_y = split_seed(member_seed, 3)
        count = tf.shape(pool["image_id"])[0]
        partners = uniform(seed_partners, (3,), 0, count, tf.int32)
        samples = [pool_member(pool, index)] + [pool_member(pool, partners[k]) for k in range(3)]
        low, high = center_ratio_range
        center_x = tf.cast(tf.floor(uniform(seed_x, (), low, high, tf.float64) * img_scale), tf.int32)
        center_y = tf.cast(tf.floor(uniform(seed_y, (), low, high, tf.float64) * img_scale), tf.int32)
        return mosaic(samples, center_x, center_y, img_scale, pad_val)

    return per_pool_member(build, pool_size, seed)


def mixup(sample, partner, flip, pad_val=114):
    """mmdet `MixUp` with ratio_range (1, 1): blend `partner` into `sample` 0.5/0.5.

    The partner is resized to fit the sample's image (min ratio, int() sizes),
    pasted top-left on `pad_val`, mirrored over the whole canvas if `flip`,
    then averaged in float and truncated to uint8. Instances: the sample's,
    then the partner's (clipped), filtered with `is_inside`.
    """
    height, width = image_size(sample)
    h, w = image_size(partner)
    new_h, new_w, ratio = _fit_size(h, w, height, width)
    resized = resize_sample(partner, new_h, new_w, box_scale=(ratio, ratio))
    placed = {
        "image": place_on_canvas(resized["image"], 0, 0, height, width, pad_val),
        "boxes": box_utils.clip_boxes(resized["boxes"], height, width),
        "labels": resized["labels"],
    }
    if "masks" in partner:
        placed["masks"] = _place_masks(resized["masks"], 0, 0, height, width)
    placed = tf.cond(flip, lambda: flip_horizontal(placed), lambda: dict(placed))
    blend = 0.5 * tf.cast(sample["image"], tf.float32) + 0.5 * tf.cast(placed["image"], tf.float32)
    out = _concat_instances([sample, placed])
    out["image"] = tf.cast(blend, tf.uint8)
    out["image_id"] = sample["image_id"]
    return box_utils.filter_instances(out, box_utils.is_inside(out["boxes"], height, width))


def cached_mixup(img_scale=640, pool_size=20, prob=1.0, flip_ratio=0.5, pad_val=114, seed=None):
    """Dataset transformation: mmdet `CachedMixUp` with a pool as the cache.

    Inputs must already be padded to img_scale x img_scale. With probability
    `prob`, the partner is drawn uniformly among the pool's samples that have
    boxes (mmdet retries up to 15 random picks; the sample is left as it is
    when none has boxes), flipped with probability `flip_ratio`.
    """

    def build(pool, index, member_seed):
        seed_apply, seed_pick, seed_flip = split_seed(member_seed, 3)
        sample = pool_member(pool, index)
        has_boxes = tf.reduce_any(pool["labels"] >= 0, axis=1)
        scores = tf.where(has_boxes, uniform(seed_pick, tf.shape(has_boxes)), -1.0)
        partner = tf.argmax(scores, output_type=tf.int32)
        apply = (uniform(seed_apply) < prob) & tf.reduce_any(has_boxes)
        flip = uniform(seed_flip) < flip_ratio
        out = tf.cond(apply, lambda: mixup(sample, pool_member(pool, partner), flip, pad_val), lambda: dict(sample))
        out["image"] = tf.ensure_shape(out["image"], [img_scale, img_scale, 3])
        if "masks" in out:
            out["masks"] = tf.ensure_shape(out["masks"], [None, img_scale, img_scale])
        return out

    return per_pool_member(build, pool_size, seed)
