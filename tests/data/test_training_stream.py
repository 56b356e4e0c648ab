"""A run's data: each epoch a function of the seed and its number, so a resumed stream is the uninterrupted one."""

import numpy as np
import pytest

from keras_rtmdet.data.synthetic import SyntheticShapesSource
from keras_rtmdet.data.training_stream import staged_epochs
from keras_rtmdet.data.training_stream import training_stream

pytestmark = pytest.mark.backend_independent

SIZE, BATCH, STEPS, EPOCHS = 64, 2, 3, 3


def batches(stream):
    return [(images.numpy(), targets["boxes"].numpy()) for images, targets in stream]


def stages(seed=5, switch_epoch=2):
    source = SyntheticShapesSource(6, image_size=(SIZE, SIZE), num_classes=3, seed=0)
    return staged_epochs(source, False, "tiny", SIZE, BATCH, 10, seed, switch_epoch=switch_epoch, shard=None)


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (images_a, boxes_a), (images_b, boxes_b) in zip(a, b):
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(boxes_a, boxes_b)


def test_a_stream_started_inside_an_epoch_continues_the_whole_one():
    whole = batches(training_stream(stages(), 0, EPOCHS, STEPS))
    assert len(whole) == EPOCHS * STEPS
    assert_same_batches(batches(training_stream(stages(), 1, EPOCHS, STEPS, skip_steps=2)), whole[STEPS + 2 :])
    assert_same_batches(batches(training_stream(stages(), 2, EPOCHS, STEPS)), whole[2 * STEPS :])


def test_epochs_differ_and_the_seed_and_stage_switch_matter():
    whole = batches(training_stream(stages(), 0, EPOCHS, STEPS))
    assert not np.array_equal(whole[0][0], whole[STEPS][0])  # another shuffle and other draws each epoch
    other_seed = batches(training_stream(stages(seed=6), 0, 1, STEPS))
    assert not np.array_equal(other_seed[0][0], whole[0][0])
    # Stage 2 from epoch 0 instead of 2: the same shuffle, but no Mosaic / MixUp.
    stage2 = batches(training_stream(stages(switch_epoch=0), 0, 1, STEPS))
    assert not np.array_equal(stage2[0][0], whole[0][0])
