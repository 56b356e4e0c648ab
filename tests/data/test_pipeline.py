"""The stage-1 / stage-2 training pipelines and the stage switch, on small synthetic data."""

import numpy as np
import pytest
import tensorflow as tf

from keras_rtmdet.data import pipeline
from keras_rtmdet.data.pipeline_switch import PipelineSwitch
from keras_rtmdet.data.source_dataset import samples_dataset
from keras_rtmdet.data.transforms.box_utils import masks_to_boxes

S = 64
SMALL_POOLS = {"mosaic_pool_size": 4, "mixup_pool_size": 4}
COLOURS = np.array([(220, 40, 40), (40, 200, 60), (50, 70, 230)], np.uint8)


def synthetic_samples(count, with_masks, empty_every=4, seed=0):
    """Grey images of random sizes with 0-3 coloured rectangles (every `empty_every`-th has none)."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        h, w = int(rng.integers(40, 100)), int(rng.integers(40, 100))
        image = np.full((h, w, 3), 128, np.uint8)
        n = 0 if i % empty_every == 0 else int(rng.integers(1, 4))
        boxes, masks = np.zeros((n, 4), np.float32), np.zeros((n, h, w), np.uint8)
        labels = rng.integers(0, 3, n).astype(np.int32)
        for j in range(n):
            x1, y1 = int(rng.integers(0, w - 15)), int(rng.integers(0, h - 15))
            x2, y2 = x1 + int(rng.integers(8, 15)), y1 + int(rng.integers(8, 15))
            image[y1:y2, x1:x2] = COLOURS[labels[j]]
            boxes[j], masks[j, y1:y2, x1:x2] = (x1, y1, x2, y2), 1
        sample = {"image": image, "boxes": boxes, "labels": labels, "image_id": np.int64(i)}
        if with_masks:
            sample["masks"] = masks
        samples.append(sample)
    return samples


def as_dataset(samples):
    return samples_dataset(samples)


def check_batch(images, targets, batch_size, max_boxes, with_masks, mask_stride=4):
    assert images.shape == (batch_size, S, S, 3) and images.dtype == tf.float32
    assert float(tf.reduce_min(images)) >= 0 and float(tf.reduce_max(images)) <= 255
    boxes, labels = targets["boxes"].numpy(), targets["labels"].numpy()
    assert boxes.shape == (batch_size, max_boxes, 4) and boxes.dtype == np.float32
    assert labels.shape == (batch_size, max_boxes) and labels.dtype == np.int32
    valid = labels >= 0
    assert np.all(boxes[~valid] == -1)
    assert np.all((boxes[valid] >= 0) & (boxes[valid] <= S))
    assert set(targets) == ({"boxes", "labels", "masks", "mask_centers"} if with_masks else {"boxes", "labels"})
    if with_masks:
        masks, centers = targets["masks"], targets["mask_centers"].numpy()
        side = S // mask_stride
        assert masks.shape == (batch_size, max_boxes, side, side) and masks.dtype == tf.uint8
        assert centers.shape == (batch_size, max_boxes, 2) and centers.dtype == np.float32
        assert int(tf.reduce_sum(tf.cast(masks, tf.int32)[~valid])) == 0
        assert np.all(centers[~valid] == 0)
        # FilterAnnotations(min_gt_bbox_wh=(1, 1)) keeps boxes wider and taller than 1 px.
        sizes = boxes[valid][:, 2:] - boxes[valid][:, :2]
        assert np.all(sizes > 1)
    return valid.sum()


def numpy_centers(masks):
    """mmdet `center_of_mass` on (..., H, W) 0/1 masks, in float64: (..., 2) (x, y)."""
    masks = masks.astype(np.float64)
    height, width = masks.shape[-2:]
    area = np.maximum(masks.sum((-2, -1)), 1e-7)
    x = (masks * np.arange(width)).sum((-2, -1)) / area
    y = (masks * np.arange(height)[:, None]).sum((-2, -1)) / area
    return np.stack([x, y], -1)


@pytest.mark.backend_independent
@pytest.mark.parametrize("with_masks", [False, True])
@pytest.mark.parametrize("stage", [1, 2])
def test_pipeline_shapes_and_targets(stage, with_masks):
    ds = pipeline.train_pipeline(
        as_dataset(synthetic_samples(12, with_masks)),
        model_size="s", stage=stage, image_size=S, batch_size=2, max_boxes=8, seed=0, recipe=SMALL_POOLS,
    )
    batches = list(ds)
    assert batches, "no batch at all"
    objects = sum(check_batch(images, targets, 2, 8, with_masks) for images, targets in batches)
    assert objects > 0



@pytest.mark.backend_independent
@pytest.mark.parametrize("stage", [1, 2])
def test_mask_targets_are_the_full_resolution_masks_subsampled(stage):
    """mask_stride=4 gives the [2::4, 2::4] pixels and the centres of mass of the masks mask_stride=1 gives."""
    samples = as_dataset(synthetic_samples(12, True))

    def run(mask_stride):
        ds = pipeline.train_pipeline(samples, model_size="s", stage=stage, image_size=S, batch_size=2, max_boxes=8,
                                     seed=3, recipe=SMALL_POOLS, mask_stride=mask_stride)
        return ds.element_spec[1], [targets for _, targets in ds]

    spec, strided = run(4)
    assert spec["masks"].shape == (2, 8, S // 4, S // 4) and spec["mask_centers"].shape == (2, 8, 2)
    full_spec, full = run(1)
    assert full_spec["masks"].shape == (2, 8, S, S)
    assert len(strided) == len(full) > 0
    objects = 0
    for small, big in zip(strided, full):
        np.testing.assert_array_equal(small["boxes"].numpy(), big["boxes"].numpy())
        np.testing.assert_array_equal(small["labels"].numpy(), big["labels"].numpy())
        full_masks = big["masks"].numpy()
        np.testing.assert_array_equal(small["masks"].numpy(), full_masks[:, :, 2::4, 2::4])
        expected = numpy_centers(full_masks)
        np.testing.assert_allclose(small["mask_centers"].numpy(), expected, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(big["mask_centers"].numpy(), expected, rtol=1e-6, atol=1e-5)
        objects += int((big["labels"].numpy() >= 0).sum())
        if stage == 2:
            # Ins crops recompute the boxes from the masks.
            valid = big["labels"].numpy() >= 0
            boxes = masks_to_boxes(tf.reshape(big["masks"], (-1, S, S))).numpy()[valid.ravel()]
            np.testing.assert_array_equal(boxes, big["boxes"].numpy()[valid])
    assert objects > 0


@pytest.mark.backend_independent
def test_mask_stride_errors():
    samples = as_dataset(synthetic_samples(2, True))
    with pytest.raises(ValueError, match="mask_stride must be a positive integer"):
        pipeline.train_pipeline(samples, image_size=S, mask_stride=0)
    with pytest.raises(ValueError, match="not a multiple of mask_stride"):
        pipeline.train_pipeline(samples, image_size=S, mask_stride=3)


def _rect_sample(image_id, rects):
    """A 64² grey image with (x1, y1, x2, y2, label) rectangles as objects and masks."""
    image = np.full((S, S, 3), 128, np.uint8)
    masks = np.zeros((len(rects), S, S), np.uint8)
    for j, (x1, y1, x2, y2, label) in enumerate(rects):
        image[y1:y2, x1:x2] = COLOURS[label]
        masks[j, y1:y2, x1:x2] = 1
    return {
        "image": image,
        "boxes": np.array([r[:4] for r in rects], np.float32).reshape(-1, 4),
        "labels": np.array([r[4] for r in rects], np.int32),
        "image_id": np.int64(image_id),
        "masks": masks,
    }


@pytest.mark.backend_independent
def test_filter_annotations_in_the_ins_pipeline():
    """Stage 2 at ratio 1 on 64² images is crop-free: only FilterAnnotations changes the objects."""
    samples = [
        _rect_sample(0, [(10, 10, 11, 30, 0), (20, 10, 22, 30, 2), (30, 30, 50, 50, 1)]),  # 1 px wide, 2 px, big
        _rect_sample(1, [(10, 10, 40, 11, 0)]),  # only a 1 px tall object: the sample is dropped
        _rect_sample(2, []),  # no object to begin with: kept
        _rect_sample(3, [(5, 5, 25, 25, 1)]),
    ]
    ds = pipeline.train_pipeline(as_dataset(samples), stage=2, image_size=S, batch_size=1, max_boxes=4, seed=0,
                                 shuffle_buffer=0, recipe={"ratio_range": (1.0, 1.0)})
    labels = [sorted(t["labels"].numpy()[0][t["labels"].numpy()[0] >= 0].tolist()) for _, t in ds]
    assert labels == [[1, 2], [], [1]]


@pytest.mark.backend_independent
def test_pipeline_is_reproducible_with_a_seed():
    def run():
        ds = pipeline.train_pipeline(
            as_dataset(synthetic_samples(8, False)), stage=1, image_size=S, batch_size=2, max_boxes=8, seed=5,
            recipe=SMALL_POOLS,
        )
        return [b[1]["boxes"].numpy() for b in ds]

    first, second = run(), run()
    assert len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


@pytest.mark.backend_independent
def test_all_empty_samples_do_not_fail():
    samples = synthetic_samples(6, True, empty_every=1)
    for stage in (1, 2):
        batches = list(pipeline.train_pipeline(as_dataset(samples), stage=stage, image_size=S, batch_size=2, max_boxes=4,
                                               recipe=SMALL_POOLS))
        # Ins crops allow negative crops, so empty images go through as all-padding targets.
        assert batches and all(np.all(t["labels"].numpy() == -1) for _, t in batches)
    det = [{k: v for k, v in s.items() if k != "masks"} for s in samples]
    # A det crop with no box rejects the sample, as mmdet does (it re-draws another index).
    assert list(pipeline.train_pipeline(as_dataset(det), stage=2, image_size=S, batch_size=2, recipe=SMALL_POOLS)) == []


@pytest.mark.backend_independent
def test_cap_keeps_the_largest_and_counts():
    sizes = [3, 9, 1, 7, 5]
    sample = {
        "image": tf.zeros((20, 20, 3), tf.uint8),
        "boxes": tf.constant([[0.0, 0, s, s] for s in sizes]),
        "labels": tf.range(5, dtype=tf.int32),
        "masks": tf.zeros((5, 20, 20), tf.uint8),
        "image_id": tf.constant(0, tf.int64),
    }
    count = tf.Variable(0, dtype=tf.int64)
    ds = tf.data.Dataset.from_tensors(sample).repeat(3).map(lambda s: pipeline.cap_instances(s, 3, count))
    for out in ds:
        np.testing.assert_array_equal(out["labels"].numpy(), [1, 3, 4])
        assert out["masks"].shape == (3, 20, 20)
    assert int(count.numpy()) == 3


@pytest.mark.backend_independent
def test_recipes():
    assert pipeline.RECIPES["tiny"] == {"ratio_range": (0.5, 2.0), "mosaic_pool_size": 20, "mixup_pool_size": 10,
                                        "mixup_prob": 0.5}
    assert pipeline.RECIPES["s"]["ratio_range"] == (0.5, 2.0)
    for size in ("m", "l", "x"):
        assert pipeline.RECIPES[size] == {"ratio_range": (0.1, 2.0), "mosaic_pool_size": 40, "mixup_pool_size": 20,
                                          "mixup_prob": 1.0}
    assert pipeline.crop_options("tiny", 1, True) == (False, False)
    assert pipeline.crop_options("tiny", 2, True) == (True, True)
    assert pipeline.crop_options("l", 1, False) == (False, False)
    with pytest.raises(ValueError):
        pipeline.get_recipe("s", {"pool": 3})


@pytest.mark.backend_independent
def test_choose_stage_reads_the_variable_per_element():
    stage = tf.Variable(0, dtype=tf.int64)
    stream = pipeline.choose_stage([tf.data.Dataset.from_tensors(0).repeat(), tf.data.Dataset.from_tensors(1).repeat()], stage)
    iterator = iter(stream)
    assert [int(next(iterator)) for _ in range(3)] == [0, 0, 0]
    stage.assign(1)
    assert [int(next(iterator)) for _ in range(3)] == [1, 1, 1]


@pytest.mark.backend_independent
def test_staged_pipeline_switches_inside_one_iterator():
    stage = tf.Variable(0, dtype=tf.int64)
    samples = as_dataset(synthetic_samples(24, False, empty_every=100))
    ds = pipeline.staged_train_pipeline(samples, stage, image_size=S, batch_size=2, max_boxes=16, seed=0,
                                        recipe=SMALL_POOLS)
    reference = {
        stage_: [t["boxes"].numpy() for _, t in pipeline.train_pipeline(samples, stage=stage_, image_size=S, batch_size=2,
                                                                        max_boxes=16, seed=0, recipe=SMALL_POOLS)]
        for stage_ in (1, 2)
    }
    iterator = iter(ds)
    first = next(iterator)[1]["boxes"].numpy()
    np.testing.assert_array_equal(first, reference[1][0])
    stage.assign(1)
    # The prefetch buffer may still hold stage-1 batches; after them come stage-2 batches, in order.
    rest = [batch[1]["boxes"].numpy() for batch in iterator]
    stage2_start = next(i for i, b in enumerate(rest) if not any(np.array_equal(b, r) for r in reference[1]))
    assert len(rest) > stage2_start
    for got, want in zip(rest[stage2_start:], reference[2]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.backend_independent
def test_pipeline_switch_callback():
    stage = tf.Variable(0, dtype=tf.int64)
    switch = PipelineSwitch(stage, switch_epoch=3)
    for epoch in range(3):
        switch.on_epoch_begin(epoch)
        assert int(stage.numpy()) == 0
    switch.on_epoch_begin(3)
    assert int(stage.numpy()) == 1


def test_pipeline_switch_inside_fit():
    import keras

    stage = tf.Variable(0, dtype=tf.int64)

    def constant_batches(value):
        return tf.data.Dataset.from_tensors((tf.fill((2, 1), float(value)), tf.zeros((2, 1)))).repeat(3)

    ds = pipeline.choose_stage([constant_batches(0), constant_batches(1)], stage).prefetch(tf.data.AUTOTUNE)
    # An identity model with mse against 0: each batch's loss is the stage (0 or 1) it came from.
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)(inputs))
    model.compile(keras.optimizers.SGD(0.0), "mse")
    losses = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            losses.setdefault(self.epoch, []).append(float(logs["loss"]))

    model.fit(ds, epochs=3, callbacks=[PipelineSwitch(stage, switch_epoch=1), Record()], verbose=0)
    assert losses == {0: [0.0] * 3, 1: [1.0] * 3, 2: [1.0] * 3}
