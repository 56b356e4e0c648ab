"""`SyntheticRotatedSource`: reproducible images whose rotated boxes are exactly the drawn objects."""

import math

import numpy as np
import pytest

from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.data.source_dataset import source_dataset
from keras_rtmdet.data.synthetic_rotated import ROTATED_SHAPE_NAMES
from keras_rtmdet.data.synthetic_rotated import SyntheticRotatedSource
from keras_rtmdet.data.synthetic_rotated import rasterize_rbox_shape
from keras_rtmdet.data.synthetic_rotated import shape_inside

pytestmark = pytest.mark.backend_independent


def test_annotations_are_the_tight_rotated_boxes_of_the_drawn_objects():
    source = SyntheticRotatedSource(12, image_size=((90, 140), (90, 140)), num_classes=4, seed=3)
    seen = set()
    for image_id in source.image_ids:
        image, ann = source.load_image(image_id), source.annotations(image_id)
        height, width = image.shape[:2]
        assert ann["boxes"].dtype == np.float32 and ann["labels"].dtype == np.int32 and len(ann["labels"]) >= 1
        for box, label in zip(ann["boxes"], ann["labels"]):
            shape = ROTATED_SHAPE_NAMES[label]
            seen.add(shape)
            mask = rasterize_rbox_shape(shape, box, height, width)
            # The object is one solid colour exactly where its shape, fitted to the box, says.
            colour = image[mask][0]
            assert np.all(image[mask] == colour), (image_id, shape, box)
            # Tight: the drawn pixels reach each side of the box to within a pixel ...
            ys, xs = np.nonzero(mask)
            dx, dy = xs + 0.5 - box[0], ys + 0.5 - box[1]
            u = dx * math.cos(box[4]) + dy * math.sin(box[4])
            v = -dx * math.sin(box[4]) + dy * math.cos(box[4])
            for extent, half in ((u, box[2] / 2), (v, box[3] / 2)):
                assert half - 1.0 <= extent.max() <= half and -half <= extent.min() <= -half + 1.0, (shape, box)
            # ... and a band just outside it is background, not the object's colour.
            grown = rasterize_rbox_shape("ship", box + np.array([0, 0, 4, 4, 0], np.float32), height, width)
            band = grown & ~rasterize_rbox_shape("ship", box, height, width)
            assert np.mean(np.all(image[band] == colour, axis=-1)) < 0.05
        # Whole objects, inside the image.
        corners = rboxes_to_polygons(ann["boxes"]).reshape(-1, 4, 2)
        assert np.all(corners >= 0) and np.all(corners[..., 0] <= width) and np.all(corners[..., 1] <= height)
        np.testing.assert_allclose(ann["polygons"], rboxes_to_polygons(ann["boxes"]))
    assert seen == set(ROTATED_SHAPE_NAMES)


def test_boxes_are_le90_and_the_tank_is_axis_aligned():
    source = SyntheticRotatedSource(10, image_size=(128, 128), num_classes=4, seed=0)
    assert source.class_names == list(ROTATED_SHAPE_NAMES) and source.num_classes == 4 and source.rect_labels == [3]
    boxes = np.concatenate([source.annotations(i)["boxes"] for i in source.image_ids])
    labels = np.concatenate([source.annotations(i)["labels"] for i in source.image_ids])
    assert np.all(boxes[:, 2] >= boxes[:, 3]) and np.all((boxes[:, 4] >= -math.pi / 2) & (boxes[:, 4] < math.pi / 2))
    tanks = boxes[labels == 3]
    assert len(tanks) and np.allclose(tanks[:, 2], tanks[:, 3]) and np.allclose(np.abs(tanks[:, 4]), math.pi / 2)
    aspects = boxes[labels == 0][:, 2] / boxes[labels == 0][:, 3]
    assert aspects.min() > 2.0, "ships are elongated"
    assert SyntheticRotatedSource(2, num_classes=3).rect_labels == []


def test_reproducible_from_the_seed():
    a = SyntheticRotatedSource(3, image_size=(64, 80), seed=5)
    b = SyntheticRotatedSource(3, image_size=(64, 80), seed=5)
    c = SyntheticRotatedSource(3, image_size=(64, 80), seed=6)
    for i in a.image_ids:
        np.testing.assert_array_equal(a.load_image(i), b.load_image(i))
        np.testing.assert_array_equal(a.annotations(i)["boxes"], b.annotations(i)["boxes"])
    assert a.load_image(0).shape == (64, 80, 3)
    assert not np.array_equal(a.load_image(0), c.load_image(0))


def test_every_shape_reaches_every_side_of_its_box():
    u, v = np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201))
    for shape in ROTATED_SHAPE_NAMES:
        inside = shape_inside(shape, u, v)
        assert inside[:, 0].any() or inside[:, 1].any(), shape  # left side
        assert inside[:, -1].any() or inside[:, -2].any(), shape  # right side
        assert inside[0].any() or inside[1].any(), shape  # top
        assert inside[-1].any() or inside[-2].any(), shape  # bottom


def test_source_dataset_reads_five_column_boxes():
    source = SyntheticRotatedSource(3, image_size=(48, 48), seed=1)
    ds = source_dataset(source, shuffle=False)
    assert ds.element_spec["boxes"].shape.as_list() == [None, 5]
    for sample, image_id in zip(ds, source.image_ids):
        np.testing.assert_array_equal(sample["boxes"].numpy(), source.annotations(image_id)["boxes"])
        np.testing.assert_array_equal(sample["image"].numpy(), source.load_image(image_id))


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match=r"num_classes must be in \[1, 4\]"):
        SyntheticRotatedSource(2, num_classes=5)
    with pytest.raises(ValueError, match="num_images must be positive"):
        SyntheticRotatedSource(0)
    with pytest.raises(ValueError, match="no masks"):
        SyntheticRotatedSource(1).annotations(0, with_masks=True)
    with pytest.raises(ValueError, match="Unknown shape"):
        shape_inside("hexagon", np.zeros(1), np.zeros(1))
