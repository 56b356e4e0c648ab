"""`Detections` (one image's results: drawn, saved, JSON, COCO, pandas), `model.detect_images` and
`predict(clip_boxes=...)`.

The `Detections` tests run on hand-made arrays, once; the model tests on the task tests' tiny models.
"""

import json
import sys

import keras
import numpy as np
import pytest

from keras_rtmdet import Detections
from keras_rtmdet import RTMDet
from keras_rtmdet import RTMDetIns
from keras_rtmdet import RTMDetRotated
from keras_rtmdet.models.compiled_step import COMPILING_BACKENDS
from keras_rtmdet.models.detections import detections_from_predictions
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.image_io import write_image
from tests.test_case import CountedPostprocess
from tests.test_case import TaskCase

NAMES = ["cat", "dog", "bird"]


def hand_made(rotated=False, masks=True):
    """Two detections on a black 60×80 image: a (K, 4) or (K, 5) box each, the first with a mask."""
    image = np.zeros((60, 80, 3), np.uint8)
    if rotated:
        boxes = np.array([[25, 20, 30, 16, 0.3], [60, 40, 20, 10, -0.5]], np.float32)
    else:
        boxes = np.array([[10, 10, 40, 30], [50, 20, 75, 55]], np.float32)
    mask = np.zeros((2, 60, 80), bool)
    mask[0, 12:28, 12:38] = True
    return Detections(boxes, [0.9, 0.4], [1, 2], mask if masks else None, image, "a.png", NAMES)


@pytest.mark.backend_independent
def test_plot_draws_boxes_and_masks_on_a_copy():
    found = hand_made()
    drawn = found.plot()
    assert drawn.shape == (60, 80, 3) and drawn.dtype == np.uint8
    assert not found.image.any(), "the attached image must stay as it was"
    assert drawn[30, 25].any()  # the first box's bottom edge
    assert not drawn[45, 5].any()  # away from every box, label and mask
    assert (drawn != found.plot(masks=False))[found.masks[0]].any()
    with pytest.raises(ValueError, match="no image attached"):
        Detections(found.boxes, found.scores, found.labels).plot()


@pytest.mark.backend_independent
def test_save_writes_the_plot(tmp_path):
    found = hand_made()
    assert found.save(tmp_path / "out.png") == tmp_path / "out.png"
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), found.plot())
    with pytest.raises(ValueError, match="Cannot encode"):
        found.save(tmp_path / "out.unknown")


@pytest.mark.backend_independent
def test_json_records_hold_boxes_classes_and_rle_masks():
    from pycocotools import mask as mask_util

    found = hand_made()
    payload = json.loads(found.to_json())
    assert (payload["file"], payload["height"], payload["width"]) == ("a.png", 60, 80)
    first, second = payload["detections"]
    assert first == {**first, "box": [10.0, 10.0, 40.0, 30.0], "score": 0.9, "label": 1, "class_name": "dog"}
    assert second["class_name"] == "bird"
    np.testing.assert_array_equal(mask_util.decode(first["mask"]).astype(bool), found.masks[0])


@pytest.mark.backend_independent
def test_coco_records_are_xywh_with_rle_segmentations():
    from pycocotools import mask as mask_util

    found = hand_made()
    records = found.to_coco(image_id=7, category_ids=[1, 3, 5])
    assert [r["category_id"] for r in records] == [3, 5]
    assert records[0]["image_id"] == 7 and records[0]["bbox"] == [10.0, 10.0, 30.0, 20.0]
    assert records[0]["score"] == pytest.approx(0.9)
    for record, mask in zip(records, found.masks):
        np.testing.assert_array_equal(mask_util.decode(record["segmentation"]).astype(bool), mask)
    plain = hand_made(masks=False).to_coco(image_id=7)
    assert [r["category_id"] for r in plain] == [1, 2] and "segmentation" not in plain[0]


@pytest.mark.backend_independent
def test_rotated_detections_give_rboxes_and_polygons():
    found = hand_made(rotated=True, masks=False)
    assert found.box_format == "xywha"
    record = found.to_records()[0]
    assert record["rbox"] == pytest.approx([25, 20, 30, 16, 0.3])
    corners = np.reshape(record["polygon"], (4, 2))
    np.testing.assert_allclose(corners.mean(axis=0), [25, 20], atol=1e-4)
    assert found.plot()[20].any()  # the polygon crosses the centre's row
    with pytest.raises(ValueError, match="axis-aligned"):
        found.to_coco(image_id=1)


@pytest.mark.backend_independent
def test_dataframe_columns():
    frame = hand_made().to_dataframe()
    assert list(frame.columns) == ["label", "class_name", "score", "x1", "y1", "x2", "y2"]
    assert frame["class_name"].tolist() == ["dog", "bird"]
    rotated = hand_made(rotated=True, masks=False).to_dataframe()
    assert list(rotated.columns)[3:] == ["cx", "cy", "w", "h", "angle"]


@pytest.mark.backend_independent
def test_dataframe_without_pandas_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` then raises ImportError
    with pytest.raises(ImportError, match="needs pandas, an optional dependency"):
        hand_made().to_dataframe()


@pytest.mark.backend_independent
def test_masks_without_pycocotools_name_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ImportError, match="needs pycocotools, an optional dependency"):
        hand_made().to_json()
    assert hand_made(masks=False).to_json()  # boxes alone need no pycocotools


@pytest.mark.backend_independent
def test_indexing_and_bad_arrays():
    found = hand_made()
    kept = found[found.scores > 0.5]
    assert len(kept) == 1 and kept.names == ["dog"] and kept.masks.shape == (1, 60, 80)
    assert len(found[-1]) == 1 and found[-1].labels.tolist() == [2]
    assert "2 xyxy boxes, masks, image 60x80" in repr(found)
    with pytest.raises(ValueError, match=r"\(K, 4\) xyxy or \(K, 5\)"):
        Detections(np.zeros((2, 3)), [0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="Got 2 boxes, 1 scores"):
        Detections(np.zeros((2, 4)), [0.1], [0, 0])
    with pytest.raises(ValueError, match="masks must be"):
        Detections(found.boxes, found.scores, found.labels, np.zeros((2, 10, 10), bool), found.image)


@pytest.mark.backend_independent
def test_predictions_are_cut_to_each_images_detections_and_size():
    images = [np.zeros((4, 6, 3), np.uint8), np.zeros((5, 3, 3), np.uint8)]
    outputs = {
        "boxes": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "scores": np.array([[0.9, 0.5, -1], [0.7, -1, -1]], np.float32),
        "labels": np.array([[0, 2, -1], [1, -1, -1]], np.int32),
        "num_detections": np.array([2, 1]),
        "masks": np.ones((2, 3, 5, 6), bool),
    }
    outputs["masks"][0, :, :4] = False  # the first image's masks are True only in the batch's padding
    first, second = detections_from_predictions(outputs, images, ["x.jpg", None], NAMES)
    assert len(first) == 2 and first.masks.shape == (2, 4, 6) and first.path == "x.jpg"
    assert not first.masks.any(), "the padding must be cut away"
    assert len(second) == 1 and second.masks.shape == (1, 5, 3) and second.path is None
    np.testing.assert_array_equal(second.boxes, outputs["boxes"][1, :1])


# --- on models ---


@pytest.fixture(scope="module")
def det():
    return TaskCase(RTMDet)


def assert_valid_detections_equal(results, outputs, images):
    """Each `Detections` holds its image and exactly `predict`'s valid detections of it."""
    assert len(results) == len(images)
    for b, (found, image) in enumerate(zip(results, images)):
        count = int(outputs["num_detections"][b])
        assert len(found) == count > 0
        np.testing.assert_array_equal(found.image, image)
        np.testing.assert_allclose(found.boxes, outputs["boxes"][b, :count], rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(found.scores, outputs["scores"][b, :count], rtol=1e-6)
        np.testing.assert_array_equal(found.labels, outputs["labels"][b, :count])
        if "masks" in outputs:
            height, width = image.shape[:2]
            np.testing.assert_array_equal(found.masks, outputs["masks"][b, :count, :height, :width])


def test_detect_images_reads_files_and_arrays_as_predict_does(det, tmp_path):
    model, images = det.model, det.images
    write_image(tmp_path / "first.png", images[0])
    results = model.detect_images([str(tmp_path / "*.png"), images[1]], verbose=0)
    assert [found.path for found in results] == [str(tmp_path / "first.png"), None]
    assert_valid_detections_equal(results, model.predict(images, verbose=0), images)


def test_detect_images_of_instance_and_rotated_models():
    for task, settings in ((RTMDetIns, {}), (RTMDetRotated, {"exp_on_reg": True})):
        case = TaskCase(task, **settings)
        results = case.model.detect_images(case.images, verbose=0)
        assert_valid_detections_equal(results, case.predictions, case.images)
        assert (results[0].masks is not None) == case.model.variant.predicts_masks
        assert results[0].box_format == case.model.variant.box_format
    with pytest.raises(ValueError, match="RTMDet-R predicts rotated boxes"):
        case.model.predict(case.images, verbose=0, clip_boxes=True)


def assert_clipped(clipped, plain, images):
    """`clipped` holds `plain`'s detections (no NMS: the same ones), each box clipped to its image."""
    for b, image in enumerate(images):
        count = int(plain["num_detections"][b])
        assert int(clipped["num_detections"][b]) == count
        height, width = image.shape[:2]
        expected = np.clip(plain["boxes"][b, :count], 0, [width, height, width, height])
        np.testing.assert_allclose(clipped["boxes"][b, :count], expected, rtol=1e-6, atol=1e-4)
        np.testing.assert_array_equal(clipped["labels"][b, :count], plain["labels"][b, :count])


def test_clip_boxes_is_a_step_input_on_either_letterbox(det):
    model, images = det.model, det.images
    # IoU threshold 1 suppresses nothing: clipped or not, the same candidates survive.
    settings = {"iou_threshold": 1.0, "verbose": 0}
    one_size = [images[0], images[0][::-1].copy()]
    with CountedPostprocess(model) as counter:
        plain = model.predict(images, letterbox="host", **settings)
        clipped = model.predict(images, letterbox="host", clip_boxes=True, **settings)
        plain_device = model.predict(one_size, letterbox="device", **settings)
        clipped_device = model.predict(one_size, letterbox="device", clip_boxes=True, **settings)
    outside = [
        (plain["boxes"][b, : plain["num_detections"][b], 2:] > image.shape[1::-1]).any()
        for b, image in enumerate(images)
    ]
    assert any(outside), "no box reaches past its image: the test would not see a clip"
    assert_clipped(clipped, plain, images)
    assert_clipped(clipped_device, plain_device, one_size)
    # One trace per letterbox place at most; an eager step runs per call.
    assert counter.runs <= 2 if keras.config.backend() in COMPILING_BACKENDS else counter.runs == 4


@pytest.mark.backend_independent
def test_bad_clip_boxes_and_detect_images_inputs_are_refused(det):
    import tensorflow as tf

    model, images = det.model, det.images
    with pytest.raises(ValueError, match="clip_boxes must be True or False, got 'yes'"):
        model.predict(images, verbose=0, clip_boxes="yes")
    with pytest.raises(ValueError, match="classes, agnostic_nms and clip_boxes are inputs"):
        model.predict(images, verbose=0, clip_boxes=True, callbacks=[keras.callbacks.History()])
    prep = model.preprocessor(images)
    dataset = tf.data.Dataset.from_tensor_slices({key: prep[key] for key in ("images", "scale_factors")}).batch(2)
    with pytest.raises(ValueError, match="must hold original_sizes"):
        model.predict(dataset, verbose=0, clip_boxes=True)
    with pytest.raises(ValueError, match="a dataset yields preprocessed batches"):
        model.detect_images(dataset)
    with pytest.raises(ValueError, match="matches no file"):
        model.detect_images("no_such_folder/*.png")
