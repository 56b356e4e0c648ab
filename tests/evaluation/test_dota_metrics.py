"""DOTA AP on hand-made cases, patch merging with rotated NMS, sliding-window prediction with fake models.

Boxes are axis-aligned (angle 0) or rotated copies, so IoUs are known: two
20×10 boxes whose centres differ by d along the width have IoU (20 − d)/(20 + d).
With PR points (recall, precision) in score order, VOC "area" AP is the
area under the precision envelope, and "11points" the mean over recall
thresholds 0, 0.1, ..., 1 of the best precision at recall ≥ the threshold.
"""

import math
import zipfile

import keras
import numpy as np
import pytest
from rich.console import Console

from keras_rtmdet.data import DOTA_CLASSES
from keras_rtmdet.data import DotaSource
from keras_rtmdet.evaluation import dota_average_precision
from keras_rtmdet.evaluation import evaluate_dota
from keras_rtmdet.evaluation import evaluate_dota_model
from keras_rtmdet.evaluation import print_dota_table
from keras_rtmdet.evaluation import write_dota_submission
from keras_rtmdet.inference import merge_patch_detections
from keras_rtmdet.inference import predict_large_image
from keras_rtmdet.inference.large_image import rotated_nms_numpy
from keras_rtmdet.evaluation.dota_metrics import pairwise_rotated_iou

pytestmark = pytest.mark.backend_independent


def box(cx, cy=50.0, w=20.0, h=10.0, angle=0.0):
    return [cx, cy, w, h, angle]


def ap(dets, scores, gts, ignore=None, threshold=0.5, mode="area"):
    return dota_average_precision(
        [np.array(dets, np.float32).reshape(-1, 5)],
        [scores],
        [np.array(gts, np.float32).reshape(-1, 5)],
        None if ignore is None else [ignore],
        threshold,
        mode,
    )


def test_hand_made_ap_cases():
    a, b = box(50), box(150)
    assert ap([a, b], [0.9, 0.8], [a, b]) == pytest.approx(1.0)
    assert ap([a, b], [0.9, 0.8], [a, b], mode="11points") == pytest.approx(1.0)
    # FP above the TP: PR (0, 0), (1, 0.5) → 0.5 in both modes.
    assert ap([box(300), a], [0.9, 0.8], [a]) == pytest.approx(0.5)
    assert ap([box(300), a], [0.9, 0.8], [a], mode="11points") == pytest.approx(0.5)
    # TP, FP, TP on 2 GTs: PR (.5, 1), (.5, .5), (1, 2/3): area .5 + .5·2/3; 11 points (6·1 + 5·2/3)/11.
    assert ap([a, box(300), b], [0.9, 0.8, 0.7], [a, b]) == pytest.approx(0.5 + 1 / 3)
    assert ap([a, box(300), b], [0.9, 0.8, 0.7], [a, b], mode="11points") == pytest.approx((6 + 5 * 2 / 3) / 11)
    # A missed GT: recall stops at 0.5.
    assert ap([a], [0.9], [a, b]) == pytest.approx(0.5)
    # A duplicate of a matched GT is an FP (same curve as TP, FP, TP).
    assert ap([a, box(51), b], [0.9, 0.8, 0.7], [a, b]) == pytest.approx(0.5 + 1 / 3)
    # The max-IoU GT decides: box(52) has IoU .82 with A (taken) and .67 with B = box(56): an FP, not B's TP.
    assert ap([a, box(52)], [0.9, 0.8], [a, box(56)]) == pytest.approx(0.5)
    # Matches to an ignored GT count neither way: [ignored, FP, TP] on one GT → 0.5 (without ignoring: TP, FP, TP).
    dets, scores, gts = [b, box(300), a], [0.9, 0.85, 0.8], [a, b]
    assert ap(dets, scores, gts, ignore=[False, True]) == pytest.approx(0.5)
    assert ap(dets, scores, gts) == pytest.approx(0.5 + 1 / 3)
    # Rotation: the same rectangle as a (w, h, θ) swap matches it exactly.
    assert ap([box(50, w=10, h=20, angle=math.pi / 2)], [0.9], [a], threshold=0.95) == pytest.approx(1.0)
    assert ap([], [], [a]) == 0.0
    with pytest.raises(ValueError, match="eval_mode"):
        ap([a], [0.9], [a], mode="voc")


def test_evaluate_dota_thresholds_classes_and_ignore():
    a = box(50)
    shifted = box(54)  # IoU 16/24 = 2/3: TP up to the 0.65 threshold
    detections = [
        {"boxes": [a, shifted], "scores": [0.9, 0.8], "labels": [0, 1]},
        {"boxes": np.zeros((0, 5)), "scores": [], "labels": []},
    ]
    annotations = [
        {"boxes": [a, a], "labels": [0, 1]},
        {"boxes": [box(200)], "labels": [1], "difficult": [2]},
    ]
    results = evaluate_dota(detections, annotations, 3, ["x", "y", "z"], difficulty_threshold=1)
    assert results["per_class_AP"]["x"] == 1.0 and results["per_class_AP"]["y"] == 1.0
    assert math.isnan(results["per_class_AP"]["z"])  # no GT: excluded from the means
    assert results["mAP50"] == pytest.approx(1.0) and results["mAP65"] == pytest.approx(1.0)
    assert results["mAP70"] == pytest.approx(0.5) and results["mAP75"] == pytest.approx(0.5)
    assert results["mmAP"] == pytest.approx((10 + 4) / 20) and results["mAP"] == pytest.approx(results["mmAP"])
    assert results["per_class"]["y"] == {
        "AP": 0.4,
        "AP50": 1.0,
        "AP75": 0.0,
        "ground_truths": 1,
        "detections": 1,
        "recall": 1.0,
    }
    # The difficult GT counts with MMRotate's default threshold (100): y's recall halves.
    default = evaluate_dota(detections, annotations, 3, iou_thresholds=[0.5])
    assert default["per_class"]["1"]["ground_truths"] == 2 and default["mAP50"] == pytest.approx(0.75)
    assert math.isnan(default["mAP75"]) and math.isnan(default["mmAP"])
    with pytest.raises(ValueError, match=r"labels outside \[0, 1\)"):
        evaluate_dota(detections, annotations, 1, iou_thresholds=[0.5])
    with pytest.raises(ValueError, match="expected boxes"):
        evaluate_dota([{"boxes": [[1, 2, 3, 4]], "scores": [1], "labels": [0]}], annotations[:1], 3)
    console = Console(record=True, width=120)
    print_dota_table(results, console=console)
    text = console.export_text()
    assert "mmAP" in text and "ground truths" in text and "0.700" in text and "—" in text


def brute_force_nms(boxes, scores, labels, threshold):
    order = np.argsort(-scores, kind="stable")
    ious = pairwise_rotated_iou(boxes, boxes)
    kept = []
    for i in order:
        if all(labels[j] != labels[i] or ious[i, j] <= threshold for j in kept):
            kept.append(i)
    return np.array(kept)


def test_grouped_nms_equals_one_greedy_nms():
    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 400, (6, 2))
    parts = rng.integers(0, 6, 70)
    boxes = np.concatenate(
        [centres[parts] + rng.normal(0, 8, (70, 2)), rng.uniform(8, 30, (70, 2)), rng.uniform(-1.6, 1.6, (70, 1))],
        axis=1,
    ).astype(np.float32)
    scores = rng.uniform(0, 1, 70).astype(np.float32)
    labels = rng.integers(0, 2, 70)
    kept = rotated_nms_numpy(boxes, scores, labels, 0.1)
    np.testing.assert_array_equal(kept, brute_force_nms(boxes, scores, labels, 0.1))
    assert 10 < len(kept) < 60


def test_merge_removes_duplicates_across_a_patch_border():
    rbox = [110.0, 50.0, 20.0, 10.0, 0.3]
    per_patch = [
        ("P0001__128__0___0", [rbox, [30, 30, 10, 4, 0]], [0.9, 0.5], [4, 4]),
        # The same car seen by the next window (offset 100): a duplicate; a ship on it is another class.
        ("P0001__128__100___0", [[10, 50, 20, 10, 0.3], [10, 50, 20, 10, 0.3]], [0.8, 0.7], [4, 6]),
        ("/out/images/P0002__128__0___72.png", [[5, 5, 4, 2, 0]], [0.3], [1]),
        (("P0003", 100, 0, 0.5), [[20, 20, 10, 4, 0]], [0.6], [2]),  # a 2× downscaled patch
        ("P0004__0.5__50___0", [[20, 20, 10, 4, 0]], [0.6], [2]),  # DOTA_devkit rate name
        ("P0005__128__0___0", np.zeros((0, 5)), [], []),
    ]
    merged = merge_patch_detections(per_patch)
    assert sorted(merged) == ["P0001", "P0002", "P0003", "P0004", "P0005"]
    one = merged["P0001"]
    np.testing.assert_allclose(one["scores"], [0.9, 0.7, 0.5])
    np.testing.assert_array_equal(one["labels"], [4, 6, 4])
    np.testing.assert_allclose(one["boxes"][1], rbox, atol=1e-5)
    np.testing.assert_allclose(merged["P0002"]["boxes"], [[5, 77, 4, 2, 0]])
    np.testing.assert_allclose(merged["P0003"]["boxes"], [[140, 40, 20, 8, 0]])
    np.testing.assert_allclose(merged["P0004"]["boxes"], [[140, 40, 20, 8, 0]])
    assert merged["P0005"]["boxes"].shape == (0, 5)
    with pytest.raises(ValueError, match="not a patch name"):
        merge_patch_detections([("P0001", [rbox], [0.5], [0])])


# Objects of a 300 × 200 test image, in its pixels; each one lies inside several 128-px windows.
OBJECTS = np.array([[60, 60, 30, 12, 0.4], [150, 100, 24, 10, -0.7], [250, 150, 20, 20, 0.0]], np.float32)


def positions(image):
    """A window's top-left corner, read from the pixels (x = R + 256·G, y = B)."""
    return int(image[0, 0, 0]) + 256 * int(image[0, 0, 1]), int(image[0, 0, 2])


class FakeWindowModel:
    """`predict` on a list of windows: every object entirely inside a window, in its pixels, padded to 8."""

    def __init__(self):
        self.shapes = []

    def predict(self, images, batch_size=None, verbose=0, **settings):
        assert settings == {"score_threshold": 0.1}
        out = {
            "boxes": np.full((len(images), 8, 5), -1.0),
            "scores": np.full((len(images), 8), -1.0),
            "labels": np.full((len(images), 8), -1),
            "num_detections": np.zeros(len(images), np.int32),
        }
        for i, image in enumerate(images):
            self.shapes.append(image.shape)
            x, y = positions(image)
            size = image.shape[1]
            inside = [
                k for k, o in enumerate(OBJECTS) if x + 15 <= o[0] <= x + size - 15 and y + 15 <= o[1] <= y + size - 15
            ]
            for slot, k in enumerate(inside):
                out["boxes"][i, slot] = OBJECTS[k] - [x, y, 0, 0, 0]
                out["scores"][i, slot] = 0.9 - 0.1 * k - 0.01 * slot
                out["labels"][i, slot] = k
            out["num_detections"][i] = len(inside)
        return out


def coded_image(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, x // 256, y], axis=-1).astype(np.uint8)


def test_predict_large_image_merges_windows():
    model = FakeWindowModel()
    result = predict_large_image(
        model, coded_image(200, 300), patch_size=128, gap=28, batch_size=4, score_threshold=0.1
    )
    assert len(model.shapes) == 6 and all(s == (128, 128, 3) for s in model.shapes)
    order = np.argsort(result["labels"])
    np.testing.assert_array_equal(result["labels"][order], [0, 1, 2])
    np.testing.assert_allclose(result["boxes"][order], OBJECTS, atol=1e-4)
    # A small image: one window, padded to full size with the split's mean colour.
    small = FakeWindowModel()
    predict_large_image(small, coded_image(80, 100), patch_size=128, gap=28, score_threshold=0.1)
    assert small.shapes == [(128, 128, 3)]


class OracleModel:
    """A model with a `preprocessor`: `predict` gets a PyDataset; image i (all pixels = i) yields GT i."""

    input_channel_order = "rgb"

    def __init__(self, truth):
        self.truth = truth

    def preprocessor(self, images, input_channel_order="rgb", output_channel_order="rgb"):
        return {"images": np.stack(images).astype(np.float32), "scale_factors": np.ones((len(images), 2), np.float32)}

    def predict(self, dataset, verbose=0, **settings):
        assert isinstance(dataset, keras.utils.PyDataset)
        rows = []
        for index in range(len(dataset)):
            (batch,) = dataset[index]
            for image in batch["images"]:
                rows.append(self.truth[int(image[0, 0, 0])])
        k = max(len(r["labels"]) for r in rows) + 2
        out = {
            "boxes": np.full((len(rows), k, 5), -1.0),
            "scores": np.full((len(rows), k), -1.0),
            "labels": np.full((len(rows), k), -1),
        }
        for i, r in enumerate(rows):
            n = len(r["labels"])
            out["boxes"][i, :n], out["scores"][i, :n], out["labels"][i, :n] = r["boxes"], 0.9, r["labels"]
        return out


def test_evaluate_dota_model_on_a_source(tmp_path):
    import cv2

    images, anns = tmp_path / "images", tmp_path / "ann"
    images.mkdir()
    anns.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"P000{i}.png"), np.full((40, 60, 3), i, np.uint8))
    (anns / "P0000.txt").write_text("gsd:1\n10 10 30 10 30 20 10 20 plane 0\n")
    (anns / "P0001.txt").write_text("5 5 25 5 25 35 5 35 ship 0\n40 2 50 2 50 8 40 8 plane 1\n")
    source = DotaSource(images, anns)
    truth = {i: source.annotations(i) for i in source.image_ids}
    results = evaluate_dota_model(OracleModel(truth), source, batch_size=2, verbose=0, print_table=False)
    assert results["mAP50"] == pytest.approx(1.0) and results["mmAP"] == pytest.approx(1.0)
    assert results["per_class"]["plane"]["ground_truths"] == 2 and math.isnan(results["per_class_AP"]["bridge"])


def test_submission_files(tmp_path):
    merged = {
        "P0002": {"boxes": [[30, 20, 40, 20, 0]], "scores": [0.456], "labels": [0]},
        "P0001": {
            "boxes": [[30, 20, 40, 20, 0], [70, 55, 30, 20, -math.pi / 2]],
            "scores": [0.9, 0.051],
            "labels": [0, 6],
        },
    }
    zip_path = write_dota_submission(tmp_path / "sub", merged)
    assert zip_path == str(tmp_path / "sub" / "sub.zip")
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == sorted(f"Task1_{c}.txt" for c in DOTA_CLASSES)
        plane = archive.read("Task1_plane.txt").decode().splitlines()
        ship = archive.read("Task1_ship.txt").decode().splitlines()
        assert archive.read("Task1_bridge.txt") == b""
    assert plane == [
        "P0001 0.9 50.00 30.00 50.00 10.00 10.00 10.00 10.00 30.00",
        "P0002 0.46 50.00 30.00 50.00 10.00 10.00 10.00 10.00 30.00",
    ]
    assert ship[0].split()[:2] == ["P0001", "0.05"] and len(ship[0].split()) == 10
    with pytest.raises(ValueError, match="outside"):
        write_dota_submission(tmp_path / "bad", {"P1": {"boxes": [[1, 1, 1, 1, 0]], "scores": [1], "labels": [20]}})
