"""Bilinear upsampling by an integer factor, as PyTorch's `align_corners=False`.

`keras.ops.image.resize` needs a static output size; this works on
dynamic shapes (the functional models take inputs of any size). For an
input of size n and output n·f, it equals `F.interpolate(x, size=n·f,
mode="bilinear", align_corners=False)` and TF's half-pixel-centre resize:
output pixel f·k + r samples the input at k + d_r, d_r = (r + ½)/f − ½,
with the border pixel repeated outside the image.
"""

from keras import ops


def upsample_bilinear(x, factor):
    """(B, H, W, C) → (B, H·factor, W·factor, C), half-pixel centres, no antialiasing."""
    factor = int(factor)
    x = ops.convert_to_tensor(x)
    if factor == 1:
        return x
    for axis in (1, 2):
        x = _upsample_along(x, factor, axis)
    return x


def _upsample_along(x, factor, axis):
    shape = ops.shape(x)
    size = shape[axis]
    if axis == 1:
        prev = ops.concatenate([x[:, :1], x[:, :-1]], axis=1)
        nxt = ops.concatenate([x[:, 1:], x[:, -1:]], axis=1)
    else:
        prev = ops.concatenate([x[:, :, :1], x[:, :, :-1]], axis=2)
        nxt = ops.concatenate([x[:, :, 1:], x[:, :, -1:]], axis=2)
    phases = []
    for r in range(factor):
        d = (r + 0.5) / factor - 0.5
        if d < 0:
            phases.append((-d) * prev + (1.0 + d) * x)
        else:
            phases.append((1.0 - d) * x + d * nxt)
    # (B, H, f, W, C) or (B, H, W, f, C), then merge the phase axis into `axis`.
    stacked = ops.stack(phases, axis=axis + 1)
    new_shape = [-1, shape[1], shape[2], shape[3]]
    new_shape[axis] = size * factor
    return ops.reshape(stacked, tuple(new_shape))
