"""RTMDet-Ins' mask loss in `keras.ops`: Dice on the positives' dynamic-conv masks.

Spec: `rtmdet-reference.md` §4.2 (mmdet 3.3.0 `RTMDetInsHead.loss_mask_by_feat`).
For every positive prior, its own kernel and prior decode mask logits on its
image's prototypes (stride 8); the logits are upsampled ×2 (bilinear,
half-pixel) to stride 4 and compared by Dice (eps 5e-6, not naive) with the
assigned GT mask sampled at pixels ``[2::4, 2::4]`` of the padded input. The
sum over positives is divided by ``max(1, num_pos)`` (and mmdet's ``avg_factor
+ float32 eps``), times the weight 2; num_pos is averaged over data-parallel
replicas as mmdet's ``reduce_mean``.

Static shapes: the positives of an image are dynamic in number, so each
image decodes at most ``max_positives`` of them. Up to that cap the loss is
the reference's exactly. Above it, a subset is taken in a fixed pseudo-random
order of the priors (independent of the image content, so not biased towards
a level or a region) and weighted by ``num_pos / kept`` of that image, an
unbiased estimate of the full sum. Memory grows with ``B · max_positives ·
(H/8 · W/8)`` (about 40 bytes per instance-pixel with gradients).
"""

import numpy as np
from keras import ops

from keras_rtmdet.distribute.replicas import cross_replica_mean
from keras_rtmdet.ops.dense_postprocess import gather_rows
from keras_rtmdet.ops.dynamic_masks import dynamic_mask_logits
from keras_rtmdet.ops.upsample import upsample_bilinear

# mmdet's `weight_reduce_loss` divides by (avg_factor + eps), eps = float32 eps.
_TORCH_F32_EPS = float(np.finfo(np.float32).eps)
DICE_EPS = 5e-6
# The logits' stride (8) over the loss' stride (4).
LOGIT_UPSAMPLE = 2


def dice_loss(logits, targets, eps=DICE_EPS):
    """Per-instance Dice loss ``1 − 2Σpt / ((Σp² + eps) + (Σt² + eps))``, p = σ(logits).

    Args:
        logits: (..., H, W) mask logits.
        targets: (..., H, W) binary targets.
    Returns: (...) loss per instance.
    """
    p = ops.sigmoid(ops.cast(logits, "float32"))
    t = ops.cast(targets, "float32")
    a = ops.sum(p * t, axis=(-2, -1))
    b = ops.sum(p * p, axis=(-2, -1)) + eps
    c = ops.sum(t * t, axis=(-2, -1)) + eps
    return 1.0 - 2.0 * a / (b + c)


def prior_priority(num_priors, seed=0):
    """A fixed pseudo-random rank in [0, 1) per prior: which positives a capped image keeps."""
    return np.random.default_rng(seed).permutation(num_priors).astype("float32") / max(num_priors, 1)


def select_positives(foreground, max_positives):
    """Indices of at most `max_positives` positives per image.

    Args:
        foreground: (B, N) bool.
        max_positives: static cap P.
    Returns: (index (B, P') int32, valid (B, P') bool, weight (B, P') float32),
    P' = min(P, N); `weight` is ``num_pos / kept`` of the image at the kept
    positives (1 when nothing was dropped), 0 elsewhere.
    """
    num_priors = foreground.shape[1]
    keep = min(int(max_positives), num_priors)
    priority = ops.convert_to_tensor(prior_priority(num_priors))
    key = ops.where(foreground, 1.0 + priority[None, :], 0.0)
    _, index = ops.top_k(key, keep)
    valid = ops.take_along_axis(foreground, index, axis=1)
    num_pos = ops.sum(ops.cast(foreground, "float32"), axis=1, keepdims=True)
    kept = ops.sum(ops.cast(valid, "float32"), axis=1, keepdims=True)
    weight = ops.where(valid, num_pos / ops.maximum(kept, 1.0), 0.0)
    return ops.cast(index, "int32"), valid, weight


def rtmdet_mask_loss(
    mask_feat,
    kernel_preds,
    priors,
    assignment,
    gt_masks,
    weight_nums,
    bias_nums,
    mask_stride=8,
    max_positives=512,
    loss_weight=2.0,
    avg_factor=None,
):
    """RTMDet-Ins' `loss_mask` for a batch.

    Args:
        mask_feat: (B, H/8, W/8, P) prototypes.
        kernel_preds: (B, N, G) dynamic-conv parameters of every prior.
        priors: (N, 4) (x, y, stride, stride).
        assignment: the `DynamicSoftLabelAssigner` output (uses
            `foreground_mask` and `assigned_gt_index`).
        gt_masks: (B, M, H/4, W/4) GT masks sampled at the stride-4 pixel
            centres ``[2::4, 2::4]`` of the padded input, M GT slots.
        weight_nums, bias_nums: the head's per-layer dynamic-conv sizes.
        mask_stride: the prototypes' stride (8).
        max_positives: static cap of decoded positives per image.
        loss_weight: 2.0 as the reference.
        avg_factor: optional positive count to divide by instead of this
            batch's (averaged over data-parallel replicas); clamped at ≥ 1.
    Returns: scalar loss; exactly 0 (with zero, finite gradients) without positives.
    """
    foreground = assignment["foreground_mask"]
    index, valid, weight = select_positives(foreground, max_positives)
    kernels = gather_rows(ops.cast(kernel_preds, "float32"), index)
    pos_priors = ops.take(ops.cast(priors, "float32"), index, axis=0)
    logits = dynamic_mask_logits(mask_feat, kernels, pos_priors, weight_nums, bias_nums, mask_stride=mask_stride)
    batch, keep, h, w = ops.shape(logits)
    logits = upsample_bilinear(ops.reshape(logits, (-1, h, w, 1)), LOGIT_UPSAMPLE)
    logits = ops.reshape(logits, (batch, keep, h * LOGIT_UPSAMPLE, w * LOGIT_UPSAMPLE))

    gt_index = ops.take_along_axis(assignment["assigned_gt_index"], index, axis=1)
    gt_index = ops.where(valid, gt_index, 0)
    targets = ops.take_along_axis(ops.cast(gt_masks, "float32"), gt_index[:, :, None, None], axis=1)
    if targets.shape[-2:] != logits.shape[-2:] and None not in targets.shape[-2:] + logits.shape[-2:]:
        raise ValueError(
            f"GT masks of spatial size {tuple(targets.shape[-2:])} do not match the stride-4 logits "
            f"{tuple(logits.shape[-2:])}: masks must be sampled at [2::4, 2::4] of the padded input."
        )
    loss = ops.where(valid, dice_loss(logits, targets), 0.0) * weight
    if avg_factor is None:
        avg_factor = cross_replica_mean(ops.sum(ops.cast(foreground, "float32")))
    avg_factor = ops.maximum(ops.stop_gradient(ops.cast(avg_factor, "float32")), 1.0)
    return ops.sum(loss) / (avg_factor + _TORCH_F32_EPS) * loss_weight
