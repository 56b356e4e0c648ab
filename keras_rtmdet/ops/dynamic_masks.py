"""RTMDet-Ins mask decoding: per-instance dynamic 1×1 convs on the prototypes, batched."""

import math

import numpy as np

from keras import ops



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
    # `arange(0, n)`: jax2onnx's `arange` takes no `stop=None` (what `arange(n)` passes on JAX).
    ys = ops.cast(ops.arange(0, h), "float32") * mask_stride
    xs = ops.cast(ops.arange(0, w), "float32") * mask_stride
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


def interpolation_matrix(in_size, out_size):
    """(out_size, in_size) matrix of PyTorch's 1-D bilinear resize, `align_corners=False`.

    Output pixel i samples the input at ``max(0, (i + ½)·in/out − ½)``, the
    upper neighbour clamped at the border, as `F.interpolate` does.
    """
    src = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = src - low
    matrix = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


def paste_matrices(grid_size, mask_stride, scale_factor=None, original_size=None):
    """Per-axis linear maps from prototype-grid logits to original-image pixels.

    mmdet's `_bbox_mask_post_process` is separable and linear before the
    threshold: upsample ×stride, resize to ``ceil(padded / scale)`` (the
    height by the *w* scale and the width by the *h* scale: the reference's
    swap), crop to the original size. Each axis is the product of its
    interpolation matrices, so one image's masks are ``M_h · logits · M_wᵀ``:
    two small matmuls instead of full-size intermediate images.

    Returns: (M_h (H, h) float32, M_w (W, w) float32).
    """
    matrices = []
    for axis, size in enumerate(grid_size):
        padded = size * mask_stride
        matrix = interpolation_matrix(size, padded)
        if scale_factor is not None:
            rescaled = math.ceil(padded / float(scale_factor[axis]))
            if rescaled != padded:
                matrix = interpolation_matrix(padded, rescaled) @ matrix
        if original_size is not None:
            matrix = matrix[: int(original_size[axis])]
        matrices.append(matrix.astype(np.float32))
    return tuple(matrices)


def paste_masks(mask_logits, mask_stride, scale_factor=None, original_size=None, threshold=0.5):
    """Binary masks of images sharing one resize, as mmdet's `_bbox_mask_post_process`.

    Args:
        mask_logits: (..., h, w) logits on the prototype grid, e.g. (K, h, w)
            for one image or (B, K, h, w) for images of the same size.
        mask_stride: the prototypes' stride (8): logits are upsampled by it.
        scale_factor: (w_scale, h_scale) of the resize, or None.
        original_size: (ori_h, ori_w) to crop to, or None.
        threshold: on the sigmoid (0.5 is logits > 0).

    Returns: (..., H, W) bool tensor, on the backend's device.
    """
    logits = ops.cast(mask_logits, "float32")
    leading, (h, w) = tuple(ops.shape(logits)[:-2]), tuple(logits.shape[-2:])
    m_h, m_w = paste_matrices((h, w), mask_stride, scale_factor, original_size)
    x = ops.reshape(logits, (-1, h, w))
    x = ops.einsum("kyx,wx->kyw", x, ops.convert_to_tensor(m_w))
    x = ops.einsum("hy,kyw->khw", ops.convert_to_tensor(m_h), x)
    masks = x > math.log(threshold / (1.0 - threshold))
    # −1 for the first leading size: exporters (jax2onnx) cannot reshape to a symbolic batch size.
    leading = (-1, *leading[1:]) if leading else ()
    return ops.reshape(masks, leading + (m_h.shape[0], m_w.shape[0]))
