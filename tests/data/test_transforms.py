"""Geometric and colour checks of the tf.data training transforms.

The images are solid coloured rectangles on grey, the masks are the
rectangles and the boxes are known exactly, so "the box is still on its
object" can be checked on the pixels after every transform.
"""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_rtmdet.data.transforms import box_utils, geometric, mask_targets, mosaic_mixup, photometric

pytestmark = pytest.mark.backend_independent

COLOURS = np.array(
    [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40), (200, 60, 200), (40, 210, 210)], np.uint8
)
BACKGROUND = 128


def make_sample(height, width, rects, with_masks=True, image_id=0):
    """rects: (x1, y1, x2, y2, label) in integer px; the label picks the colour."""
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    masks = np.zeros((len(rects), height, width), np.uint8)
    for i, (x1, y1, x2, y2, label) in enumerate(rects):
        image[y1:y2, x1:x2] = COLOURS[label]
        masks[i, y1:y2, x1:x2] = 1
    sample = {
        "image": tf.constant(image),
        "boxes": tf.constant(np.array([r[:4] for r in rects], np.float32).reshape(-1, 4)),
        "labels": tf.constant(np.array([r[4] for r in rects], np.int32)),
        "image_id": tf.constant(image_id, tf.int64),
    }
    if with_masks:
        sample["masks"] = tf.constant(masks)
    return sample


def as_numpy(sample):
    return {k: v.numpy() for k, v in sample.items()}


def colour_fraction(image, box, colour, tol=12):
    """Share of the pixels strictly inside `box` that have `colour` (None if too thin to tell)."""
    x1, y1 = int(np.ceil(box[0])), int(np.ceil(box[1]))
    x2, y2 = int(np.floor(box[2])), int(np.floor(box[3]))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    region = image[y1:y2, x1:x2].astype(int)
    return np.mean(np.abs(region - colour.astype(int)).max(-1) <= tol)


def assert_boxes_on_objects(sample, min_fraction=0.8):
    s = as_numpy(sample)
    for box, label in zip(s["boxes"], s["labels"]):
        fraction = colour_fraction(s["image"], box, COLOURS[label])
        assert fraction is None or fraction >= min_fraction, (box, label, fraction)


def assert_masks_match_boxes(sample, atol=1.0):
    mask_boxes = box_utils.masks_to_boxes(sample["masks"]).numpy()
    np.testing.assert_allclose(mask_boxes, sample["boxes"].numpy(), atol=atol)


def visible_labels(image, labels_present, min_pixels=4):
    """Labels whose colour is visible in the image (exact colours only)."""
    found = set()
    for label in labels_present:
        if np.sum(np.all(image == COLOURS[label], axis=-1)) >= min_pixels:
            found.add(int(label))
    return found


def seed(i):
    return tf.constant([i, 7], tf.int64)


# --- box utils ------------------------------------------------------------------


def test_clip_is_inside_filter():
    boxes = tf.constant([[-10, -10, 5, 5], [20, 20, 30, 30], [50, 10, 60, 20], [-20, 0, -5, 10], [5, 5, 5, 5]], tf.float32)
    clipped = box_utils.clip_boxes(boxes, 40, 40).numpy()
    np.testing.assert_array_equal(clipped[0], [0, 0, 5, 5])
    np.testing.assert_array_equal(clipped[2], [40, 10, 40, 20])
    inside = box_utils.is_inside(tf.constant(clipped), 40, 40).numpy()
    # mmdet keeps zero-area boxes strictly inside (the last one) and drops those clipped onto an edge.
    np.testing.assert_array_equal(inside, [True, True, False, False, True])
    sample = {"boxes": boxes, "labels": tf.range(5), "masks": tf.constant(np.arange(5, dtype=np.uint8).reshape(5, 1, 1))}
    kept = box_utils.filter_instances(sample, tf.constant(inside))
    np.testing.assert_array_equal(kept["labels"].numpy(), [0, 1, 4])
    np.testing.assert_array_equal(kept["masks"].numpy().ravel(), [0, 1, 4])


def test_masks_to_boxes_and_flip():
    masks = np.zeros((2, 10, 12), np.uint8)
    masks[0, 2:5, 3:9] = 1
    np.testing.assert_array_equal(box_utils.masks_to_boxes(tf.constant(masks)).numpy(), [[3, 2, 9, 5], [0, 0, 0, 0]])
    flipped = box_utils.flip_boxes_horizontal(tf.constant([[3.0, 2, 9, 5]]), 12).numpy()
    np.testing.assert_array_equal(flipped, [[3, 2, 9, 5]])
    np.testing.assert_array_equal(box_utils.flip_boxes_horizontal(tf.constant([[0.0, 0, 2, 1]]), 12).numpy(), [[10, 0, 12, 1]])


def test_filter_small_boxes_is_mmdet_filter_annotations():
    # Widths 0.5, 1, 1.5, 3 and heights 3, 3, 3, 1: mmdet keeps w > 1 and h > 1 (strictly).
    boxes = tf.constant([[0, 0, 0.5, 3], [0, 0, 1, 3], [2, 2, 3.5, 5], [0, 0, 3, 1]], tf.float32)
    sample = {"boxes": boxes, "labels": tf.range(4), "masks": tf.zeros((4, 6, 6), tf.uint8),
              "mask_centers": tf.zeros((4, 2))}
    out, keep = box_utils.filter_small_boxes(sample, (1, 1))
    assert bool(keep)
    np.testing.assert_array_equal(out["labels"].numpy(), [2])
    assert out["masks"].shape == (1, 6, 6) and out["mask_centers"].shape == (1, 2)
    # A sample it empties is dropped (mmdet's keep_empty=True), unless asked to keep it.
    thin = {"boxes": boxes[:2], "labels": tf.range(2)}
    assert not bool(box_utils.filter_small_boxes(thin, (1, 1))[1])
    emptied, keep = box_utils.filter_small_boxes(thin, (1, 1), drop_if_emptied=False)
    assert bool(keep) and emptied["labels"].shape == (0,)
    # A sample without objects passes as it is.
    empty = {"boxes": tf.zeros((0, 4)), "labels": tf.zeros((0,), tf.int32)}
    assert bool(box_utils.filter_small_boxes(empty, (1, 1))[1])


def test_mask_centers_and_subsampling():
    masks = np.zeros((3, 10, 12), np.uint8)
    masks[0, 2:5, 3:9] = 1  # centre (5.5, 3): integer pixel indices, no +0.5
    masks[1, 7, 11] = 1
    centers = mask_targets.mask_centers(tf.constant(masks)).numpy()
    np.testing.assert_allclose(centers, [[5.5, 3.0], [11.0, 7.0], [0.0, 0.0]])
    assert centers.dtype == np.float32
    sub = mask_targets.subsample_masks(tf.constant(masks), 4).numpy()
    np.testing.assert_array_equal(sub, masks[:, 2::4, 2::4])
    assert sub.shape == (3, 2, 3)
    assert mask_targets.subsample_masks(tf.constant(masks), 1).shape == masks.shape
    with pytest.raises(ValueError):
        mask_targets.subsample_masks(tf.constant(masks), 0)
    # Exact at large sizes: x·m sums beyond 2^31 (int64) and beyond float32's 2^24.
    big = tf.ones((1, 1300, 2000), tf.uint8)
    np.testing.assert_allclose(mask_targets.mask_centers(big).numpy(), [[999.5, 649.5]])
    sample = mask_targets.add_mask_targets({"masks": tf.constant(masks), "labels": tf.range(3)}, 2)
    assert sample["masks"].shape == (3, 5, 6) and sample["mask_centers"].shape == (3, 2)
    no_masks = {"labels": tf.range(3)}
    assert mask_targets.add_mask_targets(no_masks) is no_masks


# --- geometric ------------------------------------------------------------------

RECTS = [(10, 12, 40, 50, 0), (60, 20, 110, 45, 1), (120, 60, 146, 96, 2)]


def test_keep_ratio_size_is_mmcv_rescale_size():
    for h, w, scale in [(100, 150, (128, 128)), (480, 640, (1280, 1280)), (427, 640, (905, 905)), (640, 333, (64, 64))]:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
        expected = (int(h * factor + 0.5), int(w * factor + 0.5))
        got = geometric.keep_ratio_size(h, w, scale)
        assert (int(got[0]), int(got[1])) == expected


def test_random_resize_keeps_boxes_on_objects():
    sample = make_sample(100, 150, RECTS)
    fixed = geometric.random_resize(sample, (128, 128), (1.0, 1.0), seed(0))
    assert fixed["image"].shape == (85, 128, 3)
    for i in range(4):
        out = geometric.random_resize(sample, (128, 128), (0.5, 2.0), seed(i))
        h, w = out["image"].shape[:2]
        assert out["masks"].shape == (3, h, w)
        assert_boxes_on_objects(out)
        assert_masks_match_boxes(out, atol=1.0)


@pytest.mark.parametrize("i", range(6))
def test_random_crop_keeps_exactly_the_visible_objects(i):
    rects = [(5, 5, 40, 40, 0), (150, 150, 195, 190, 1), (80, 90, 120, 130, 2), (0, 170, 30, 200, 3)]
    sample = make_sample(200, 200, rects)
    out, keep = geometric.random_crop(sample, (100, 100), allow_negative_crop=True, seed=seed(i))
    s = as_numpy(out)
    assert s["image"].shape == (100, 100, 3) and s["masks"].shape[1:] == (100, 100)
    assert bool(keep)
    assert visible_labels(s["image"], range(4)) == set(s["labels"].tolist())
    assert_boxes_on_objects(out, min_fraction=0.99)
    # Crop offsets are integers: clipped boxes and cropped masks agree exactly.
    assert_masks_match_boxes(out, atol=0.0)


def test_random_crop_smaller_image_and_rejection():
    small = make_sample(50, 70, [(10, 10, 20, 20, 0)])
    out, keep = geometric.random_crop(small, (100, 100), seed=seed(0))
    assert out["image"].shape == (50, 70, 3) and bool(keep)
    far = make_sample(300, 300, [(0, 0, 10, 10, 0)])
    for i in range(8):
        out, keep = geometric.random_crop(far, (100, 100), seed=seed(i))
        assert bool(keep) == (out["labels"].shape[0] > 0)
        out, keep = geometric.random_crop(far, (100, 100), allow_negative_crop=True, seed=seed(i))
        assert bool(keep)


def test_random_crop_recompute_bbox_from_masks():
    sample = make_sample(120, 120, [(30, 30, 90, 90, 0)])
    # A box looser than its mask: recompute_bbox must replace it by the mask's bounding box.
    sample["boxes"] = tf.constant([[20.0, 20, 100, 100]])
    survived = 0
    for i in range(4):
        out, _ = geometric.random_crop(sample, (60, 60), allow_negative_crop=True, recompute_bbox=True, seed=seed(i))
        survived += out["labels"].shape[0]
        assert_masks_match_boxes(out, atol=0.0)
    assert survived > 0


def random_image_sample(rng, height, width, count=6):
    """Noise image (the worst case for interpolation differences), random boxes and matching masks."""
    x1, y1 = rng.integers(0, width - 6, count), rng.integers(0, height - 6, count)
    x2 = np.minimum(x1 + rng.integers(2, 40, count), width)
    y2 = np.minimum(y1 + rng.integers(2, 40, count), height)
    masks = np.zeros((count, height, width), np.uint8)
    for j in range(count):
        masks[j, y1[j] : y2[j], x1[j] : x2[j]] = 1
    return {
        "image": tf.constant(rng.integers(0, 256, (height, width, 3)).astype(np.uint8)),
        "boxes": tf.constant(np.stack([x1, y1, x2, y2], -1).astype(np.float32)),
        "labels": tf.constant(np.arange(count, dtype=np.int32)),
        "masks": tf.constant(masks),
        "image_id": tf.constant(0, tf.int64),
    }


def test_draw_resize_crop_are_the_two_step_draws():
    rng = np.random.default_rng(1)
    for i in range(10):
        sample = random_image_sample(rng, int(rng.integers(20, 200)), int(rng.integers(20, 200)))
        seed_resize, seed_crop = seed(i), seed(100 + i)
        new_h, new_w, offset_y, offset_x, crop_h, crop_w = geometric.draw_resize_crop(
            *geometric.image_size(sample), (160, 160), (0.1, 2.0), (64, 64), seed_resize, seed_crop
        )
        resized = geometric.random_resize(sample, (160, 160), (0.1, 2.0), seed_resize)
        assert resized["image"].shape[:2] == (int(new_h), int(new_w))
        assert (int(crop_h), int(crop_w)) == (min(64, int(new_h)), min(64, int(new_w)))
        assert 0 <= int(offset_y) <= int(new_h) - int(crop_h) and 0 <= int(offset_x) <= int(new_w) - int(crop_w)
        cropped, _ = geometric.random_crop(resized, (64, 64), True, True, seed_crop)
        explicit, _ = geometric.crop_at(resized, offset_y, offset_x, crop_h, crop_w, True, True)
        np.testing.assert_array_equal(cropped["image"].numpy(), explicit["image"].numpy())
        np.testing.assert_array_equal(cropped["boxes"].numpy(), explicit["boxes"].numpy())


@pytest.mark.parametrize("options", [(False, False), (True, True)])
def test_random_resize_crop_equals_resize_then_crop(options):
    rng = np.random.default_rng(2)
    for i in range(12):
        sample = random_image_sample(rng, int(rng.integers(20, 220)), int(rng.integers(20, 220)))
        if i == 0:
            sample = make_sample(90, 130, RECTS)
        seeds = (seed(i), seed(50 + i))
        two_step, keep_two = geometric.random_crop(
            geometric.random_resize(sample, (160, 160), (0.1, 2.0), seeds[0]), (64, 64), *options, seeds[1]
        )
        fused, keep = geometric.random_resize_crop(sample, (160, 160), (0.1, 2.0), (64, 64), *options, seeds=seeds)
        assert bool(keep) == bool(keep_two)
        a, b = as_numpy(two_step), as_numpy(fused)
        assert a["image"].shape == b["image"].shape
        diff = np.abs(a["image"].astype(int) - b["image"].astype(int))
        assert diff.mean() < 0.05 and diff.max() <= 1, (i, diff.mean(), diff.max())
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_array_equal(a["masks"], b["masks"])
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)


def test_random_flip_mirrors_boxes():
    sample = make_sample(100, 150, RECTS)
    out = geometric.random_flip(sample, prob=1.0)
    expected = np.array([[150 - x2, y1, 150 - x1, y2] for x1, y1, x2, y2, _ in RECTS], np.float32)
    np.testing.assert_array_equal(out["boxes"].numpy(), expected)
    np.testing.assert_array_equal(out["image"].numpy(), sample["image"].numpy()[:, ::-1])
    assert_boxes_on_objects(out, min_fraction=1.0)
    assert_masks_match_boxes(out, atol=0.0)
    same = geometric.random_flip(sample, prob=0.0)
    np.testing.assert_array_equal(same["boxes"].numpy(), sample["boxes"].numpy())


def test_pad_to():
    sample = make_sample(100, 150, RECTS)
    out = geometric.pad_to(sample, (160, 160), 114)
    image = out["image"].numpy()
    assert image.shape == (160, 160, 3) and out["masks"].shape == (3, 160, 160)
    np.testing.assert_array_equal(image[:100, :150], sample["image"].numpy())
    assert np.all(image[100:] == 114) and np.all(image[:, 150:] == 114)
    assert out["masks"].numpy()[:, 100:].sum() == 0
    np.testing.assert_array_equal(out["boxes"].numpy(), sample["boxes"].numpy())


def test_empty_samples_pass_every_transform():
    sample = make_sample(90, 70, [])
    out = geometric.random_resize(sample, (128, 128), (0.5, 2.0), seed(0))
    out, keep = geometric.random_crop(out, (64, 64), seed=seed(1))
    assert not bool(keep)
    out, keep = geometric.random_crop(out, (64, 64), allow_negative_crop=True, recompute_bbox=True, seed=seed(1))
    assert bool(keep)
    out = photometric.yolox_hsv(geometric.random_flip(out, 1.0), seed=seed(2))
    out = geometric.pad_to(out, (64, 64))
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 64, 64)
    mosaic = mosaic_mixup.mosaic([out, out, out, out], 40, 50, img_scale=64)
    assert mosaic["image"].shape == (128, 128, 3) and mosaic["labels"].shape == (0,)
    mixed = mosaic_mixup.mixup(out, out, tf.constant(True))
    assert mixed["labels"].shape == (0,)


# --- photometric ----------------------------------------------------------------


def random_image(shape=(64, 96, 3)):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    image[0, :6] = [[0, 0, 0], [255, 255, 255], [9, 9, 9], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    return image


def test_rgb_to_hsv_matches_cv2_exactly():
    image = random_image()
    np.testing.assert_array_equal(photometric.rgb_to_hsv_uint8(tf.constant(image)).numpy(), cv2.cvtColor(image, cv2.COLOR_RGB2HSV))


def test_zero_gain_round_trip_within_one_level():
    image = random_image()
    out = photometric.apply_hsv_gains(tf.constant(image), tf.zeros(3, tf.int32)).numpy()
    reference = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), cv2.COLOR_HSV2RGB)
    assert np.abs(out.astype(int) - reference).max() <= 1


@pytest.mark.parametrize("gains", [(3, -20, 25), (-5, 30, -30), (4, 0, 0), (0, -30, 0)])
def test_hsv_gains_match_cv2(gains):
    image = random_image()
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
    reference = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    out = photometric.apply_hsv_gains(tf.constant(image), tf.constant(gains)).numpy()
    # cv2's own SIMD and scalar HSV2RGB paths differ by one level on ~1/3 of pixels.
    assert np.abs(out.astype(int) - reference).max() <= 1


def test_hsv_gain_distribution():
    gains = np.stack([photometric.hsv_gains(seed=seed(i)).numpy() for i in range(200)])
    assert np.all(np.abs(gains) <= [5, 30, 30])
    assert np.mean(gains == 0) > 0.4  # Bernoulli(0.5) zeros plus truncation
    assert gains[:, 1].max() > 20 and gains[:, 1].min() < -20


def test_yolox_hsv_keeps_instances():
    sample = make_sample(100, 150, RECTS)
    out = photometric.yolox_hsv(sample, seed=seed(5))
    np.testing.assert_array_equal(out["boxes"].numpy(), sample["boxes"].numpy())
    np.testing.assert_array_equal(out["masks"].numpy(), sample["masks"].numpy())


# --- mosaic / mixup -------------------------------------------------------------

S = 64
MOSAIC_INPUTS = [
    (80, 60, [(5, 5, 25, 30, 0), (40, 50, 58, 78, 1)]),
    (64, 100, [(10, 10, 40, 40, 2)]),
    (50, 50, [(0, 0, 50, 20, 3), (20, 30, 45, 48, 4)]),
    (120, 90, [(60, 80, 88, 118, 5)]),
]


def mosaic_samples():
    return [make_sample(h, w, rects, image_id=k) for k, (h, w, rects) in enumerate(MOSAIC_INPUTS)]


def expected_mosaic_count(cx, cy):
    """Objects whose scaled + translated box still overlaps the 2S canvas."""
    count = 0
    for k, (h, w, rects) in enumerate(MOSAIC_INPUTS):
        ratio = min(S / h, S / w)
        new_w, new_h = int(w * ratio), int(h * ratio)
        left = cx - new_w if k in (0, 2) else cx
        top = cy - new_h if k in (0, 1) else cy
        for x1, y1, x2, y2, _ in rects:
            bx1, by1 = np.clip([x1 * ratio + left, y1 * ratio + top], 0, 2 * S)
            bx2, by2 = np.clip([x2 * ratio + left, y2 * ratio + top], 0, 2 * S)
            count += bx1 < 2 * S and by1 < 2 * S and bx2 > 0 and by2 > 0
    return count


@pytest.mark.parametrize("center", [(64, 64), (32, 38), (95, 40), (40, 95)])
def test_mosaic_geometry(center):
    out = mosaic_mixup.mosaic(mosaic_samples(), *center, img_scale=S)
    assert out["image"].shape == (2 * S, 2 * S, 3) and out["masks"].shape[1:] == (2 * S, 2 * S)
    assert out["labels"].shape[0] == expected_mosaic_count(*center)
    if center == (64, 64):
        assert sorted(out["labels"].numpy().tolist()) == [0, 1, 2, 3, 4, 5]
        # The top-left image is resized to 48 x 64 and ends at the centre: left of it is padding.
        assert np.all(out["image"].numpy()[:64, :16] == 114)
        assert np.all(out["image"].numpy()[:64, 16:64] != 114)
    assert int(out["image_id"]) == 0
    assert_boxes_on_objects(out)
    assert_masks_match_boxes(out, atol=1.0)


def test_cached_mosaic_dataset_keeps_count():
    samples = [mosaic_samples()[k % 4] for k in range(6)]
    ds = tf.data.Dataset.from_tensor_slices([0]).flat_map(lambda _: tf.data.Dataset.from_generator(
        lambda: iter([as_numpy(s) for s in samples]),
        output_signature={k: tf.TensorSpec([None] * v.shape.rank, v.dtype) for k, v in samples[0].items()},
    ))
    outs = list(ds.apply(mosaic_mixup.cached_mosaic(img_scale=S, pool_size=4, seed=1)))
    assert len(outs) == 6
    for out in outs:
        assert out["image"].shape == (2 * S, 2 * S, 3)
        assert_boxes_on_objects(out)
        assert_masks_match_boxes(out, atol=1.0)


def padded(h, w, rects, image_id=0):
    return geometric.pad_to(make_sample(h, w, rects, image_id=image_id), (S, S))


def test_mixup_keeps_both_sets():
    a = padded(64, 64, [(2, 2, 20, 20, 0), (30, 40, 60, 62, 1)])
    b = padded(40, 64, [(5, 5, 25, 30, 2)])
    for flip in (False, True):
        out = mosaic_mixup.mixup(a, b, tf.constant(flip))
        np.testing.assert_array_equal(out["labels"].numpy(), [0, 1, 2])
        partner_box = [64 - 25, 5, 64 - 5, 30] if flip else [5, 5, 25, 30]
        np.testing.assert_array_equal(out["boxes"].numpy()[2], partner_box)
        placed = b["image"].numpy()[:, ::-1] if flip else b["image"].numpy()
        expected = (0.5 * a["image"].numpy().astype(np.float32) + 0.5 * placed.astype(np.float32)).astype(np.uint8)
        np.testing.assert_array_equal(out["image"].numpy(), expected)
        assert_masks_match_boxes(out, atol=0.0)


def test_cached_mixup_skips_without_partner_boxes():
    empty = [as_numpy(padded(50, 60, [], image_id=i)) for i in range(3)]
    spec = {k: tf.TensorSpec([None] * v.ndim, tf.as_dtype(v.dtype)) for k, v in empty[0].items()}
    ds = tf.data.Dataset.from_generator(lambda: iter(empty), output_signature=spec)
    outs = list(ds.apply(mosaic_mixup.cached_mixup(img_scale=S, pool_size=4, seed=0)))
    assert len(outs) == 3
    for out, original in zip(outs, empty):
        np.testing.assert_array_equal(out["image"].numpy(), original["image"])


def test_cached_mixup_dataset_keeps_count_and_instances():
    samples = [as_numpy(padded(64, 64, [(2 + i, 2, 20 + i, 20, i % 6)], image_id=i)) for i in range(5)]
    spec = {k: tf.TensorSpec([None] * v.ndim, tf.as_dtype(v.dtype)) for k, v in samples[0].items()}
    ds = tf.data.Dataset.from_generator(lambda: iter(samples), output_signature=spec)
    outs = list(ds.apply(mosaic_mixup.cached_mixup(img_scale=S, pool_size=4, seed=3)))
    assert [int(o["image_id"]) for o in outs] == [0, 1, 2, 3, 4]
    for out in outs:
        assert out["labels"].shape[0] == 2 and out["image"].shape == (S, S, 3)
        assert_masks_match_boxes(out, atol=0.0)
