"""RTMDet-Ins mask targets, computed per sample once the augmentations are done.

The reference's Dice loss compares each positive's predicted mask at stride 4
(160² at 640) with its gt mask at the padded input resolution sampled at the
pixels [2::4, 2::4], and its assigner uses each gt's centre of mass on the
full-resolution mask (mmdet `center_of_mass`, reference §4.1-4.2). Both need
only the full-resolution masks of one sample, so they are computed here and
the batches carry (N, S/4, S/4) masks instead of (N, S, S): 16× fewer bytes.
"""

import tensorflow as tf

# mmdet `center_of_mass`'s eps: an empty mask has its centre at (0, 0).
CENTER_EPS = 1e-7


def mask_centers(masks):
    """(N, H, W) 0/1 masks → (N, 2) float32 (x, y) centres of mass, in pixel indices.

    As mmdet `center_of_mass(masks, eps=1e-7)`: x = Σ x·m / max(Σ m, 1e-7)
    with x the integer column index (no +0.5), likewise y. The sums are
    integers, exact (int64, as torch sums integer masks), then divided in
    float32.
    """
    masks = tf.cast(masks, tf.int32)
    columns = tf.cast(tf.reduce_sum(masks, axis=1), tf.int64)  # (N, W) pixels per column
    rows = tf.cast(tf.reduce_sum(masks, axis=2), tf.int64)  # (N, H) pixels per row
    xs = tf.range(tf.shape(columns, out_type=tf.int64)[1], dtype=tf.int64)
    ys = tf.range(tf.shape(rows, out_type=tf.int64)[1], dtype=tf.int64)
    area = tf.maximum(tf.cast(tf.reduce_sum(columns, axis=1), tf.float32), CENTER_EPS)
    center_x = tf.cast(tf.reduce_sum(columns * xs, axis=1), tf.float32) / area
    center_y = tf.cast(tf.reduce_sum(rows * ys, axis=1), tf.float32) / area
    return tf.stack([center_x, center_y], axis=-1)


def subsample_masks(masks, stride):
    """(N, H, W) → (N, ⌈(H − o)/stride⌉, ⌈(W − o)/stride⌉), the pixels [o::stride, o::stride], o = stride // 2.

    At stride 4 these are the pixels the reference's loss samples (the
    centres of the 4×4 cells, rounded down); stride 1 is the identity.
    """
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}.")
    if stride == 1:
        return masks
    offset = stride // 2
    return masks[:, offset::stride, offset::stride]


def add_mask_targets(sample, stride=4):
    """The sample with `"mask_centers"` (N, 2) float32 added and `"masks"` subsampled by `stride`.

    Centres are those of the full-resolution masks, whatever the stride.
    Samples without `"masks"` come back unchanged.
    """
    if "masks" not in sample:
        return sample
    out = dict(sample)
    out["mask_centers"] = mask_centers(sample["masks"])
    out["masks"] = subsample_masks(sample["masks"], stride)
    return out
