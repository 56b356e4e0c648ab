"""RTMDet-R training transforms and pipeline: the drawn objects stay in their rotated boxes.

Images are grey with solid rotated rectangles drawn from known rboxes, so
after every transform the box can be checked against the pixels: all the
object's colour lies in the (slightly grown) box polygon and the (slightly
shrunk) polygon is filled with it.
"""

import math

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_rtmdet.data.dota import regularize_le90_numpy
from keras_rtmdet.data.rotated_pipeline import rotated_train_pipeline
from keras_rtmdet.data.source_dataset import samples_dataset
from keras_rtmdet.data.synthetic_rotated import rasterize_rbox_shape
from keras_rtmdet.data.transforms import rotated

pytestmark = pytest.mark.backend_independent

COLOURS = np.array([(230, 40, 40), (40, 210, 60), (50, 70, 235)], np.uint8)
BACKGROUND = 128


def colour_of(label):
    return COLOURS[int(label) % len(COLOURS)]


def make_sample(height, width, rboxes, labels):
    """A grey image with a solid rectangle of colour `colour_of(label)` per rbox (cx, cy, w, h, angle)."""
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    for box, label in zip(rboxes, labels):
        image[rasterize_rbox_shape("ship", box, height, width)] = colour_of(label)
    return {
        "image": tf.constant(image),
        "boxes": tf.constant(np.array(rboxes, np.float32).reshape(-1, 5)),
        "labels": tf.constant(np.array(labels, np.int32)),
        "image_id": tf.constant(0, tf.int64),
    }


def local_coordinates(shape, box):
    """|u|, |v| of every pixel centre along the box's width / height axes, in pixels from its centre."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64) + 0.5
    cx, cy, _, _, angle = (float(v) for v in box)
    dx, dy = xs - cx, ys - cy
    return np.abs(dx * math.cos(angle) + dy * math.sin(angle)), np.abs(-dx * math.sin(angle) + dy * math.cos(angle))


def assert_box_on_object(image, box, colour, margin=1.5, tol=10):
    """Every pixel of `colour` is within the box grown by `margin` px; ≥ 95 % of the box shrunk by it has the colour."""
    u, v = local_coordinates(image.shape, box)
    w, h = float(box[2]), float(box[3])
    is_colour = np.abs(image.astype(int) - colour.astype(int)).max(-1) <= tol
    assert is_colour.any(), f"no pixel of colour {colour} left for {box}"
    outside = is_colour & ((u > w / 2 + margin) | (v > h / 2 + margin))
    assert not outside.any(), f"{outside.sum()} object pixels outside {box}"
    core = (u < w / 2 - margin) & (v < h / 2 - margin)
    assert is_colour[core].mean() >= 0.95, f"box {box} covers {is_colour[core].mean():.2f} object"


def assert_boxes_on_objects(sample):
    image, boxes, labels = (sample[k].numpy() for k in ("image", "boxes", "labels"))
    for box, label in zip(boxes, labels):
        assert_box_on_object(image, box, colour_of(label))


def sample_80x60():
    return make_sample(60, 80, [[30, 25, 30, 9, 0.6], [55, 38, 22, 7, -1.1]], [0, 2])


@pytest.mark.parametrize("angle", [30.0, 90.0, -135.0, 180.0, -61.0])
def test_rotate_keeps_each_object_in_its_box(angle):
    out = rotated.rotate_rotated(sample_80x60(), angle)
    assert out["image"].shape == (60, 80, 3) and out["boxes"].shape == (2, 5)
    assert_boxes_on_objects(out)
    np.testing.assert_allclose(out["boxes"].numpy()[:, 4], np.array([0.6, -1.1]) + math.radians(angle), atol=1e-5)


def test_rotate_fills_the_border_with_0_and_drops_boxes_whose_centre_leaves():
    # The first box sits near the top-left corner: turned 90° about (40, 30) its centre goes to (65, -5).
    sample = make_sample(60, 80, [[5, 5, 8, 3, 0.0], [40, 30, 20, 6, 0.3]], [1, 0])
    out = rotated.rotate_rotated(sample, 90.0)
    np.testing.assert_array_equal(out["labels"].numpy(), [0])
    np.testing.assert_allclose(out["boxes"].numpy()[0], [40, 30, 20, 6, 0.3 + math.pi / 2], atol=1e-5)
    image = out["image"].numpy()
    # A 80 x 60 canvas turned by 90° leaves 10-px bands left and right with no source pixel.
    assert np.all(image[:, :9] == 0) and np.all(image[:, -9:] == 0)
    assert_boxes_on_objects(out)
    # Turned 45°, a box at the top-right corner leaves through the right side (x ≈ 82 > 80).
    corner = rotated.rotate_rotated(make_sample(60, 80, [[75, 5, 6, 3, 0.0], [40, 30, 20, 6, 0.3]], [1, 0]), 45.0)
    np.testing.assert_array_equal(corner["labels"].numpy(), [0])


def test_rotated_image_matches_mmcv_imrotate():
    image = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    for angle in (33.0, -100.0):
        matrix = cv2.getRotationMatrix2D(((50 - 1) / 2, (37 - 1) / 2), -angle, 1.0)
        reference = cv2.warpAffine(image, matrix, (50, 37), flags=cv2.INTER_LINEAR, borderValue=0)
        ours = rotated.rotate_image(tf.constant(image), tf.constant(math.radians(angle))).numpy()
        assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1


@pytest.mark.parametrize("direction", rotated.FLIP_DIRECTIONS)
def test_flip_keeps_each_object_in_its_box_with_mmrotate_angle_rules(direction):
    sample = sample_80x60()
    out = rotated.flip_rotated(sample, direction)
    assert_boxes_on_objects(out)
    before, after = sample["boxes"].numpy(), out["boxes"].numpy()
    expected_angle = before[:, 4] if direction == "diagonal" else -before[:, 4]
    np.testing.assert_allclose(after[:, 4], expected_angle)
    np.testing.assert_allclose(after[:, 0], before[:, 0] if direction == "vertical" else 80 - before[:, 0])
    np.testing.assert_allclose(after[:, 1], before[:, 1] if direction == "horizontal" else 60 - before[:, 1])
    with pytest.raises(ValueError, match="direction must be one of"):
        rotated.flip_rotated(sample, "sideways")


def test_random_flip_draws_each_direction_a_quarter_of_the_time():
    sample = make_sample(6, 8, [[2, 2, 2, 1, 0.3]], [0])
    counts = {"horizontal": 0, "vertical": 0, "diagonal": 0, None: 0}
    for i in range(400):
        cx, cy, _, _, angle = rotated.random_flip_rotated(sample, 0.75, tf.constant([i, 3], tf.int64))["boxes"][0].numpy()
        key = {(True, False): "horizontal", (False, True): "vertical", (True, True): "diagonal"}.get(
            (abs(cx - 6) < 1e-5, abs(cy - 4) < 1e-5)
        )
        counts[key] += 1
    assert all(60 <= n <= 140 for n in counts.values()), counts
    never = rotated.random_flip_rotated(sample, 0.0, tf.constant([1, 3], tf.int64))
    np.testing.assert_array_equal(never["boxes"].numpy(), sample["boxes"].numpy())


def test_keep_ratio_resize_keeps_each_object_in_its_box():
    out = rotated.resize_keep_ratio(sample_80x60(), 128)
    # mmcv rescale_size: factor min(128/80, 128/60) = 1.6 → 96 x 128.
    assert out["image"].shape == (96, 128, 3)
    assert_boxes_on_objects(out)
    np.testing.assert_allclose(out["boxes"].numpy()[:, 2:4], np.array([[30, 9], [22, 7]]) * 1.6, rtol=1e-5)


def test_non_uniform_scale_is_the_minimum_rectangle_of_the_scaled_corners():
    rng = np.random.default_rng(1)
    boxes = np.stack([rng.uniform(10, 50, 40), rng.uniform(10, 50, 40), rng.uniform(4, 30, 40),
                      rng.uniform(4, 30, 40), rng.uniform(-math.pi, math.pi, 40)], axis=1).astype(np.float32)
    scaled = rotated.scale_rboxes(tf.constant(boxes), 2.0, 0.7).numpy()
    for box, fitted in zip(boxes, scaled):
        cx, cy, w, h, angle = box
        u = np.array([math.cos(angle), math.sin(angle)]) * w / 2
        v = np.array([-math.sin(angle), math.cos(angle)]) * h / 2
        corners = np.array([cx, cy]) + np.array([u + v, u - v, -u - v, -u + v])
        corners = (corners * [2.0, 0.7]).astype(np.float32)
        _, (ref_w, ref_h), _ = cv2.minAreaRect(corners)
        np.testing.assert_allclose(fitted[2] * fitted[3], ref_w * ref_h, rtol=1e-3)
        d = corners - fitted[:2]
        along = np.abs(d @ [math.cos(fitted[4]), math.sin(fitted[4])])
        across = np.abs(d @ [-math.sin(fitted[4]), math.cos(fitted[4])])
        assert along.max() <= fitted[2] / 2 + 1e-3 and across.max() <= fitted[3] / 2 + 1e-3
    # A uniform scale keeps the angle, w and h in place.
    same = rotated.scale_rboxes(tf.constant(boxes), 1.5, 1.5).numpy()
    np.testing.assert_allclose(same[:, 2:4], boxes[:, 2:4] * 1.5, rtol=1e-5)
    np.testing.assert_allclose(np.cos(same[:, 4] - boxes[:, 4]), 1.0, atol=1e-5)


def test_rect_labels_turn_by_multiples_of_90_degrees():
    angles_rect, angles_free = set(), []
    for i in range(200):
        seed = tf.constant([i, 11], tf.int64)
        angles_rect.add(float(rotated.draw_rotate_angle(tf.constant([0, 9, 2]), 180.0, (9, 11), seed)))
        angles_free.append(float(rotated.draw_rotate_angle(tf.constant([0, 2]), 180.0, (9, 11), seed)))
    assert angles_rect == {90.0, 180.0, -90.0, -180.0}
    angles_free = np.array(angles_free)
    assert angles_free.min() >= -180 and angles_free.max() < 180 and np.ptp(angles_free) > 300
    assert np.mean(np.abs(angles_free % 90) > 1e-3) > 0.95
    sample = make_sample(60, 80, [[40, 30, 20, 8, 0.0]], [9])
    out = rotated.random_rotate(sample, 1.0, 180.0, (9,), tf.constant([5, 5], tf.int64))
    turn = out["boxes"].numpy()[0, 4]
    assert abs(round(turn / (math.pi / 2)) * (math.pi / 2) - turn) < 1e-5 and abs(turn) > 1
    assert_boxes_on_objects(out)


def test_regularize_le90_matches_the_numpy_reader():
    boxes = np.array([[1, 2, 10, 4, 2.0], [1, 2, 4, 10, 0.3], [1, 2, 5, 5, -0.2], [0, 0, 8, 3, -7.0]], np.float32)
    ours = rotated.regularize_rboxes_le90(tf.constant(boxes)).numpy()
    np.testing.assert_allclose(ours, regularize_le90_numpy(boxes), atol=1e-6)
    # At the range's edge float32 and the reader's float64 may pick either end: the same box.
    edge = rotated.regularize_rboxes_le90(tf.constant([[0, 0, 8, 3, -math.pi / 2]], tf.float32)).numpy()
    assert abs(abs(edge[0, 4]) - math.pi / 2) < 1e-6
    assert np.all(ours[:, 2] >= ours[:, 3]) and np.all((ours[:, 4] >= -math.pi / 2) & (ours[:, 4] < math.pi / 2))


def rotated_samples(count):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        n = 0 if i % 4 == 0 else int(rng.integers(1, 4))
        boxes = [[rng.uniform(15, w - 15), rng.uniform(15, h - 15), rng.uniform(12, 20), rng.uniform(4, 7),
                  rng.uniform(-1.5, 1.5)] for _ in range(n)]
        labels = rng.integers(0, 3, n)
        sample = make_sample(h, w, boxes, labels)
        samples.append({k: v.numpy() for k, v in sample.items()} | {"image_id": np.int64(i)})
    return samples


def take(dataset, n):
    return [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in dataset.take(n)]


def test_pipeline_batches_are_static_padded_and_reproducible():
    samples = rotated_samples(12)
    ds = rotated_train_pipeline(samples_dataset(samples), image_size=96, batch_size=3, max_boxes=5, seed=4)
    images_spec, targets_spec = ds.element_spec
    assert images_spec.shape == (3, 96, 96, 3) and targets_spec["boxes"].shape == (3, 5, 5)
    assert targets_spec["labels"].shape == (3, 5) and set(targets_spec) == {"boxes", "labels"}
    batches = take(ds, 3)  # 9 of the 12 samples have objects: every batch is full, the empty ones are gone
    for images, targets in batches:
        valid = targets["labels"] >= 0
        assert valid.any(axis=1).all(), "an image without objects reached a batch"
        assert np.all(targets["boxes"][~valid] == 0)
        boxes = targets["boxes"][valid]
        assert np.all(boxes[:, 2] >= boxes[:, 3]) and np.all(np.abs(boxes[:, 4]) <= math.pi / 2)
        assert np.all((boxes[:, :2] > 0) & (boxes[:, :2] < 96)), "a box centre outside the image was kept"
    again = take(rotated_train_pipeline(samples_dataset(samples), image_size=96, batch_size=3, max_boxes=5, seed=4), 3)
    for (a, ta), (b, tb) in zip(batches, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ta["boxes"], tb["boxes"])


def test_pipeline_pads_with_114_and_keeps_objects_in_boxes():
    sample = rotated_samples(2)[1]
    ds = rotated_train_pipeline(samples_dataset([sample] * 4), image_size=128, batch_size=4, max_boxes=4, seed=0)
    images, targets = take(ds, 1)[0]
    h, w = sample["image"].shape[:2]
    factor = min(128 / max(h, w), 128 / min(h, w))
    new_h, new_w = int(h * factor + 0.5), int(w * factor + 0.5)
    for image, boxes, labels in zip(images.astype(np.uint8), targets["boxes"], targets["labels"]):
        assert np.all(image[new_h:] == 114) and np.all(image[:, new_w:] == 114)
        for box, label in zip(boxes[labels >= 0], labels[labels >= 0]):
            assert_box_on_object(image, box, colour_of(label), margin=2.0)


def test_pipeline_rejects_axis_aligned_boxes_and_bad_settings():
    four = [{"image": np.zeros((8, 8, 3), np.uint8), "boxes": np.zeros((1, 4), np.float32), "labels": np.zeros(1, np.int32)}]
    with pytest.raises(ValueError, match=r"\(N, 5\) rotated boxes"):
        rotated_train_pipeline(samples_dataset(four))
    five = samples_dataset(rotated_samples(2))
    with pytest.raises(ValueError, match="batch_size and max_boxes"):
        rotated_train_pipeline(five, image_size=64, batch_size=0)
    with pytest.raises(ValueError, match="flip_prob must be in"):
        rotated_train_pipeline(five, image_size=64, flip_prob=1.5)
