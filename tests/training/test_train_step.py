"""`fit` runs RTMDet's training path on every backend."""

import keras
import numpy as np
import pytest

from keras_rtmdet import RTMDet
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from tests.test_case import one_batch_forever
from tests.test_case import to_numpy

SIZE = 64


def shapes_batch(num_images=4, seed=0):
    """Coloured rectangles on a grey background; class = colour."""
    rng = np.random.default_rng(seed)
    images = np.full((num_images, SIZE, SIZE, 3), 40, np.float32)
    boxes = np.full((num_images, 3, 4), -1, np.float32)
    labels = np.full((num_images, 3), -1, np.int32)
    colours = [[255, 60, 60], [60, 255, 60], [60, 60, 255]]
    for i in range(num_images):
        for j in range(2):
            # One object per half of the image, so that none hides another.
            # At least 20 px: four or more stride-8 priors fall inside every
            # box. With only one, a prior whose initial box comes out inverted
            # has IoU 0, hence a zero soft label and zero box-loss weight (as in
            # the reference), and that object may never be learnt.
            w, h = rng.integers(20, SIZE // 2 - 2), rng.integers(20, 30)
            x0, y0 = j * SIZE // 2 + rng.integers(0, SIZE // 2 - w), rng.integers(0, SIZE - h)
            c = int(rng.integers(0, 3))
            images[i, y0 : y0 + h, x0 : x0 + w] = colours[c]
            boxes[i, j] = [x0, y0, x0 + w, y0 + h]
            labels[i, j] = c
    return images, {"boxes": boxes, "labels": labels}


def tiny_model(**kwargs):
    keras.utils.set_random_seed(1)
    return RTMDet.from_arch(0.167, 0.125, 1, False, num_classes=3, image_size=(SIZE, SIZE), **kwargs)


def test_fit_trains_and_reports_the_loss_terms():
    images, targets = shapes_batch()
    model = tiny_model()
    epochs = 30
    model.compile(optimizer=rtmdet_optimizer(model, epochs, 1, 4, base_learning_rate=0.004, base_batch_size=4))
    before = to_numpy(model.head.rtm_reg[0].kernel).copy()
    history = model.fit(one_batch_forever(images, targets), steps_per_epoch=1, epochs=epochs, verbose=0).history
    assert {"loss", "loss_cls", "loss_bbox"} <= set(history)
    losses = np.array(history["loss"])
    assert np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses, np.array(history["loss_cls"]) + np.array(history["loss_bbox"]), rtol=1e-4)
    # A test of the step's plumbing, not of convergence: with the soft-label
    # normalisation the loss first rises from ~0 as boxes start to overlap
    # their GTs, and 30 steps do not show where it goes from there.
    assert losses.max() > 10 * losses[0]
    assert not np.allclose(to_numpy(model.head.rtm_reg[0].kernel), before)


def test_batch_without_objects_trains_without_nan():
    images, _ = shapes_batch(2)
    empty = {"boxes": np.full((2, 3, 4), -1, np.float32), "labels": np.full((2, 3), -1, np.int32)}
    model = tiny_model()
    model.compile(optimizer=rtmdet_optimizer(model, 2, 1, 2))
    history = model.fit(images, empty, batch_size=2, epochs=2, verbose=0).history
    assert history["loss_bbox"] == [0.0, 0.0]
    assert np.all(np.isfinite(history["loss_cls"]))
    assert all(np.all(np.isfinite(to_numpy(v))) for v in model.weights)


def test_box_formats_and_degenerate_boxes():
    images, targets = shapes_batch(2)
    model = tiny_model()
    y_pred = model(images)
    xyxy = model.compute_loss(images, targets, y_pred)
    b = targets["boxes"]
    xywh = np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], -1)
    model_xywh = tiny_model(bounding_box_format="xywh")
    model_xywh.set_weights(model.get_weights())
    np.testing.assert_allclose(
        to_numpy(model_xywh.compute_loss(images, {"boxes": xywh, "labels": targets["labels"]}, y_pred)),
        to_numpy(xyxy),
        rtol=1e-5,
    )
    degenerate = {"boxes": b.copy(), "labels": targets["labels"].copy()}
    degenerate["boxes"][:, 2] = [5, 5, 5, 5]
    degenerate["labels"][:, 2] = 1
    np.testing.assert_allclose(to_numpy(model.compute_loss(images, degenerate, y_pred)), to_numpy(xyxy), rtol=1e-5)


def test_bad_targets_are_rejected_with_a_reason():
    images, targets = shapes_batch(2)
    model = tiny_model()
    y_pred = model(images)
    with pytest.raises(ValueError, match=r"lack \['labels'\]"):
        model.compute_loss(images, {"boxes": targets["boxes"]}, y_pred)
    with pytest.raises(ValueError, match=r"must be \(batch, N, 4\)"):
        model.compute_loss(images, {"boxes": targets["boxes"][..., :3], "labels": targets["labels"]}, y_pred)
    with pytest.raises(ValueError, match="must be a dict"):
        model.compute_loss(images, targets["boxes"], y_pred)
    with pytest.warns(UserWarning, match="classes"):
        model.compute_loss(images, {"boxes": targets["boxes"], "classes": targets["labels"]}, y_pred)
