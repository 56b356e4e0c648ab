"""Point priors of a dense detector (mmdet's `MlvlPointGenerator`, offset 0)."""

import functools

import numpy as np
from keras import ops


def level_sizes(image_size, strides):
    """Feature-map sizes (h, w) per level for a padded input of `image_size`.

    Each stride-2 stage maps a size n to ceil(n / 2), as a 3×3 conv with
    padding 1 does; a level at stride s therefore has ceil-halved sizes.
    """
    height, width = image_size
    if height is None or width is None:
        raise ValueError(
            "Post-processing needs a static image size; got "
            f"{image_size}. Pad images to a fixed size (the preprocessor does)."
        )
    sizes = []
    for stride in strides:
        h, w, s = height, width, 1
        while s < stride:
            h, w, s = -(-h // 2), -(-w // 2), s * 2
        sizes.append((h, w))
    return sizes


def point_priors(image_size, strides, dtype="float32"):
    """Priors `(x, y, stride_w, stride_h)` of all levels, finest level first.

    Prior (i, j) of a level with stride s sits at (j·s, i·s): the top-left
    corner of its cell (offset 0), not the centre. Row-major inside a level.

    Returns: (N, 4) tensor, N = Σ_l H_l·W_l.
    """
    # A copy: torch's tensor would share (and could write) the cached array's memory.
    return ops.convert_to_tensor(_prior_array(tuple(image_size), tuple(strides), dtype).copy())


@functools.lru_cache(maxsize=32)
def _prior_array(image_size, strides, dtype):
    # Cached as numpy, not as a tensor: a tensor made inside one traced graph cannot serve another.
    rows = []
    for (h, w), stride in zip(level_sizes(image_size, strides), strides):
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        s = np.full(h * w, stride)
        rows.append(np.stack([xs.ravel() * stride, ys.ravel() * stride, s, s], axis=1))
    array = np.concatenate(rows, 0).astype(dtype)
    array.flags.writeable = False
    return array
