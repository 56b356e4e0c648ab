"""COCO AP from pycocotools on hand-made ground truth with values derived by hand.

COCO's AP at one IoU threshold is the mean, over the 101 recall points
r = 0, 0.01, ..., 1, of the interpolated precision p(r) = max precision at
recall ≥ r (0 where recall r is never reached).
"""

import contextlib
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO

from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.evaluation import STAT_KEYS
from keras_rtmdet.evaluation import coco_evaluate
from keras_rtmdet.evaluation import detections_to_coco
from keras_rtmdet.evaluation import evaluate_coco
from keras_rtmdet.evaluation import print_coco_table

pytestmark = pytest.mark.backend_independent

CATEGORY_IDS = [3, 7, 12]  # label 0, 1, 2: non-contiguous on purpose
CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 12, "name": "bird"}]

# (image_id, category_id, xywh box, iscrowd); image 3 has no objects.
OBJECTS = [
    (1, 3, [4, 4, 20, 20], 0),
    (1, 7, [34, 30, 24, 28], 0),
    (2, 12, [10, 10, 40, 40], 0),
    (2, 3, [2, 52, 10, 10], 0),
    (2, 7, [40, 0, 24, 24], 1),
]
CROWD_BOX = [40, 0, 24, 24]


def write_coco(path, objects, images=(1, 2, 3), size=64, categories=CATEGORIES):
    annotations = []
    for index, (image_id, category_id, (x, y, w, h), crowd) in enumerate(objects):
        annotations.append(
            {
                "id": index + 1,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": crowd,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            }
        )
    dataset = {
        "images": [{"id": i, "width": size, "height": size, "file_name": f"{i}.png"} for i in images],
        "annotations": annotations,
        "categories": categories,
    }
    file = path / "gt.json"
    file.write_text(json.dumps(dataset))
    return COCO(str(file))


@pytest.fixture
def gt(tmp_path):
    return write_coco(tmp_path, OBJECTS)


def result(image_id, category_id, box, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(map(float, box)), "score": score}


def perfect_results(objects=OBJECTS, score=0.5):
    return [result(i, c, box, score) for i, c, box, crowd in objects if not crowd]


def test_perfect_predictions_give_ap_one(gt):
    stats = coco_evaluate(gt, perfect_results())
    assert set(STAT_KEYS) <= set(stats)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "AR1", "AR10", "AR100", "ARs", "ARm"):
        assert stats[key] == pytest.approx(1.0), key
    # pycocotools' −1: no large (> 96²) object to measure.
    assert stats["APl"] == -1 and stats["ARl"] == -1
    assert stats["per_class_AP"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0), "bird": pytest.approx(1.0)}


def test_one_loose_detection_gives_the_hand_computed_ap(tmp_path):
    # One class, two 10×10 GTs in one image. Detection A (score 0.9) is exact;
    # detection B (score 0.8) covers 10×6.2 of GT2: IoU 0.62.
    # IoU thresholds 0.50, 0.55, 0.60: both TP, precision 1 up to recall 1 → AP 1.
    # Thresholds 0.65 ... 0.95 (7): B is a FP; cumulative recall [0.5, 0.5],
    # precision [1, 0.5]; p(r) = 1 for the 51 points r ≤ 0.5, 0 beyond → AP 51/101.
    # AP@[.5:.95] = (3·1 + 7·51/101) / 10; AR@100 = (3·1 + 7·0.5) / 10;
    # at 1 detection per image only A counts: recall 0.5 at every threshold.
    objects = [(1, 3, [0, 0, 10, 10], 0), (1, 3, [30, 30, 10, 10], 0)]
    gt = write_coco(tmp_path, objects, images=(1,), categories=CATEGORIES[:1])
    results = [result(1, 3, [0, 0, 10, 10], 0.9), result(1, 3, [30, 30, 10, 6.2], 0.8)]
    stats = coco_evaluate(gt, results)
    assert stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(51 / 101)
    assert stats["AP"] == pytest.approx((3 + 7 * 51 / 101) / 10)
    assert stats["APs"] == pytest.approx(stats["AP"])  # both GTs are small (area 100 < 32²)
    assert stats["AR100"] == pytest.approx(0.65)
    assert stats["AR1"] == pytest.approx(0.5)
    assert stats["per_class_AP"]["cat"] == pytest.approx(stats["AP"])


def test_false_positive_ranked_first_lowers_ap_by_the_computed_amount(gt):
    # "cat" has 2 GTs. A FP scored 0.9 on the empty image 3, above the two TPs
    # (0.5): cumulative precision [0, 1/2, 2/3] at recall [0, 0.5, 1], so the
    # interpolated precision is 2/3 at every recall point, at every IoU
    # threshold: AP_cat = 2/3, dog and bird stay 1, mAP = (2/3 + 1 + 1) / 3.
    results = perfect_results() + [result(3, 3, [20, 20, 15, 15], 0.9)]
    stats = coco_evaluate(gt, results)
    assert stats["per_class_AP"]["cat"] == pytest.approx(2 / 3)
    assert stats["per_class_AP"]["dog"] == pytest.approx(1.0)
    assert stats["AP"] == pytest.approx(8 / 9)
    assert stats["AP50"] == pytest.approx(8 / 9)


def test_detection_on_a_crowd_region_is_not_a_false_positive(gt):
    on_crowd = result(2, 7, CROWD_BOX, 0.9)
    assert coco_evaluate(gt, perfect_results() + [on_crowd])["AP"] == pytest.approx(1.0)
    # The same detection away from the crowd box is a FP above dog's only TP:
    # precision [0, 1/2] at recall [0, 1] → AP_dog = 1/2, mAP = (1 + 1/2 + 1) / 3.
    elsewhere = result(2, 7, [0, 20, 8, 8], 0.9)
    stats = coco_evaluate(gt, perfect_results() + [elsewhere])
    assert stats["per_class_AP"]["dog"] == pytest.approx(0.5)
    assert stats["AP"] == pytest.approx(2.5 / 3)


def test_empty_results_give_zeros(gt):
    stats = coco_evaluate(gt, [])
    assert all(stats[key] == 0.0 for key in STAT_KEYS)
    assert stats["per_class_AP"] == {"cat": 0.0, "dog": 0.0, "bird": 0.0}
    empty = {
        "boxes": np.zeros((2, 4, 4), np.float32),
        "scores": np.zeros((2, 4), np.float32),
        "labels": np.full((2, 4), -1, np.int32),
        "num_detections": np.zeros((2,), np.int32),
    }
    assert detections_to_coco([1, 2], empty, CATEGORY_IDS) == []


def test_class_without_ground_truth_has_nan_ap(tmp_path):
    gt = write_coco(tmp_path, [(1, 3, [4, 4, 20, 20], 0)])
    stats = coco_evaluate(gt, [result(1, 3, [4, 4, 20, 20], 0.5)], class_names=["c", "d", "b"])
    assert stats["per_class_AP"]["c"] == pytest.approx(1.0)
    assert math.isnan(stats["per_class_AP"]["d"]) and math.isnan(stats["per_class_AP"]["b"])


def padded_detections(objects=OBJECTS, pad=3):
    """The non-crowd GTs as `predict`-style padded arrays for images 1, 2, 3."""
    per_image = {i: [(c, box) for j, c, box, crowd in objects if j == i and not crowd] for i in (1, 2, 3)}
    k = max(len(v) for v in per_image.values()) + pad
    boxes = np.full((3, k, 4), -1, np.float32)
    scores = np.full((3, k), -1, np.float32)
    labels = np.full((3, k), -1, np.int32)
    counts = np.zeros((3,), np.int32)
    for row, image_id in enumerate((1, 2, 3)):
        for n, (category_id, (x, y, w, h)) in enumerate(per_image[image_id]):
            boxes[row, n] = [x, y, x + w, y + h]
            scores[row, n] = 0.8
            labels[row, n] = CATEGORY_IDS.index(category_id)
        counts[row] = len(per_image[image_id])
    return {"boxes": boxes, "scores": scores, "labels": labels, "num_detections": counts}


def test_detections_to_coco_maps_labels_and_boxes(gt):
    detections = padded_detections()
    results = detections_to_coco([1, 2, 3], detections, CATEGORY_IDS)
    assert len(results) == 4
    first = {"image_id": 1, "category_id": 3, "bbox": [4.0, 4.0, 20.0, 20.0], "score": pytest.approx(0.8)}
    assert results[0] == first
    assert sorted(r["category_id"] for r in results) == [3, 3, 7, 12]
    assert coco_evaluate(gt, results)["AP"] == pytest.approx(1.0)
    # A wrong label → category id table puts every box in another class.
    permuted = detections_to_coco([1, 2, 3], detections, [7, 12, 3])
    assert coco_evaluate(gt, permuted)["AP"] == pytest.approx(0.0)


def test_max_dets_order_does_not_matter(tmp_path):
    # 12 exact detections in one image. pycocotools sorts maxDets, so mmdet's
    # proposal_nums (100, 1, 10) is the standard (1, 10, 100): AP50 is at 100
    # detections (1.0, not 84/101, the value at 10), AR1 = 1/12, AR10 = 10/12.
    objects = [(1, 3, [5 * n, 5 * n, 4, 4], 0) for n in range(12)]
    gt = write_coco(tmp_path, objects, images=(1,), categories=CATEGORIES[:1])
    results = [result(1, 3, box, 0.9 - 0.01 * n) for n, (_, _, box, _) in enumerate(objects)]
    standard = coco_evaluate(gt, results)
    mmdet = coco_evaluate(gt, results, max_dets=(100, 1, 10))
    assert mmdet == standard
    assert standard["AP50"] == pytest.approx(1.0)
    assert standard["AR1"] == pytest.approx(1 / 12)
    assert standard["AR10"] == pytest.approx(10 / 12)
    # Caps without 100: AP50 at 10 detections, recall ≤ 10/12, so the
    # interpolated precision is 1 for the 84 points r ≤ 0.83, 0 beyond.
    capped = coco_evaluate(gt, results, max_dets=(1, 5, 10))
    assert capped["AP50"] == pytest.approx(84 / 101)
    assert capped["AP"] == -1  # pycocotools looks AP up at 100 detections
    assert capped["per_class_AP"]["cat"] == pytest.approx(np.mean([84 / 101] * 10))


def test_segm_with_perfect_masks_gives_ap_one(gt):
    masks = np.zeros((3, 4, 64, 64), bool)
    detections = padded_detections(pad=2)
    anns = [a for a in gt.loadAnns(gt.getAnnIds()) if not a["iscrowd"]]
    for row, image_id in enumerate((1, 2, 3)):
        mine = [a for a in anns if a["image_id"] == image_id]
        for n, ann in enumerate(mine):
            masks[row, n] = gt.annToMask(ann).astype(bool)
    detections["masks"] = masks
    results = detections_to_coco([1, 2, 3], detections, CATEGORY_IDS)
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
    stats = coco_evaluate(gt, results, iou_type="segm")
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(1.0)
    # A mask halved keeps the box but loses IoU: segm AP drops, bbox AP does not.
    masks[0, 0, :, 14:] = False
    halved = detections_to_coco([1, 2, 3], detections, CATEGORY_IDS)
    assert coco_evaluate(gt, halved, iou_type="segm")["AP"] < 1.0
    assert coco_evaluate(gt, halved, iou_type="bbox")["AP"] == pytest.approx(1.0)


def test_segm_masks_padded_to_the_batch_are_cut_to_each_image(gt):
    """`predict` pads a batch's masks to its largest image; `image_sizes` cuts them back before RLE."""
    masks = np.zeros((3, 4, 80, 96), bool)  # the 64 x 64 images' masks, padded
    detections = padded_detections(pad=2)
    anns = [a for a in gt.loadAnns(gt.getAnnIds()) if not a["iscrowd"]]
    for row, image_id in enumerate((1, 2, 3)):
        for n, ann in enumerate(a for a in anns if a["image_id"] == image_id):
            masks[row, n, :64, :64] = gt.annToMask(ann).astype(bool)
    detections["masks"] = masks
    sizes = [(64, 64)] * 3
    results = detections_to_coco([1, 2, 3], detections, CATEGORY_IDS, sizes)
    assert all(r["segmentation"]["size"] == [64, 64] for r in results)
    assert coco_evaluate(gt, results, iou_type="segm")["AP"] == pytest.approx(1.0)
    uncut = detections_to_coco([1, 2, 3], detections, CATEGORY_IDS)
    assert coco_evaluate(gt, uncut, iou_type="segm")["AP"] < 0.5
    with pytest.raises(ValueError, match="image sizes"):
        detections_to_coco([1, 2, 3], detections, CATEGORY_IDS, sizes[:2])


def test_print_coco_table_prints_stats_and_classes(gt):
    from rich.console import Console

    console = Console(record=True, width=200)
    print_coco_table(coco_evaluate(gt, perfect_results()), console=console)
    text = console.export_text()
    assert "AP50" in text and "bird" in text and "1.000" in text


class GroundTruthSource(DetectionSource):
    """Blank 64×64 images over the `gt` fixture's COCO."""

    def __init__(self, coco):
        super().__init__()
        self.coco = coco
        self.image_ids = [1, 2, 3]
        self.category_ids = list(CATEGORY_IDS)
        self.class_names = ["cat", "dog", "bird"]

    def load_image(self, image_id):
        return np.zeros((64, 64, 3), np.uint8)


class OracleModel:
    """A stand-in detector that outputs the ground truth (boxes and masks).

    Blank images carry no id: the oracle is told which batches of ids to
    expect (`batches`), which also checks the order and size of the batches.
    """

    input_channel_order = "rgb"

    def __init__(self, coco, batches):
        self.coco = coco
        self.batches = [list(b) for b in batches]
        self.settings = []

    @contextlib.contextmanager
    def postprocess_settings(self, **settings):
        self.settings.append(settings)
        yield

    def preprocessor(self, images, input_channel_order, output_channel_order):
        sizes = np.array([image.shape[:2] for image in images])
        return {"images": np.stack(images), "scale_factors": np.ones((len(images), 2), np.float32), "original_sizes": sizes}

    def finalize_predictions(self, outputs, scale_factors, original_sizes):
        assert np.all(original_sizes == (64, 64))
        return outputs

    def predict_preprocessed_batch(self, x):
        ids = self.batches.pop(0)
        assert len(ids) == len(x["images"])
        rows = [i - 1 for i in ids]  # padded_detections() has one row per image 1, 2, 3
        out = {key: value[rows] for key, value in padded_detections().items()}
        out["masks"] = np.zeros(out["labels"].shape + (64, 64), bool)
        for row, image_id in enumerate(ids):
            anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id])) if not a["iscrowd"]]
            for n, ann in enumerate(anns):
                out["masks"][row, n] = self.coco.annToMask(ann).astype(bool)
        return out


def test_evaluate_coco_loops_over_the_source_and_merges_iou_types(gt):
    model = OracleModel(gt, batches=[[1, 2], [3]])
    source = GroundTruthSource(gt)
    stats = evaluate_coco(
        model, source, batch_size=2, iou_types=("bbox", "segm"), verbose=0, print_table=False, score_threshold=0.3
    )
    assert model.batches == [] and model.settings == [{"score_threshold": 0.3}]
    assert stats["AP"] == pytest.approx(1.0) and stats["segm_AP"] == pytest.approx(1.0)
    assert {f"segm_{key}" for key in STAT_KEYS} <= set(stats)
    assert stats["segm_per_class_AP"] == pytest.approx({"cat": 1.0, "dog": 1.0, "bird": 1.0})
