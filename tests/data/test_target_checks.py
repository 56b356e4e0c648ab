"""Target checks (`utils/target_checks.py`) and the readers running them when built: errors name file and annotation."""

import json
import math
import re

import cv2
import numpy as np
import pytest

from keras_rtmdet.data.coco_json import CocoJsonSource
from keras_rtmdet.data.synthetic import SyntheticShapesSource
from keras_rtmdet.data.synthetic_rotated import SyntheticRotatedSource
from keras_rtmdet.utils.target_checks import TargetError
from keras_rtmdet.utils.target_checks import check_target_batches
from keras_rtmdet.utils.target_checks import target_problems

pytestmark = pytest.mark.backend_independent

GOOD = [[8, 10, 40, 30], [30, 5, 60, 40]]


@pytest.mark.parametrize(
    "boxes, labels, want",
    [
        (GOOD, [0, 2], []),
        ([[8, 10, np.nan, 30], [30, 5, 60, 40]], [0, 2], [(0, "non-finite box coordinates")]),
        (GOOD, [0, 3], [(1, r"label 3 is outside \[0, 3\)")]),
        (GOOD, [-1, 1], []),  # padding is not checked
        ([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 1.0, 0.9]], [0, 1], [(None, "look normalised")]),
        ([[8, 10, 40, 30], [200, 5, 230, 40]], [0, 1], [(1, "far outside the 48x64 image")]),
        # A small box just past the border is dropped or clipped, not an error (OUTSIDE_MIN_MARGIN).
        ([[8, 10, 40, 30], [66, 5, 67, 6]], [0, 1], []),
        ([[30, 20, 20, 10, 0.3], [200, 20, 20, 10, 0.0]], [0, 1], [(1, "far outside")]),  # rotated (cx, cy, w, h, a)
    ],
)
def test_target_problems(boxes, labels, want):
    problems = target_problems(np.array(boxes, np.float32), labels, 3, (48, 64))
    assert [index for index, _ in problems] == [index for index, _ in want]
    for (_, message), (_, pattern) in zip(problems, want):
        assert re.search(pattern, message), message


def test_check_target_batches_names_the_first_faulty_image():
    boxes = np.tile(np.array(GOOD, np.float32), (7, 1, 1))
    labels = np.tile(np.array([0, -1]), (7, 1))
    check_target_batches(boxes, labels, 3, (48, 64), batch_size=4)
    labels[5, 1] = 7
    boxes[6, 0, 0] = np.inf
    with pytest.raises(TargetError, match=r"batch 1, image 1 \(row 5 of the targets\), instance 1: label 7"):
        check_target_batches(boxes, labels, 3, (48, 64), batch_size=4)


def test_synthetic_sources_pass_the_checks():
    for source in (
        SyntheticShapesSource(12, image_size=((60, 90), (70, 100)), num_classes=4, max_objects=6, seed=3),
        SyntheticRotatedSource(12, image_size=((60, 90), (70, 100)), num_classes=4, seed=3),
    ):
        for image_id in source.image_ids:
            sample = source.sample(image_id)
            assert target_problems(sample["boxes"], sample["labels"], 4, sample["image"].shape[:2]) == []


def write_coco(tmp_path, changes=None, extra=()):
    """Two 48x64 images with two objects each; `changes` updates annotation id 7 (of img1.jpg)."""
    images, annotations = [], []
    for i in (1, 2):
        cv2.imwrite(str(tmp_path / f"img{i}.jpg"), np.full((48, 64, 3), 90, np.uint8))
        images.append({"id": i, "file_name": f"img{i}.jpg", "height": 48, "width": 64})
        for k, box in enumerate(([8, 10, 32, 20], [30, 5, 20, 30])):
            annotations.append({"id": 7 + 5 * (i - 1) + k, "image_id": i, "category_id": 1, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    annotations[0].update(changes or {})
    annotations.extend(extra)
    path = tmp_path / "ann.json"
    # json writes NaN and Infinity as such, and pycocotools (json.load) reads them back.
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return path


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"bbox": [8, math.nan, 32, 20]}, "non-finite box coordinates"),
        # Before the checks, an infinite width passed every drop test and became a target.
        ({"bbox": [8, 10, math.inf, 20]}, "non-finite box coordinates"),
        ({"bbox": [8, 10, 32]}, r"bbox must be 4 numbers \[x, y, w, h\], got \[8, 10, 32\]"),
        ({"bbox": ["8", 10, 32, 20]}, "bbox must be 4 numbers"),
        ({"bbox": None}, "bbox must be 4 numbers"),
        ({"category_id": 99}, r"unknown category 99 \(the file's categories: \[1, 2\]\)"),
        ({"bbox": [300, 10, 32, 20]}, "lies far outside the 48x64 image"),
        ({"bbox": [8, -200, 32, 20], "iscrowd": 1}, "lies far outside"),  # crowd regions are checked too
    ],
)
def test_coco_errors_name_the_file_image_and_annotation(tmp_path, changes, problem):
    path = write_coco(tmp_path, changes)
    with pytest.raises(ValueError, match=problem) as error:
        CocoJsonSource(path, tmp_path)
    assert "ann.json" in str(error.value) and "annotation id 7" in str(error.value)
    if "4 numbers" not in problem:
        assert "img1.jpg (id 1)" in str(error.value)


def test_coco_normalised_boxes_fail_for_the_file_not_one_image(tmp_path):
    tiny = {"id": 30, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0}
    normalised = [0.1, 0.2, 0.5, 0.4]
    path = write_coco(tmp_path)
    data = json.loads(path.read_text())
    for annotation in data["annotations"]:
        annotation.update(bbox=normalised, area=0.2)
    path.write_text(json.dumps(data))
    # Every box dropped as narrower than 1 px, silently, before the checks.
    with pytest.raises(ValueError, match=r"ann.json, image .*img1.jpg \(id 1\): every box of the file .* normalised"):
        CocoJsonSource(path, tmp_path)
    # One image of tiny boxes in a file in pixels is a warning, not an error.
    data["annotations"] = json.loads(write_coco(tmp_path).read_text())["annotations"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == 1] + [tiny]
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"1 image\(s\) of .*ann.json have only boxes within \[0, 1.5\]"):
        source = CocoJsonSource(path, tmp_path)
    assert source.annotations(2)["boxes"].tolist() == [[0, 0, 1, 1]]
