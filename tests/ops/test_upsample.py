"""`upsample_bilinear` equals half-pixel bilinear resize (PyTorch align_corners=False)."""

import numpy as np
import pytest
from keras import ops

from keras_rtmdet.ops.upsample import upsample_bilinear
from tests.test_case import to_numpy


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 1, 2, 1)])
def test_matches_static_bilinear_resize(factor, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    size = (shape[1] * factor, shape[2] * factor)
    expected = ops.image.resize(x, size, interpolation="bilinear", antialias=False)
    np.testing.assert_allclose(to_numpy(upsample_bilinear(x, factor)), to_numpy(expected), atol=1e-5)
