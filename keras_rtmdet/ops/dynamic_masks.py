"""RTMDet-Ins mask decoding: per-instance dynamic 1×1 convs on the prototypes, batched."""

import math

from keras import ops

from keras_rtmdet.ops.upsample import upsample_bilinear


def dynamic_mask_logits(mask_feat, kernels, priors, weight_nums, bias_nums, mask_stride=8, coord_scale=8.0):
    """Mask logits of every instance at the prototypes' resolution.

    As mmdet's `RTMDetInsHead._mask_predict_by_feat_single`, for a batch:
    the input of layer 0 is `[rel_x, rel_y, prototypes]` with
    `rel = (prior_xy − grid_xy) / (prior_stride · coord_scale)`, the grid
    being the `mask_stride` grid with offset 0; layers are 1×1 convs with
    ReLU between them and none after the last.

    Args:
        mask_feat: (B, H, W, P) prototypes.
        kernels: (B, K, G) dynamic parameters, G = Σ weight_nums + Σ bias_nums,
            all weights first (each (out, in) row-major), then all biases.
        priors: (B, K, 4) priors (x, y, stride, stride) of the instances.
        weight_nums, bias_nums: per-layer parameter counts.

    Returns: (B, K, H, W) float32 logits.
    """
    mask_feat = ops.cast(mask_feat, "float32")
    kernels = ops.cast(kernels, "float32")
    priors = ops.cast(priors, "float32")
    shape = ops.shape(mask_feat)
    h, w, p = shape[1], shape[2], mask_feat.shape[-1]
    feat = ops.reshape(mask_feat, (shape[0], h * w, p))
    ys = ops.cast(ops.arange(h), "float32") * mask_stride
    xs = ops.cast(ops.arange(w), "float32") * mask_stride
    grid_x = ops.reshape(ops.tile(xs[None, :], (h, 1)), (-1,))
    grid_y = ops.reshape(ops.tile(ys[:, None], (1, w)), (-1,))
    grid = ops.stack([grid_x, grid_y], axis=-1)  # (HW, 2), row-major
    rel = (priors[:, :, None, :2] - grid[None, None]) / (priors[:, :, None, 2:3] * coord_scale)

    bounds = []
    for n in list(weight_nums) + list(bias_nums):
        bounds.append((bounds[-1][1] if bounds else 0, (bounds[-1][1] if bounds else 0) + n))
    num_layers = len(weight_nums)
    x = None
    for layer in range(num_layers):
        w_start, w_end = bounds[layer]
        b_start, b_end = bounds[num_layers + layer]
        c_out = bias_nums[layer]
        c_in = weight_nums[layer] // c_out
        weight = ops.reshape(kernels[..., w_start:w_end], (shape[0], -1, c_out, c_in))
        bias = kernels[..., b_start:b_end][:, :, None, :]
        if layer == 0:
            x = ops.einsum("bkqi,bkoi->bkqo", rel, weight[..., :2])
            x = x + ops.einsum("bqi,bkoi->bkqo", feat, weight[..., 2:])
        else:
            x = ops.einsum("bkqi,bkoi->bkqo", x, weight)
        x = x + bias
        if layer < num_layers - 1:
            x = ops.relu(x)
    return ops.reshape(x, (shape[0], -1, h, w))


def paste_masks(mask_logits, mask_stride, scale_factor=None, original_size=None, threshold=0.5):
    """One image's binary masks, as mmdet's `_bbox_mask_post_process` (eager, numpy-sized).

    Args:
        mask_logits: (K, h, w) logits on the prototype grid.
        mask_stride: the prototypes' stride (8): logits are upsampled by it.
        scale_factor: (w_scale, h_scale) of the resize, or None.
        original_size: (ori_h, ori_w) to crop to, or None.
        threshold: on the sigmoid (0.5 is logits > 0).

    The rescale reproduces mmdet's w/h swap: the height is divided by
    w_scale and the width by h_scale (`math.ceil` of each).

    Returns: (K, H, W) bool.
    """
    x = ops.expand_dims(ops.cast(mask_logits, "float32"), -1)
    x = upsample_bilinear(x, mask_stride)
    if scale_factor is not None:
        h, w = x.shape[1], x.shape[2]
        size = (math.ceil(h / float(scale_factor[0])), math.ceil(w / float(scale_factor[1])))
        if size != (h, w):
            x = ops.image.resize(x, size, interpolation="bilinear", antialias=False)
    if original_size is not None:
        x = x[:, : int(original_size[0]), : int(original_size[1])]
    logit_threshold = math.log(threshold / (1.0 - threshold))
    return x[..., 0] > logit_threshold
