"""The rotated evaluation's per-class table, precision-recall curves, confusion matrix and figures, by hand.

Boxes are 20×10 rboxes turned by the same angle; a copy slid by d along its
width has IoU (20 − d)/(20 + d), whatever the angle.
"""

import math

import numpy as np
import pytest

from keras_rtmdet.evaluation.coco_metrics import coco_evaluate
from keras_rtmdet.evaluation.dota_metrics import evaluate_dota
from keras_rtmdet.evaluation.evaluation_plots import write_evaluation_figures
from tests.evaluation.test_coco_metrics import result
from tests.evaluation.test_coco_metrics import write_coco

pytestmark = pytest.mark.backend_independent

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["x", "y", "w", "z"]
TILT = math.pi / 6


def rbox(cx, cy, slide=0.0, angle=TILT, w=20.0, h=10.0):
    """A w×h box centred at (cx, cy) moved by `slide` along its own width axis."""
    return [cx + slide * math.cos(angle), cy + slide * math.sin(angle), w, h, angle]


def image(boxes, labels, scores=None, difficult=None):
    entry = {"boxes": np.array(boxes, np.float32).reshape(-1, 5), "labels": np.array(labels, np.int64)}
    if scores is not None:
        entry["scores"] = np.array(scores, np.float64)
    if difficult is not None:
        entry["difficult"] = np.array(difficult, np.int64)
    return entry


def scene(angle=TILT):
    """Class x: TP, FP, TP at IoU 2/3 on 2 GTs; y: a detection on a difficult GT, then a TP; w: a miss; z: no GT."""
    a, b = rbox(50, 50, angle=angle), rbox(150, 50, angle=angle)
    c, e = rbox(50, 150, angle=angle), rbox(150, 150, angle=angle)
    far = rbox(300, 300, angle=angle)
    detections = [
        image([a, far, rbox(150, 50, slide=4, angle=angle), far], [0, 0, 0, 3], [0.9, 0.8, 0.7, 0.5]),
        image([e, c], [1, 1], [0.95, 0.6]),
    ]
    annotations = [image([a, b], [0, 0]), image([c, e, a], [1, 1, 2], difficult=[0, 2, 0])]
    return detections, annotations


@pytest.fixture(scope="module")
def results():
    detections, annotations = scene()
    return evaluate_dota(detections, annotations, len(NAMES), NAMES, difficulty_threshold=1)


def test_per_class_table_counts_and_aps(results):
    table = results["per_class"]
    # x: AP 5/6 at IoU 0.50..0.65 (PR (.5, 1), (.5, .5), (1, 2/3)), 0.5 from 0.70 on (the slid box is an FP).
    assert table["x"] == {"AP": pytest.approx((4 * 5 / 6 + 6 * 0.5) / 10), "AP50": pytest.approx(5 / 6),
                          "AP75": pytest.approx(0.5), "ground_truths": 2, "detections": 3, "recall": 1.0}
    # y: the difficult GT is no ground truth, and the detection on it neither TP nor FP.
    assert table["y"] == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "ground_truths": 1, "detections": 2, "recall": 1.0}
    assert table["w"] == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "ground_truths": 1, "detections": 0, "recall": 0.0}
    assert table["z"]["ground_truths"] == 0 and table["z"]["detections"] == 1 and math.isnan(table["z"]["AP"])
    assert {name: results["per_class_AP"][name] for name in "xyw"} == {name: table[name]["AP50"] for name in "xyw"}
    assert math.isnan(results["per_class_AP"]["z"])


def test_precision_recall_curves_by_hand(results):
    curves = results["pr_curves"]
    assert len(curves["recall"]) == 101 and curves["recall"][50] == 0.5
    assert set(curves["classes"]) == {"x", "y", "w"}  # z has no ground truth
    x = curves["classes"]["x"]
    # Precision 1 up to recall 0.5, then the envelope's 2/3 (TP, FP, TP) up to recall 1.
    assert x["IoU=0.50"] == [1.0] * 51 + [0.6667] * 50
    # From IoU 0.70 on recall stops at 0.5: beyond it the mean over 10 thresholds is 4 · (2/3) / 10.
    assert x["IoU=0.50:0.95"] == [1.0] * 51 + [0.2667] * 50
    assert curves["classes"]["y"]["IoU=0.50"] == [1.0] * 101
    assert curves["classes"]["w"]["IoU=0.50"] == [0.0] * 101


def test_curves_equal_pycocotools_on_the_same_scene_with_upright_boxes(tmp_path):
    detections, annotations = scene(angle=0.0)
    ours = evaluate_dota(detections, annotations, len(NAMES), NAMES, difficulty_threshold=1)["pr_curves"]

    def xywh(box):
        cx, cy, w, h, _ = (float(v) for v in box)
        return [cx - w / 2, cy - h / 2, w, h]

    # COCO ids 1..4 for x, y, w, z; DOTA's ignored (difficult) GT is a crowd region there.
    objects = []
    for image_id, ann in enumerate(annotations, start=1):
        for box, label, difficult in zip(ann["boxes"], ann["labels"], ann.get("difficult", [0] * len(ann["boxes"]))):
            objects.append((image_id, int(label) + 1, xywh(box), int(difficult > 1)))
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(NAMES)]
    gt = write_coco(tmp_path, objects, images=(1, 2), size=400, categories=categories)
    results = [
        result(image_id, int(label) + 1, xywh(box), float(score))
        for image_id, det in enumerate(detections, start=1)
        for box, label, score in zip(det["boxes"], det["labels"], det["scores"])
    ]
    theirs = coco_evaluate(gt, results)["pr_curves"]
    assert ours == theirs


def test_rotated_confusion_matrix_by_hand():
    a, b, d = rbox(50, 50), rbox(150, 50), rbox(250, 50)
    # A thin diagonal bar, and a detection crossing it: their upright hulls coincide, their rotated IoU is ~0.05.
    bar, cross = rbox(100, 200, angle=math.pi / 4, w=40, h=4), rbox(100, 200, angle=-math.pi / 4, w=40, h=4)
    detections = [
        image([a, b, d, rbox(50, 300), a], [0, 0, 1, 1, 2], [0.9, 0.8, 0.7, 0.6, 0.2]),
        image([cross], [2], [0.9]),
    ]
    annotations = [image([a, b, d], [0, 1, 1], difficult=[0, 0, 2]), image([bar], [2])]
    results = evaluate_dota(detections, annotations, 3, ["cat", "dog", "bird"], difficulty_threshold=1)
    record = results["confusion_matrix"]
    assert record["classes"] == ["cat", "dog", "bird", "background"]
    assert (record["score_threshold"], record["iou_threshold"]) == (0.3, 0.5)
    cat, dog, bird, background = 0, 1, 2, 3
    expected = np.zeros((4, 4), np.int64)
    expected[cat, cat] = 1
    expected[dog, cat] = 1  # the dog called a cat ...
    expected[dog, background] = 1  # ... so no dog detection found it
    expected[background, dog] = 1  # a dog detection on nothing
    expected[background, bird] = 1  # the crossing bar: no rotated overlap
    expected[bird, background] = 1  # the bar, missed
    # Not counted: the dog detection on the difficult dog (an ignore region, not background), the difficult dog
    # itself (not a ground truth, so not missed), and the bird detection below the 0.3 score threshold.
    np.testing.assert_array_equal(record["matrix"], expected)


def test_figures_are_written(results, tmp_path):
    paths = write_evaluation_figures(results, str(tmp_path), prefix="val_")
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["val_precision_recall.png", "val_confusion_matrix.png"]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE


def test_curves_need_the_threshold_0_5():
    detections, annotations = scene()
    results = evaluate_dota(detections, annotations, len(NAMES), NAMES, iou_thresholds=[0.75])
    assert "pr_curves" not in results and "confusion_matrix" in results
    upright_only = evaluate_dota(detections, annotations, len(NAMES), NAMES, iou_thresholds=[0.5])
    assert set(upright_only["pr_curves"]["classes"]["x"]) == {"IoU=0.50"}
