"""The RTMDet training input pipelines (reference §4.4) as tf.data datasets.

Stage 1: CachedMosaic -> RandomResize(2S scale) -> RandomCrop(S) -> YOLOX HSV
-> RandomFlip -> Pad(S) -> CachedMixUp [-> FilterAnnotations]. Stage 2 (the
last 20 epochs): RandomResize(S scale) -> RandomCrop(S) [-> FilterAnnotations]
-> HSV -> Flip -> Pad. S = image_size; the bracketed step is Ins only
(samples with masks).

Batches are `(images, targets)`: images (B, S, S, 3) float32 RGB in 0..255;
targets `{"boxes": (B, max_boxes, 4) float32 xyxy px, "labels": (B, max_boxes)
int32}` padded with -1. Samples with masks add, every shape static:

* `"masks"`: (B, max_boxes, S/k, S/k) uint8 0/1, k = `mask_stride`: the
  augmented full-resolution (S × S) masks sampled at the pixels
  [k//2::k, k//2::k] (k = 4: the pixels the reference's Dice loss compares
  with its stride-4 predictions). Padding instances are all 0. At k = 1 the
  masks stay full resolution: 32 x 100 x 640² bytes is 1.3 GB per batch,
  against 82 MB at k = 4.
* `"mask_centers"`: (B, max_boxes, 2) float32 (x, y) centre of mass of each
  full-resolution mask in integer pixel indices (no +0.5), as mmdet's
  `center_of_mass` (the assigner's centre prior); 0 for padding and for
  empty masks.

Both are computed per sample after every augmentation (and after the
`max_boxes` cap), before batching.

Differences from mmdet, on purpose:
* A det RandomCrop that keeps no box rejects the sample (mmdet re-draws
  another index), so an epoch has slightly fewer samples. Likewise for an
  Ins sample that FilterAnnotations empties.
* Samples with more than `max_boxes` objects keep the `max_boxes` largest
  (by box area); a message is printed the first time it happens.
* Ins (samples with masks) crops with recompute_bbox and negative crops
  allowed, except tiny's stage 1, which keeps the reference's settings
  (reference §6.3). FilterAnnotations(min_gt_bbox_wh=(1, 1)) keeps boxes
  wider and taller than 1 px; a sample it empties is dropped (mmdet's
  keep_empty=True), one that had no box is kept.
"""

import sys

import tensorflow as tf

from keras_rtmdet.data.transforms import box_utils
from keras_rtmdet.data.transforms.geometric import pad_to, random_flip, random_resize_crop
from keras_rtmdet.data.transforms.mask_targets import add_mask_targets
from keras_rtmdet.data.transforms.mosaic_mixup import cached_mixup, cached_mosaic
from keras_rtmdet.data.transforms.photometric import yolox_hsv
from keras_rtmdet.data.transforms.random_ops import split_seed

AUTOTUNE = tf.data.AUTOTUNE
PAD_VALUE = 114
# FilterAnnotations(min_gt_bbox_wh) of the Ins recipe.
MIN_GT_BBOX_WH = (1.0, 1.0)

_BIG = {"ratio_range": (0.1, 2.0), "mosaic_pool_size": 40, "mixup_pool_size": 20, "mixup_prob": 1.0}
RECIPES = {
    "tiny": {"ratio_range": (0.5, 2.0), "mosaic_pool_size": 20, "mixup_pool_size": 10, "mixup_prob": 0.5},
    "s": {"ratio_range": (0.5, 2.0), "mosaic_pool_size": 40, "mixup_pool_size": 20, "mixup_prob": 1.0},
    "m": dict(_BIG),
    "l": dict(_BIG),
    "x": dict(_BIG),
}


def get_recipe(model_size, overrides=None):
    if model_size not in RECIPES:
        raise ValueError(f"model_size must be one of {sorted(RECIPES)}, got {model_size!r}.")
    recipe = dict(RECIPES[model_size])
    unknown = set(overrides or {}) - set(recipe)
    if unknown:
        raise ValueError(f"Unknown recipe keys {sorted(unknown)}; known: {sorted(recipe)}.")
    recipe.update(overrides or {})
    return recipe


def crop_options(model_size, stage, with_masks):
    """(allow_negative_crop, recompute_bbox) of the reference's RandomCrop."""
    instance_crop = with_masks and not (model_size == "tiny" and stage == 1)
    return instance_crop, instance_crop


def _derived_seed(seed, offset):
    return None if seed is None else seed + offset


def map_with_seeds(ds, fn, seed):
    """`ds.map(fn(sample, seed))` with a fresh (2,) stateless seed per element."""
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(fn, num_parallel_calls=AUTOTUNE)


def cap_instances(sample, max_boxes, capped_count=None):
    """Keep the `max_boxes` largest instances (original order) when there are more.

    `capped_count`: optional int64 `tf.Variable` counting the capped samples;
    the first one prints a message (tf.data graphs cannot raise Python
    warnings; the atomic increment makes "first" unique across parallel calls).
    """
    boxes = sample["boxes"]
    too_many = tf.shape(boxes)[0] > max_boxes

    def cap():
        _, largest = tf.math.top_k(box_utils.box_areas(boxes), k=max_boxes)
        return box_utils.gather_instances(sample, tf.sort(largest))

    out = tf.cond(too_many, cap, lambda: dict(sample))
    if capped_count is None:
        return out

    def count_and_warn():
        count = capped_count.assign_add(1, read_value=True)

        def warn():
            message = tf.print(
                f"keras_rtmdet: a training sample has more than max_boxes={max_boxes} objects; "
                "keeping the largest (printed once).",
                output_stream=sys.stderr,
            )
            with tf.control_dependencies([message]):
                return tf.identity(count)

        # tf.equal, not ==: under a MirroredStrategy the counter is a mirrored variable, and == on it is Python's.
        return tf.cond(tf.equal(count, 1), warn, lambda: tf.identity(count))

    done = tf.cond(too_many, count_and_warn, lambda: tf.constant(0, tf.int64))
    with tf.control_dependencies([done]):
        out["labels"] = tf.identity(out["labels"])
    return out


def pad_instances(sample, max_boxes, box_pad_value=-1.0):
    """Pad boxes with `box_pad_value`, labels with -1 (masks and mask centres with 0) to exactly `max_boxes`.

    Boxes keep their static number of columns (4 xyxy, 5 rotated), masks their
    static height and width.
    """
    pad = max_boxes - tf.shape(sample["labels"])[0]
    out = dict(sample)
    boxes = tf.pad(sample["boxes"], [[0, pad], [0, 0]], constant_values=box_pad_value)
    out["boxes"] = tf.ensure_shape(boxes, [max_boxes, sample["boxes"].shape[-1]])
    out["labels"] = tf.ensure_shape(tf.pad(sample["labels"], [[0, pad]], constant_values=-1), [max_boxes])
    if "masks" in sample:
        masks = tf.pad(sample["masks"], [[0, pad], [0, 0], [0, 0]])
        out["masks"] = tf.ensure_shape(masks, [max_boxes, *sample["masks"].shape[1:]])
    if "mask_centers" in sample:
        centers = tf.pad(sample["mask_centers"], [[0, pad], [0, 0]])
        out["mask_centers"] = tf.ensure_shape(centers, [max_boxes, 2])
    return out


def _augment(model_size, stage, image_size, ratio_range, with_masks):
    """The per-sample part: RandomResize -> RandomCrop [-> FilterAnnotations in stage 2 of Ins]
    -> HSV -> Flip -> Pad, returning (sample, keep)."""
    scale = (2 * image_size,) * 2 if stage == 1 else (image_size,) * 2
    allow_negative_crop, recompute_bbox = crop_options(model_size, stage, with_masks)
    filter_after_crop = with_masks and stage == 2

    def augment(sample, seed):
        seed_resize, seed_crop, seed_hsv, seed_flip = split_seed(seed, 4)
        # RandomResize -> RandomCrop, computing only the crop window (same draws as the two steps).
        sample, keep = random_resize_crop(
            sample, scale, ratio_range, (image_size, image_size), allow_negative_crop, recompute_bbox,
            seeds=(seed_resize, seed_crop),
        )
        if filter_after_crop:
            sample, big_enough = box_utils.filter_small_boxes(sample, MIN_GT_BBOX_WH)
            keep = tf.logical_and(keep, big_enough)
        sample = yolox_hsv(sample, seed=seed_hsv)
        sample = random_flip(sample, 0.5, seed_flip)
        return pad_to(sample, (image_size, image_size), PAD_VALUE), keep

    return augment


def _filter_annotations(sample):
    return box_utils.filter_small_boxes(sample, MIN_GT_BBOX_WH)


def _is_kept(sample, keep):
    return keep


def _drop_keep(sample, keep):
    return sample


def to_batches(ds, batch_size, max_boxes, capped_count, mask_stride=4, box_pad_value=-1.0):
    """Cap, pad and batch augmented samples into `(images float32, targets)` with static shapes."""

    def finish(sample):
        sample = add_mask_targets(cap_instances(sample, max_boxes, capped_count), mask_stride)
        return pad_instances(sample, max_boxes, box_pad_value)

    ds = ds.map(finish, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE)

    def split(batch):
        targets = {key: batch[key] for key in ("boxes", "labels", "masks", "mask_centers") if key in batch}
        return tf.cast(batch["image"], tf.float32), targets

    return ds.map(split, num_parallel_calls=AUTOTUNE)


def train_pipeline(
    samples,
    model_size="s",
    stage=1,
    image_size=640,
    batch_size=32,
    max_boxes=100,
    seed=None,
    shuffle_buffer=512,
    recipe=None,
    prefetch=True,
    mask_stride=4,
    capped_count=None,
):
    """The training dataset of one stage.

    Args:
        samples: `tf.data.Dataset` of decoded, unbatched sample dicts.
        model_size: "tiny", "s", "m", "l" or "x" (selects `RECIPES`).
        stage: 1 (Mosaic + MixUp) or 2 (no Mosaic, no MixUp).
        image_size: S, the square network input (the reference: 640).
        batch_size: images per batch; the last partial batch is dropped so
            that every batch has a static shape.
        max_boxes: instances per image in the targets.
        seed: int for a reproducible stream, or None.
        shuffle_buffer: samples shuffled before the first transform (0: none).
            Decoded images are large; shuffling ids before decoding and
            passing 0 is cheaper. The Mosaic/MixUp pools need shuffled input.
        recipe: dict overriding entries of `RECIPES[model_size]` (e.g. small
            pools in tests).
        prefetch: end with `prefetch(AUTOTUNE)`.
        mask_stride: k of the mask targets (samples with masks only): masks
            sampled at [k//2::k, k//2::k]; 4 is what the reference's loss
            uses, 1 keeps full resolution. `image_size` must be a multiple.
        capped_count: int64 `tf.Variable` counting the samples capped at
            `max_boxes` (created here if None; pass one made outside to build the
            pipeline inside a dataset function, where variables cannot be made).

    Returns: a `tf.data.Dataset` of `(images, targets)`, see the module docstring.
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}.")
    recipe = get_recipe(model_size, recipe)
    with_masks = "masks" in samples.element_spec
    if isinstance(mask_stride, bool) or int(mask_stride) != mask_stride or mask_stride < 1:
        raise ValueError(f"mask_stride must be a positive integer, got {mask_stride!r}.")
    if with_masks and image_size % mask_stride:
        raise ValueError(f"image_size {image_size} is not a multiple of mask_stride {mask_stride}.")
    ds = samples
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    if stage == 1:
        ds = ds.apply(
            cached_mosaic(image_size, recipe["mosaic_pool_size"], pad_val=PAD_VALUE, seed=_derived_seed(seed, 1))
        )
    augment = _augment(model_size, stage, image_size, recipe["ratio_range"], with_masks)
    ds = map_with_seeds(ds, augment, _derived_seed(seed, 2))
    ds = ds.filter(_is_kept).map(_drop_keep, num_parallel_calls=AUTOTUNE)
    if stage == 1:
        mixup = cached_mixup(
            image_size,
            recipe["mixup_pool_size"],
            prob=recipe["mixup_prob"],
            pad_val=PAD_VALUE,
            seed=_derived_seed(seed, 3),
        )
        ds = ds.apply(mixup)
        if with_masks:
            ds = ds.map(_filter_annotations, num_parallel_calls=AUTOTUNE).filter(_is_kept)
            ds = ds.map(_drop_keep, num_parallel_calls=AUTOTUNE)
    if capped_count is None:
        capped_count = tf.Variable(0, dtype=tf.int64, trainable=False)
    ds = to_batches(ds, batch_size, max_boxes, capped_count, int(mask_stride))
    return ds.prefetch(AUTOTUNE) if prefetch else ds


def choose_stage(datasets, stage_variable):
    """Each element from `datasets[stage_variable]`, the variable read per element.

    The selector is a sequential `map`, so a new value is seen at the next
    element pulled; what later transformations buffered (prefetch) was
    produced before. tf.data's `inject_prefetch` optimisation would put a
    prefetch behind the selector and delay the switch by a few elements, so
    it is turned off (options apply to the whole pipeline; the pipelines
    prefetch explicitly).
    """
    selector = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()
    selector = selector.map(lambda _: tf.cast(stage_variable.read_value(), tf.int64))
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    return tf.data.Dataset.choose_from_datasets(datasets, selector.with_options(options))


def staged_train_pipeline(samples, stage_variable, model_size="s", **kwargs):
    """Stage 1 while `stage_variable` (int `tf.Variable`) is 0, stage 2 once it is 1.

    Use with `PipelineSwitch` (keras_rtmdet.data.pipeline_switch). `kwargs`
    are those of `train_pipeline` (except `stage`). The stream ends when the
    selected stage's dataset ends (one epoch of it).
    """
    stages = [train_pipeline(samples, model_size, stage, prefetch=False, **kwargs) for stage in (1, 2)]
    return choose_stage(stages, stage_variable).prefetch(AUTOTUNE)
