"""`evaluate_coco` and `CocoEvaluationCallback` run a real (tiny, untrained) model end to end."""

import contextlib
import csv
import io
import json
import math
import os

import numpy as np
import pytest
from pycocotools.coco import COCO

from keras_rtmdet import RTMDet
from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.evaluation import STAT_KEYS
from keras_rtmdet.evaluation import CocoEvaluationCallback
from keras_rtmdet.evaluation import evaluate_coco
from keras_rtmdet.evaluation import plot_results
from keras_rtmdet.training import ExpMomentumEMA
from keras_rtmdet.training.optimizer import rtmdet_optimizer
from tests.test_case import shapes_batch
from tests.test_case import tiny_model

CATEGORY_IDS = [3, 7, 12]


class ShapesSource(DetectionSource):
    """Generated 64×64 images (coloured rectangles), ground truth with category ids 3, 7, 12."""

    def __init__(self, num_images=3):
        super().__init__()
        images, targets = shapes_batch(num_images)
        self.images = images.astype(np.uint8)
        self.targets = targets
        self.image_ids = [10 + i for i in range(num_images)]
        self.category_ids = list(CATEGORY_IDS)
        self.class_names = ["red", "green", "blue"]
        annotations = []
        for row, image_id in enumerate(self.image_ids):
            for box, label in zip(targets["boxes"][row], targets["labels"][row]):
                if label < 0:
                    continue
                x0, y0, x1, y1 = (float(v) for v in box)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": CATEGORY_IDS[label],
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": (x1 - x0) * (y1 - y0),
                        "iscrowd": 0,
                    }
                )
        self.coco = COCO()
        self.coco.dataset = {
            "images": [{"id": i, "width": 64, "height": 64} for i in self.image_ids],
            "annotations": annotations,
            "categories": [{"id": c, "name": n} for c, n in zip(CATEGORY_IDS, self.class_names)],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()

    def load_image(self, image_id):
        return self.images[self.image_ids.index(image_id)]

    def annotations(self, image_id):
        row = self.image_ids.index(image_id)
        keep = self.targets["labels"][row] >= 0
        return {"boxes": self.targets["boxes"][row][keep], "labels": self.targets["labels"][row][keep]}


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_evaluate_coco_runs_the_model_and_returns_the_stats():
    source = ShapesSource(3)
    model = tiny_model()
    stats = evaluate_coco(model, source, batch_size=2, verbose=0, print_table=False)
    assert set(STAT_KEYS) <= set(stats)
    assert all(-1.0 <= stats[key] <= 1.0 for key in STAT_KEYS)
    assert set(stats["per_class_AP"]) == {"red", "green", "blue"}


def test_callback_writes_results_presets_and_resumes(tmp_path):
    source = ShapesSource(2)
    images, targets = shapes_batch(2)
    run_dir = tmp_path / "run"
    model = tiny_model()
    model.compile(optimizer=rtmdet_optimizer(model, 3, 1, 2))
    ema = ExpMomentumEMA()
    callback = CocoEvaluationCallback(source, run_dir, ema=ema, batch_size=2, verbose=0)
    history = model.fit(images, targets, batch_size=2, epochs=2, verbose=0, callbacks=[ema, callback])

    header, rows = read_csv(run_dir / "results.csv")
    assert header[0] == "epoch"
    assert {"loss", "loss_cls", "loss_bbox", "learning_rate", *STAT_KEYS} <= set(header)
    assert [row[0] for row in rows] == ["1", "2"]
    assert len(history.history["val_AP"]) == 2 and "val_AR100" in history.history
    details = json.loads((run_dir / "val_metrics.json").read_text())
    assert details["AP"] == pytest.approx(float(rows[-1][header.index("AP")]), abs=1e-6)
    assert {"per_class", "pr_curves", "confusion_matrix"} <= set(details)
    for figure in ("val_precision_recall.png", "val_confusion_matrix.png"):
        assert os.path.isfile(run_dir / figure)
    for name in ("best", "last"):
        assert os.path.isfile(run_dir / name / "model.weights.h5")
    # `last` holds the epoch-2 EMA weights, which `fit` leaves in the model at its end.
    last = RTMDet.from_preset(str(run_dir / "last"))
    for saved, current in zip(last.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(saved, current)
    assert isinstance(RTMDet.from_preset(str(run_dir / "best")), RTMDet)

    # Pretend epoch 1 scored 0.9: a resumed run must not replace `best` with a worse model.
    ap_column = header.index("AP")
    rows[0][ap_column] = "0.9"
    with open(run_dir / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    best_weights = (run_dir / "best" / "model.weights.h5").read_bytes()

    ema = ExpMomentumEMA()
    resumed = CocoEvaluationCallback(source, run_dir, every=5, ema=ema, batch_size=2, verbose=0)
    model.fit(images, targets, batch_size=2, epochs=3, initial_epoch=2, verbose=0, callbacks=[ema, resumed])
    new_header, new_rows = read_csv(run_dir / "results.csv")
    assert new_header == header
    # every=5, but the last epoch is always evaluated.
    assert [row[0] for row in new_rows] == ["1", "2", "3"]
    assert resumed.best_ap == 0.9
    assert (run_dir / "best" / "model.weights.h5").read_bytes() == best_weights
    assert math.isfinite(float(new_rows[-1][ap_column]))

    out = plot_results(run_dir / "results.csv", tmp_path / "results.png")
    assert os.path.getsize(out) > 0


def test_plot_results_handles_a_single_row_and_missing_columns(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("epoch,loss,AP\n1,0.5,0.1\n")
    assert os.path.getsize(plot_results(path, tmp_path / "one.png")) > 0
    path.write_text("epoch,foo\n1,2\n2,3\n")
    assert os.path.getsize(plot_results(path, tmp_path / "none.png")) > 0
