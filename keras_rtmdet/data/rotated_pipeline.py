"""The RTMDet-R training input pipeline (MMRotate 1.x 36e configs, spec §7.2) as a tf.data dataset.

Per sample: drop images without objects → Resize(S, keep_ratio) →
RandomFlip(0.75; horizontal, vertical, diagonal) → RandomRotate(0.5, ±180°,
rect_obj_labels) → Pad(S, 114) → le90 regularisation (MMYOLO's
RegularizeRotatedBox; the IoU loss does not depend on it). No Mosaic, no
MixUp, no colour jitter, a single stage.

Batches are `(images, targets)`: images (B, S, S, 3) float32 RGB in 0..255;
targets `{"boxes": (B, max_boxes, 5) float32 rboxes (cx, cy, w, h, angle)
pixels / radians, "labels": (B, max_boxes) int32}`, padding rows with label
−1 and boxes 0. Every shape is static.

Differences from MMRotate, on purpose:
* Images without objects are dropped before augmenting (the reference's
  `filter_empty_gt=True`, a dataset-level filter); an image that RandomRotate
  empties is kept with no targets, as in the reference.
* Samples with more than `max_boxes` objects keep the `max_boxes` largest
  (by w·h); a message is printed the first time. MMRotate has no cap (a
  DOTA patch can hold hundreds of small vehicles: raise `max_boxes` there).
* Non-uniform resize scales move the boxes geometrically
  (`transforms.rotated.scale_rboxes`), not by MMRotate's `rescale_` formula.
"""

import tensorflow as tf

from keras_rtmdet.data.pipeline import AUTOTUNE, PAD_VALUE, map_with_seeds, to_batches
from keras_rtmdet.data.transforms.geometric import pad_to
from keras_rtmdet.data.transforms.random_ops import split_seed
from keras_rtmdet.data.transforms.rotated import (
    random_flip_rotated,
    random_rotate,
    regularize_rboxes_le90,
    resize_keep_ratio,
)

FLIP_PROB = 0.75
ROTATE_PROB = 0.5
ANGLE_RANGE = 180.0


def has_objects(sample):
    """True when the sample has at least one object (`filter_empty_gt`)."""
    return tf.size(sample["labels"]) > 0


def rotated_augment(image_size, rect_labels=(), flip_prob=FLIP_PROB, rotate_prob=ROTATE_PROB,
                    angle_range=ANGLE_RANGE, regularize=True):
    """The per-sample transforms, `augment(sample, seed) -> sample` (image (S, S, 3) uint8)."""
    rect_labels = tuple(int(label) for label in rect_labels)

    def augment(sample, seed):
        seed_flip, seed_rotate = split_seed(seed, 2)
        sample = resize_keep_ratio(sample, image_size)
        sample = random_flip_rotated(sample, flip_prob, seed_flip)
        sample = random_rotate(sample, rotate_prob, angle_range, rect_labels, seed_rotate)
        sample = pad_to(sample, (image_size, image_size), PAD_VALUE)
        if regularize:
            sample["boxes"] = regularize_rboxes_le90(sample["boxes"])
        return sample

    return augment


def _check_samples(samples):
    spec = samples.element_spec
    if not isinstance(spec, dict) or not {"image", "boxes", "labels"} <= set(spec):
        raise ValueError("rotated_train_pipeline needs sample dicts with 'image', 'boxes' and 'labels'.")
    columns = spec["boxes"].shape[-1] if spec["boxes"].shape.rank else None
    if columns != 5:
        raise ValueError(
            f"rotated_train_pipeline needs (N, 5) rotated boxes (cx, cy, w, h, angle); the samples' boxes have "
            f"shape {spec['boxes'].shape}."
        )


def rotated_train_pipeline(
    samples,
    image_size=1024,
    batch_size=8,
    max_boxes=100,
    rect_labels=(),
    seed=None,
    flip_prob=FLIP_PROB,
    rotate_prob=ROTATE_PROB,
    angle_range=ANGLE_RANGE,
    regularize=True,
    prefetch=True,
    capped_count=None,
):
    """The RTMDet-R training dataset (see the module docstring).

    Args:
        samples: `tf.data.Dataset` of decoded, unbatched sample dicts with
            `"boxes"` (N, 5) rboxes (`source_dataset` of a `DotaSource` or a
            `SyntheticRotatedSource`; shuffle there, before decoding).
        image_size: S, the square network input (the reference: 1024).
        batch_size: images per batch; the last partial batch is dropped.
        max_boxes: objects per image in the targets.
        rect_labels: labels annotated as axis-aligned boxes (DOTA: storage-tank
            9, roundabout 11): an image holding any is rotated by a multiple of 90°.
        seed: int for a reproducible stream, or None.
        flip_prob, rotate_prob, angle_range: the reference's 0.75, 0.5, 180°.
        regularize: le90-regularise the targets (w ≥ h, angle in [−π/2, π/2)).
        prefetch: end with `prefetch(AUTOTUNE)`.
        capped_count: as `train_pipeline`'s.

    Returns: a `tf.data.Dataset` of `(images, targets)`.
    """
    _check_samples(samples)
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    if batch_size < 1 or max_boxes < 1:
        raise ValueError(f"batch_size and max_boxes must be positive, got {batch_size} and {max_boxes}.")
    for name, prob in (("flip_prob", flip_prob), ("rotate_prob", rotate_prob)):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {prob!r}.")
    augment = rotated_augment(int(image_size), rect_labels, flip_prob, rotate_prob, angle_range, regularize)
    ds = map_with_seeds(samples.filter(has_objects), augment, seed)
    if capped_count is None:
        capped_count = tf.Variable(0, dtype=tf.int64, trainable=False)
    ds = to_batches(ds, batch_size, max_boxes, capped_count, box_pad_value=0.0)
    return ds.prefetch(AUTOTUNE) if prefetch else ds
