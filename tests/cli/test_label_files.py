"""`rtmdet predict --save-txt`'s YOLO-style lines: normalised, clipped to the image, rotated boxes as corners."""

import numpy as np
import pytest

from keras_rtmdet import Detections
from keras_rtmdet_cli.label_files import label_lines
from keras_rtmdet_cli.label_files import write_label_file

pytestmark = pytest.mark.backend_independent


def test_boxes_become_normalised_centre_and_size():
    boxes = np.array([[10.0, 20.0, 30.0, 60.0], [-10.0, 150.0, 50.0, 260.0]])
    lines = label_lines(boxes, [0.9, 0.4], [3, 0], width=100, height=200)
    assert lines[0] == "3 0.200000 0.200000 0.200000 0.200000"
    # Clipped to the image first: x in [0, 50], y in [150, 200].
    assert lines[1] == "0 0.250000 0.875000 0.500000 0.250000"
    assert label_lines(boxes[:1], [0.9], [3], 100, 200, with_score=True)[0].endswith(" 0.900000")


def test_rotated_boxes_become_their_four_corners():
    box = np.array([[50.0, 40.0, 20.0, 10.0, np.pi / 2]])  # 20 wide along y after the quarter turn
    (line,) = label_lines(box, [0.5], [1], width=100, height=80)
    fields = line.split()
    assert fields[0] == "1" and len(fields) == 9
    corners = np.array(fields[1:], float).reshape(4, 2) * [100, 80]
    np.testing.assert_allclose(np.sort(corners[:, 0]), [45, 45, 55, 55], atol=1e-3)
    np.testing.assert_allclose(np.sort(corners[:, 1]), [30, 30, 50, 50], atol=1e-3)


def test_an_image_without_detections_gets_an_empty_file(tmp_path):
    empty = Detections(np.zeros((0, 4)), [], [], image=np.zeros((48, 64, 3), np.uint8))
    path = write_label_file(str(tmp_path), "photo", empty)
    assert path == str(tmp_path / "labels" / "photo.txt")
    assert (tmp_path / "labels" / "photo.txt").read_text() == ""
