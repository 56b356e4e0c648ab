import numpy as np
import pytest

from keras_rtmdet.utils import drawing
from keras_rtmdet.utils.comparison_drawing import TITLE_HEIGHT
from keras_rtmdet.utils.comparison_drawing import draw_ground_truth_and_prediction
from keras_rtmdet.utils.drawing import draw_detections

pytestmark = pytest.mark.backend_independent


def _label_rectangles(monkeypatch, *args, **kwargs):
    """The label tags `draw_detections` places, in placing order."""
    placed = []
    place = drawing._draw_label

    def recording(canvas, extent, text, color, font_scale, others):
        placed.append((text, place(canvas, extent, text, color, font_scale, others)))
        return placed[-1][1]

    monkeypatch.setattr(drawing, "_draw_label", recording)
    draw_detections(*args, **kwargs)
    return placed


def _overlap(a, b):
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def test_labels_of_boxes_at_one_place_do_not_hide_each_other(monkeypatch):
    image = np.zeros((160, 160, 3), np.uint8)
    boxes = np.array([[40, 40, 100, 100], [41, 41, 99, 101], [40, 0, 100, 30]], np.float32)
    placed = _label_rectangles(monkeypatch, image, boxes, [0.4, 0.9, 0.6], [0, 1, 2], ["a", "b", "c"])
    assert [text for text, _ in placed] == ["b 0.90", "c 0.60", "a 0.40"]  # the most confident placed first
    rectangles = [rectangle for _, rectangle in placed]
    for i, a in enumerate(rectangles):
        assert 0 <= a[0] and a[2] <= 160 and 0 <= a[1] and a[3] <= 160, a
        for b in rectangles[i + 1:]:
            assert _overlap(a, b) == 0, (a, b)
    # The first label takes the preferred place: just above its box.
    assert rectangles[0][3] == 41


def test_labels_stay_inside_the_image_at_its_edges(monkeypatch):
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.array([[-5, -5, 30, 20], [80, 85, 110, 104]], np.float32)
    for _, (left, top, right, bottom) in _label_rectangles(monkeypatch, image, boxes, [0.5, 0.5], [0, 0], ["long name"]):
        assert 0 <= left and right <= 100 and 0 <= top and bottom <= 100


def test_ground_truth_labels_show_names_only(monkeypatch):
    image = np.zeros((100, 100, 3), np.uint8)
    placed = _label_rectangles(monkeypatch, image, [[10, 30, 50, 60]], None, [1], ["square", "disc"])
    assert [text for text, _ in placed] == ["disc"]


def test_ground_truth_beside_prediction_is_enlarged_to_the_minimum_side():
    image = np.full((120, 160, 3), 90, np.uint8)
    truth = {"boxes": np.array([[10, 10, 60, 50]], np.float32), "labels": np.array([0])}
    prediction = {"boxes": np.array([[80, 40, 150, 110]], np.float32), "scores": np.array([0.8]), "labels": [1]}
    picture = draw_ground_truth_and_prediction(image, truth, prediction, ["square", "disc"], min_side=320)
    panel_w = round(160 * 320 / 120)
    assert picture.shape == (320 + TITLE_HEIGHT, 2 * panel_w + 6, 3) and picture.dtype == np.uint8
    left, right = picture[TITLE_HEIGHT:, :panel_w], picture[TITLE_HEIGHT:, -panel_w:]
    scale = 320 / 120
    # Each panel has its own boxes: the ground truth's edge on the left only, the prediction's on the right only.
    assert (left[int(30 * scale), int(10 * scale)] != 90).any() and (right[int(30 * scale), int(10 * scale)] == 90).all()
    assert (right[int(75 * scale), int(150 * scale)] != 90).any() and (left[int(75 * scale), int(150 * scale)] == 90).all()


def test_masks_and_rotated_boxes_are_enlarged_with_the_image():
    image = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((1, 100, 100), np.uint8)
    mask[0, 40:60, 40:60] = 1
    truth = {"boxes": np.array([[50, 50, 20, 20, 0.3]], np.float32), "labels": np.array([0]), "masks": mask}
    prediction = {
        "boxes": np.zeros((0, 5), np.float32),
        "scores": np.zeros(0),
        "labels": np.zeros(0, int),
        "masks": np.zeros((0, 100, 100), bool),
    }
    picture = draw_ground_truth_and_prediction(image, truth, prediction, min_side=200)
    assert picture.shape == (200 + TITLE_HEIGHT, 406, 3)
    assert picture[TITLE_HEIGHT + 100, 100].any()  # the enlarged mask's centre is filled
    assert not picture[TITLE_HEIGHT:, 206:].any()  # nothing predicted: the right panel is the black image
