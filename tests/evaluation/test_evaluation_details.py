"""Per-class metrics, precision-recall curves, the confusion matrix and their figures, on hand-made COCO data."""

import numpy as np
import pytest

from keras_rtmdet.evaluation.coco_metrics import coco_evaluate
from keras_rtmdet.evaluation.coco_metrics import evaluate_coco
from keras_rtmdet.evaluation.confusion_matrix import confusion_matrix
from keras_rtmdet.evaluation.evaluation_plots import write_evaluation_figures
from tests.evaluation.test_coco_metrics import CATEGORY_IDS
from tests.evaluation.test_coco_metrics import GroundTruthSource
from tests.evaluation.test_coco_metrics import OBJECTS
from tests.evaluation.test_coco_metrics import OracleModel
from tests.evaluation.test_coco_metrics import perfect_results
from tests.evaluation.test_coco_metrics import result
from tests.evaluation.test_coco_metrics import write_coco

pytestmark = pytest.mark.backend_independent

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_per_class_table_counts_and_aps(tmp_path):
    gt = write_coco(tmp_path, OBJECTS)
    # cat: both found; dog: its one (non-crowd) object found at IoU 0.6 only; bird: missed, a false positive instead.
    dog_box = [34, 30, 24, 28]
    loose = [dog_box[0] + 6, dog_box[1], dog_box[2], dog_box[3]]  # IoU 18·28 / (2·24·28 − 18·28) = 0.6
    results = [r for r in perfect_results() if r["category_id"] == 3]
    results += [result(1, 7, loose, 0.9), result(3, 12, [0, 0, 10, 10], 0.8)]
    stats = coco_evaluate(gt, results)
    table = stats["per_class"]
    assert table["cat"] == {"AP": pytest.approx(1.0), "AP50": pytest.approx(1.0), "AP75": pytest.approx(1.0),
                            "ground_truths": 2, "detections": 2}
    assert table["dog"]["AP50"] == pytest.approx(1.0) and table["dog"]["AP75"] == pytest.approx(0.0)
    assert table["dog"]["AP"] == pytest.approx(0.3)  # matched at 3 of the 10 IoU thresholds: 0.50, 0.55, 0.60
    assert (table["dog"]["ground_truths"], table["dog"]["detections"]) == (1, 1)
    assert table["bird"] == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "ground_truths": 1, "detections": 1}
    assert stats["per_class_AP"] == {name: row["AP"] for name, row in table.items()}


def test_precision_recall_curves_hold_101_recall_points_per_class(gt_and_stats):
    stats = gt_and_stats
    curves = stats["pr_curves"]
    assert len(curves["recall"]) == 101 and curves["recall"][0] == 0.0 and curves["recall"][-1] == 1.0
    assert set(curves["classes"]) == {"cat", "dog", "bird"}
    assert curves["classes"]["bird"]["IoU=0.50"] == [1.0] * 101
    # cat: a false positive (0.7) above the one cat found (0.5) of two: precision 1/2 up to recall 1/2.
    assert curves["classes"]["cat"]["IoU=0.50"] == [0.5] * 51 + [0.0] * 50
    # The AP at IoU 0.5 is the mean of its curve.
    for name, by_iou in curves["classes"].items():
        assert np.mean(by_iou["IoU=0.50"]) == pytest.approx(stats["per_class"][name]["AP50"], abs=1e-3)


@pytest.fixture
def gt_and_stats(tmp_path):
    gt = write_coco(tmp_path, OBJECTS)
    results = perfect_results()[:-1] + [result(2, 3, [30, 30, 10, 10], 0.7)]
    return coco_evaluate(gt, results)


def test_confusion_matrix_counts_as_mmdetection_crowds_ignored(tmp_path):
    # Image 1: a cat and a dog. Image 2: a bird, a cat, and a crowd dog (an ignored region, as in the AP).
    gt = write_coco(tmp_path, OBJECTS)
    results = [
        result(1, 3, [4, 4, 20, 20], 0.9),  # cat → cat
        result(1, 12, [34, 30, 24, 28], 0.8),  # the dog, called a bird
        result(2, 12, [10, 10, 40, 40], 0.95),  # bird → bird
        result(2, 7, [40, 0, 24, 24], 0.6),  # on the crowd dog: not counted
        result(3, 3, [0, 0, 30, 30], 0.5),  # an empty image → background
        result(2, 3, [2, 52, 10, 10], 0.2),  # the second cat, below the score threshold → the cat is missed
    ]
    matrix = confusion_matrix(gt, results, CATEGORY_IDS)
    cat, dog, bird, background = 0, 1, 2, 3
    expected = np.zeros((4, 4), np.int64)
    expected[cat, cat] = 1
    expected[dog, bird] = 1
    expected[bird, bird] = 1
    expected[background, cat] = 1
    expected[dog, background] = 1  # no dog detection matched the dog
    expected[cat, background] = 1  # the second cat
    np.testing.assert_array_equal(matrix, expected)


def test_evaluate_coco_records_the_confusion_matrix_and_figures_are_written(tmp_path):
    gt = write_coco(tmp_path, OBJECTS)
    source = GroundTruthSource(gt)
    stats = evaluate_coco(OracleModel(gt, [[1, 2, 3]]), source, batch_size=3, verbose=0, print_table=False)
    record = stats["confusion_matrix"]
    assert record["classes"] == ["cat", "dog", "bird", "background"]
    matrix = np.asarray(record["matrix"])
    # The oracle's detections score 0.5..0.9 (above 0.3) and sit on every non-crowd object.
    np.testing.assert_array_equal(np.diag(matrix)[:3], [2, 1, 1])
    assert matrix.sum() == 4
    paths = write_evaluation_figures(stats, str(tmp_path), prefix="val_")
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["val_precision_recall.png", "val_confusion_matrix.png"]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE


def test_figures_of_an_evaluation_without_detections(tmp_path):
    gt = write_coco(tmp_path, OBJECTS)
    stats = coco_evaluate(gt, [])
    stats["confusion_matrix"] = {"classes": ["cat", "dog", "bird", "background"], "score_threshold": 0.3,
                                 "iou_threshold": 0.5, "matrix": np.zeros((4, 4), int).tolist()}
    assert stats["per_class"]["cat"] == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "ground_truths": 2, "detections": 0}
    assert len(write_evaluation_figures(stats, str(tmp_path))) == 2
