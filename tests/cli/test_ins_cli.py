"""RTMDet-Ins through the command line (train, val, predict, demo) and the mask drawing."""

import csv
import json

import numpy as np
import pytest

from keras_rtmdet.utils.drawing import class_color
from keras_rtmdet.utils.drawing import draw_detections
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.image_io import write_image
from keras_rtmdet_cli.main import main

# 4 training images: one step an epoch at --batch-size 4 (8 gave two, checking nothing more);
# the validation set is max(4, N // 4) = 4 images either way.
SYNTHETIC = ["--synthetic", "4", "--synthetic-size", "64"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


def _decode(rle):
    from pycocotools import mask as mask_util

    return mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


@pytest.mark.backend_independent
def test_draw_detections_fills_and_outlines_masks():
    image = np.full((40, 50, 3), 100, np.uint8)
    masks = np.zeros((2, 40, 50), bool)
    masks[0, 5:20, 5:20] = True
    masks[1, 25:35, 30:45] = True
    boxes = np.array([[5, 5, 20, 20], [30, 25, 45, 35]], np.float32)
    drawn = draw_detections(image, boxes, [0.9, 0.5], [1, 2], masks=masks, mask_alpha=0.5, thickness=1)
    assert np.all(image == 100)
    # Inside a mask, away from its contour and the box, the class colour is blended in half and half.
    expected = np.round(0.5 * 100 + 0.5 * np.array(class_color(2))).astype(np.uint8)
    np.testing.assert_array_equal(drawn[30, 37], expected)
    # Far from every object the image is untouched.
    np.testing.assert_array_equal(drawn[38, 2], [100, 100, 100])
    without = draw_detections(image, boxes, [0.9, 0.5], [1, 2], thickness=1)
    assert not np.array_equal(drawn, without)
    with pytest.raises(ValueError, match="masks of shape"):
        draw_detections(image, boxes, [0.9, 0.5], [1, 2], masks=masks[:, :30])
    with pytest.raises(ValueError, match="mask_alpha"):
        draw_detections(image, boxes, [0.9, 0.5], [1, 2], masks=masks, mask_alpha=2.0)


# The command line's wiring, once: each backend's Ins training, evaluation and predict run in
# tests/training/test_ins_training.py, tests/evaluation and the task tests.
@pytest.mark.backend_independent
def test_ins_train_val_predict(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", *SYNTHETIC, "--task", "ins", "--size", "tiny", "--image-size", "64", "--epochs", "1"]
    # No validation drawings here (one predict compile less): the demo test below draws masks.
    assert main([*args, "--batch-size", "4", "--warmup-steps", "2", "--num-val-images", "0", "--out", str(run)]) == 0
    assert "RTMDet-Ins-tiny" in capsys.readouterr().out
    with open(run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"AP", "segm_AP", "segm_AP50", "loss_mask"} <= set(rows[0])

    # A det --task against an Ins preset is refused.
    wrong = ["train", *SYNTHETIC, "--task", "det", "--preset", str(run / "best"), "--out", str(tmp_path / "x")]
    assert main(wrong) == 2
    assert "is an RTMDet-Ins (ins) model" in capsys.readouterr().err

    assert main(["val", "--preset", str(run / "best"), *SYNTHETIC, "--out", str(tmp_path / "val")]) == 0
    printed = capsys.readouterr().out
    assert "COCO bbox" in printed and "COCO segm" in printed
    metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0 and 0.0 <= metrics["segm_AP"] <= 1.0 and "segm_per_class_AP" in metrics

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (48, 64), "b.png": (64, 40)}.items():
        write_image(images / name, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = tmp_path / "pred"
    predict = ["predict", str(images), "--preset", str(run / "best"), "--out", str(out)]
    assert main([*predict, "--score-thr", "0.0", "--max-det", "5"]) == 0
    results = json.loads((out / "detections.json").read_text())
    assert len(results["images"]) == 2
    for entry in results["images"]:
        assert entry["detections"], "score 0 keeps the top max-det candidates"
        for detection in entry["detections"]:
            assert _decode(detection["mask"]).shape == (entry["height"], entry["width"])
        assert read_image(out / entry["output"]).shape == (entry["height"], entry["width"], 3)


def test_ins_demo_wiring(tmp_path, capsys, monkeypatch):
    """`demo --task ins` trains an RTMDetIns on masks and reports mask AP (training itself: the test above)."""
    from keras_rtmdet import RTMDetIns
    from keras_rtmdet.training import train_recipe

    seen = {}

    def no_training(model, train_source, run_dir, **kwargs):
        seen.update(model=model, with_masks=train_source.with_masks)

    monkeypatch.setattr(train_recipe, "train_rtmdet", no_training)
    out = tmp_path / "demo"
    args = ["--task", "ins", "--images", "8", "--epochs", "1", "--image-size", "64", "--batch-size", "4"]
    assert main(["demo", *args, "--out", str(out)]) == 0
    assert isinstance(seen["model"], RTMDetIns) and seen["with_masks"]
    assert "mask AP" in capsys.readouterr().out
    assert len(list((out / "val_predictions").glob("*.jpg"))) == 6
