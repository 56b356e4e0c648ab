"""Mask pasting as per-axis matrices equals PyTorch's two bilinear resizes (mmdet's post-process)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from keras_rtmdet.ops.dynamic_masks import interpolation_matrix
from keras_rtmdet.ops.dynamic_masks import paste_masks
from tests.test_case import to_numpy


@pytest.mark.parametrize("in_size,out_size", [(10, 80), (80, 640), (640, 853), (640, 427), (7, 3), (5, 5)])
def test_interpolation_matrix_is_torch_bilinear(in_size, out_size):
    x = np.random.default_rng(in_size).normal(size=(in_size, 3))
    ours = interpolation_matrix(in_size, out_size) @ x
    t = torch.from_numpy(x.T[None, :, :, None].copy())  # (1, 3, in, 1)
    ref = F.interpolate(t, size=(out_size, 1), mode="bilinear", align_corners=False)[0, :, :, 0].numpy().T
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_paste_masks_matches_mmdet_order_of_operations():
    """Upsample ×8, resize to ceil(padded / scale) with the w/h swap, crop, threshold — in torch, for reference."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 12, 10)).astype(np.float32)
    scale_factor, original_size = (0.75, 0.8), (120, 100)
    ours = to_numpy(paste_masks(logits, 8, scale_factor, original_size))
    t = F.interpolate(torch.from_numpy(logits)[None], scale_factor=8, mode="bilinear", align_corners=False)
    size = (int(np.ceil(96 / scale_factor[0])), int(np.ceil(80 / scale_factor[1])))
    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, :, : original_size[0], : original_size[1]]
    ref = (t.sigmoid() > 0.5).numpy()
    assert ours.shape == ref.shape == (4, 120, 100) and ours.dtype == bool
    assert (ours != ref).sum() <= 1e-4 * ref.size
