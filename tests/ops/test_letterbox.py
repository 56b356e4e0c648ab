"""The in-graph letterbox of exported models against the host preprocessor `predict` uses (cv2)."""

import numpy as np
import pytest

from keras_rtmdet.ops.letterbox import letterbox
from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import RTMDetPreprocessor
from tests.test_case import to_numpy

TARGET = (160, 160)
SIZES = [(160, 160), (320, 320), (96, 200), (333, 160), (50, 70), (161, 159), (1080, 1920), (7, 3)]


def photo_like(size, seed=0):
    """Smooth gradients and a few hard edges: what a resize meets in photographs."""
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width] / max(size)
    image = np.stack([200 * xx, 200 * yy, 100 + 80 * np.sin(9 * xx * yy)], -1)
    image[height // 3 : height // 2, width // 4 : width // 2] = rng.uniform(0, 255, 3)
    return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", SIZES)
def test_sizes_scales_and_pixels_follow_the_preprocessor(size):
    image = photo_like(size)
    reference = RTMDetPreprocessor(TARGET)(image[None])
    padded, scale_factors = letterbox(image[None], TARGET)
    padded, scale_factors = to_numpy(padded), to_numpy(scale_factors)
    np.testing.assert_allclose(scale_factors, reference["scale_factors"], rtol=1e-6)
    # OpenCV's fixed-point arithmetic reproduced: bit-exact, downscaled, upscaled or not resized.
    np.testing.assert_array_equal(padded, reference["images"])
    new_w, new_h = np.round(reference["scale_factors"][0] * np.array([size[1], size[0]])).astype(int)
    assert np.all(padded[0, new_h:] == 114) and np.all(padded[0, :, new_w:] == 114)


def test_channel_flip():
    image = photo_like((96, 200))[None]
    plain, _ = letterbox(image, TARGET)
    flipped, _ = letterbox(image, TARGET, flip_channels=True)
    np.testing.assert_array_equal(to_numpy(flipped), to_numpy(plain)[..., ::-1])


# Only TensorFlow traces graphs whose image size is unknown until run time (JAX and torch export fixed sizes).
@pytest.mark.backends("tensorflow")  # sizes known only at run time: TensorFlow graphs
def test_a_dynamic_size_gives_the_static_result():
    import tensorflow as tf

    dynamic = tf.function(lambda x: letterbox(x, TARGET), input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)])
    for size in SIZES:
        image = photo_like(size, seed=1)[None]
        padded, scales = (to_numpy(t) for t in dynamic(tf.constant(image)))
        expected_padded, expected_scales = (to_numpy(t) for t in letterbox(image, TARGET))
        assert padded.shape == (1, *TARGET, 3)
        np.testing.assert_array_equal(padded, expected_padded)
        np.testing.assert_allclose(scales, expected_scales, rtol=1e-6)
