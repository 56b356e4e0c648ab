"""Rotated-box geometry: exact IoU against polygon clipping, le90 angles, decoding, rescaling."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_rtmdet.ops.rotated_boxes import aligned_rotated_iou
from keras_rtmdet.ops.rotated_boxes import distance_to_rboxes
from keras_rtmdet.ops.rotated_boxes import norm_angle_le90
from keras_rtmdet.ops.rotated_boxes import points_in_rboxes
from keras_rtmdet.ops.rotated_boxes import rbox_corners
from keras_rtmdet.ops.rotated_boxes import regularize_le90
from keras_rtmdet.ops.rotated_boxes import rescale_rboxes
from keras_rtmdet.ops.rotated_boxes import rotated_iou
from tests.ops.polygon_oracle import rotated_iou_oracle
from tests.test_case import to_numpy


def random_pairs(n, seed, spread=10.0, offset=0.0):
    rng = np.random.default_rng(seed)
    a = np.stack(
        [
            rng.uniform(0, 50, n) + offset,
            rng.uniform(0, 50, n) + offset,
            rng.uniform(0.5, 40, n),
            rng.uniform(0.5, 40, n),
            rng.uniform(-math.pi, math.pi, n),
        ],
        1,
    )
    b = np.stack(
        [
            a[:, 0] + rng.normal(0, spread, n),
            a[:, 1] + rng.normal(0, spread, n),
            rng.uniform(0.5, 40, n),
            rng.uniform(0.5, 40, n),
            rng.uniform(-math.pi, math.pi, n),
        ],
        1,
    )
    return a, b


def test_iou_matches_polygon_clipping_on_random_pairs():
    a, b = random_pairs(3000, seed=0)
    ours = to_numpy(aligned_rotated_iou(a.astype("float32"), b.astype("float32")))
    reference = np.array([rotated_iou_oracle(x, y) for x, y in zip(a, b)])
    assert 0.5 < np.mean(reference > 0) < 0.95  # overlapping and disjoint pairs both occur
    assert np.abs(ours - reference).max() <= 1e-5


def test_iou_keeps_precision_far_from_the_origin():
    a, b = (x.astype("float32") for x in random_pairs(500, seed=1, offset=3000.0))
    ours = to_numpy(aligned_rotated_iou(a, b))
    # The oracle sees the same float32-rounded boxes, in float64.
    reference = np.array([rotated_iou_oracle(x, y) for x, y in zip(a.astype(float), b.astype(float))])
    assert np.abs(ours - reference).max() <= 1e-5


def _pairs_like(a, rng, jitter, size_jitter, turn, quarter_turns=False):
    """Copies of boxes `a` moved by `jitter`·size, resized by 1 ± `size_jitter`, turned by ±`turn` rad."""
    b = a.copy()
    n = len(a)
    b[:, :2] += rng.uniform(-jitter, jitter, (n, 2)) * a[:, 2:4].max(1, keepdims=True)
    b[:, 2:4] *= 1.0 + rng.uniform(-size_jitter, size_jitter, (n, 2))
    b[:, 4] += rng.uniform(-turn, turn, n) + (rng.integers(0, 4, n) * math.pi / 2 if quarter_turns else 0.0)
    return b


def precision_regime(name, n=1000, seed=5):
    """Box pairs where a float32 IoU loses precision most easily (issue 18), far from the origin."""
    rng = np.random.default_rng(seed)
    sizes = {"near-identical": (1, 100), "nearly parallel": (1, 100), "thin": (20, 200), "large": (300, 2000)}[name]
    a = np.c_[rng.uniform(0, 4000, (n, 2)), rng.uniform(*sizes, (n, 2)), rng.uniform(-math.pi, math.pi, n)]
    if name == "near-identical":
        b = _pairs_like(a, rng, 1e-3, 1e-3, 1e-2)
    elif name == "nearly parallel":
        b = _pairs_like(a, rng, 0.3, 0.5, 1e-3, quarter_turns=True)
    elif name == "thin":
        a[:, 3] = a[:, 2] / rng.uniform(10, 50, n)
        b = _pairs_like(a, rng, 0.02, 0.2, 0.03)
    else:
        b = _pairs_like(a, rng, 0.3, 0.5, math.pi)
    return a.astype("float32"), b.astype("float32")


@pytest.mark.parametrize("regime", ["near-identical", "nearly parallel", "thin", "large"])
def test_iou_keeps_float32_precision_in_hard_regimes(regime):
    """Within 1e-5 of a float64 polygon clip of the same float32 boxes (mmcv's float32 kernel: 2e-6)."""
    a, b = precision_regime(regime)
    ours = to_numpy(aligned_rotated_iou(a, b))
    reference = np.array([rotated_iou_oracle(x, y) for x, y in zip(a.astype(float), b.astype(float))])
    assert np.median(reference) > (0.9 if regime == "near-identical" else 0.05)
    assert np.abs(ours - reference).max() <= 1e-5


SPECIAL_CASES = {
    "identical": ([10, 10, 8, 4, 0.3], [10, 10, 8, 4, 0.3], 1.0),
    "same box, w/h swapped": ([10, 10, 8, 4, 0.3], [10, 10, 4, 8, 0.3 + math.pi / 2], 1.0),
    "same box, angle + pi": ([10, 10, 8, 4, 0.3], [10, 10, 8, 4, 0.3 + math.pi], 1.0),
    "shared edge, half overlap": ([10, 10, 8, 4, 0.0], [14, 10, 8, 4, 0.0], 1 / 3),
    "touching": ([10, 10, 8, 4, 0.0], [18, 10, 8, 4, 0.0], 0.0),
    "disjoint": ([10, 10, 8, 4, 0.0], [40, 40, 8, 4, 1.0], 0.0),
    "nested rotated": ([10, 10, 8, 4, 0.0], [10, 10, 2, 2, 0.7], 0.125),
    "collinear sides": ([10, 10, 8, 4, 0.0], [12, 10, 4, 4, 0.0], 0.5),
    "cross": ([0, 0, 10, 2, 0.0], [0, 0, 10, 2, math.pi / 2], 4 / 36),
}


@pytest.mark.parametrize("name", list(SPECIAL_CASES))
def test_iou_special_cases(name):
    a, b, expected = SPECIAL_CASES[name]
    value = float(to_numpy(aligned_rotated_iou(np.array([a], "float32"), np.array([b], "float32")))[0])
    assert value == pytest.approx(expected, abs=1e-6)
    assert rotated_iou_oracle(np.array(a, float), np.array(b, float)) == pytest.approx(expected, abs=1e-9)


def test_pairwise_iou_shape_and_symmetry():
    a, b = random_pairs(12, seed=2)
    ious = to_numpy(rotated_iou(a[None].astype("float32"), b[None, :7].astype("float32")))
    assert ious.shape == (1, 12, 7)
    back = to_numpy(rotated_iou(b[None, :7].astype("float32"), a[None].astype("float32")))
    np.testing.assert_allclose(ious[0], back[0].T, atol=1e-6)


def _gradient(fn, x):
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v))(x))
    if backend == "torch":
        v = ops.convert_to_tensor(x).detach().requires_grad_(True)  # on Keras' device
        fn(v).backward()
        return v.grad.cpu().numpy()
    import tensorflow as tf

    v = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = fn(v)
    return tape.gradient(y, v).numpy()


def test_gradients_are_finite_for_degenerate_and_identical_boxes():
    """No NaN/inf in value or gradient: identical, swapped, zero-size, negative-size, touching, far, near-identical."""
    boxes = np.array(
        [
            [10, 10, 8, 4, 0.3],
            [10, 10, 4, 8, 0.3 + math.pi / 2],
            [10, 10, 0, 0, 0.0],
            [10, 10, -3, 4, 0.2],
            [18, 10, 8, 4, 0.0],
            [1e8, -1e8, 8, 4, 0.0],
            [10, 10, 1e-9, 5, 0.0],
        ],
        "float32",
    )
    targets = np.tile(np.array([[10, 10, 8, 4, 0.3]], "float32"), (len(boxes), 1))
    targets[4] = [10, 10, 8, 4, 0.0]
    near_boxes, near_targets = precision_regime("near-identical", n=50)
    boxes, targets = np.concatenate([boxes, near_boxes]), np.concatenate([targets, near_targets])
    values = to_numpy(aligned_rotated_iou(boxes, targets))
    assert np.all(np.isfinite(values)) and values[0] == pytest.approx(1.0) and values[1] == pytest.approx(1.0)
    grad = _gradient(lambda v: ops.sum(aligned_rotated_iou(v, targets)), boxes)
    assert np.all(np.isfinite(grad)) and np.abs(grad[7:]).max() > 0
    # A partly overlapping pair moves towards more overlap along the offset axis.
    pair = np.array([[13, 10, 8, 4, 0.1]], "float32")
    g = _gradient(lambda v: ops.sum(aligned_rotated_iou(v, np.array([[10, 10, 8, 4, 0.0]], "float32"))), pair)
    assert g[0, 0] < 0 and g[0, 4] < 0


def test_le90_angle_wrap_and_regularisation():
    angles = np.array([-math.pi / 2, math.pi / 2, 3.5, -2.0, 0.0], "float32")
    wrapped = to_numpy(norm_angle_le90(angles))
    assert np.all(wrapped >= -math.pi / 2) and np.all(wrapped < math.pi / 2)
    np.testing.assert_allclose(np.cos(2 * wrapped), np.cos(2 * angles), atol=1e-5)
    boxes = np.array([[5, 5, 2, 6, 0.4], [5, 5, 6, 2, 2.0]], "float32")
    out = to_numpy(regularize_le90(boxes))
    assert np.all(out[:, 2] >= out[:, 3])
    np.testing.assert_allclose(out[0], [5, 5, 6, 2, 0.4 + math.pi / 2 - math.pi], atol=1e-6)
    np.testing.assert_allclose(out[1], [5, 5, 6, 2, 2.0 - math.pi], atol=1e-6)
    np.testing.assert_allclose(to_numpy(aligned_rotated_iou(boxes, out)), 1.0, atol=1e-6)


def test_decode_puts_the_box_around_the_point_along_its_axes():
    points = np.array([[100.0, 50.0]], "float32")
    distances = np.array([[2.0, 1.0, 6.0, 3.0]], "float32")  # l, t, r, b
    angle = np.array([0.5], "float32")
    box = to_numpy(distance_to_rboxes(points, distances, angle))[0]
    offset = np.array([(6 - 2) / 2, (3 - 1) / 2])
    rot = np.array([[math.cos(0.5), -math.sin(0.5)], [math.sin(0.5), math.cos(0.5)]])
    np.testing.assert_allclose(box, [*(points[0] + rot @ offset), 8.0, 4.0, 0.5], atol=1e-5)
    # The point lies at distances l and r from the two short sides, along the width axis.
    corners = to_numpy(rbox_corners(box[None]))[0]
    inside = to_numpy(points_in_rboxes(points, box[None, None]))
    assert inside.shape == (1, 1, 1) and inside[0, 0, 0]
    assert corners.shape == (4, 2)


def test_points_inside_use_the_box_frame_and_margin():
    boxes = np.array([[[0.0, 0.0, 10.0, 2.0, math.pi / 4]]], "float32")
    along = np.array([4.985, 4.995])[:, None] / math.sqrt(2) * np.ones((1, 2))  # on the width axis
    points = np.concatenate([[[3.0, 3.0], [3.0, -3.0], [0.0, 0.0]], along]).astype("float32")
    inside = to_numpy(points_in_rboxes(points, boxes))[0, :, 0]
    np.testing.assert_array_equal(inside, [True, False, True, True, False])  # 0.01 px margin


def test_rescale_is_mmrotate_rescale():
    boxes = np.array([[20.0, 10.0, 8.0, 4.0, 0.3]], "float32")
    out = to_numpy(rescale_rboxes(boxes, 2.0, 2.0))[0]
    np.testing.assert_allclose(out, [40, 20, 16, 8, 0.3], atol=1e-5)
    sx, sy, t = 1.5, 0.5, 0.3
    out = to_numpy(rescale_rboxes(boxes, sx, sy))[0]
    w = 8 * math.sqrt((sx * math.cos(t)) ** 2 + (sy * math.sin(t)) ** 2)
    h = 4 * math.sqrt((sx * math.sin(t)) ** 2 + (sy * math.cos(t)) ** 2)
    np.testing.assert_allclose(out, [30, 5, w, h, math.atan2(sx * math.sin(t), sy * math.cos(t))], atol=1e-5)
