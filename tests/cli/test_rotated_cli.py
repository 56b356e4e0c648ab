"""RTMDet-R through the command line (train, val, predict with patches, demo), DOTA folders and rotated drawing."""

import argparse
import csv
import json

import numpy as np
import pytest

from keras_rtmdet import RTMDetRotated
from keras_rtmdet.data.dota import DotaSource
from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.data.rotated_pipeline import rotated_train_pipeline
from keras_rtmdet.data.source_dataset import source_dataset
from keras_rtmdet.data.synthetic_rotated import ROTATED_SHAPE_NAMES
from keras_rtmdet.data.synthetic_rotated import SyntheticRotatedSource
from keras_rtmdet.utils.drawing import class_color
from keras_rtmdet.utils.drawing import draw_detections
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.image_io import write_image
from keras_rtmdet_cli import train as train_cli
from keras_rtmdet_cli.data_args import build_sources
from keras_rtmdet_cli.main import build_parser
from keras_rtmdet_cli.main import main
from tests.test_case import tiny_model

# 4 training images: one step an epoch at --batch-size 4; 4 validation images (max(4, N // 4)).
SYNTHETIC = ["--synthetic", "4", "--synthetic-size", "64"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def mini_rotated_preset(tmp_path_factory):
    """An RTMDet-R preset at the smallest width (0.125), 3 synthetic classes, 64²."""
    model = tiny_model(RTMDetRotated, exp_on_reg=True, seed=0, class_names=list(ROTATED_SHAPE_NAMES[:3]))
    path = tmp_path_factory.mktemp("presets") / "mini_rot"
    model.save_to_preset(str(path))
    return path


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# The command line's wiring, once: each backend's rotated training, DOTA evaluation and predict run in
# tests/training/test_rotated_training.py, tests/evaluation and the task tests.
@pytest.mark.backend_independent
def test_rotated_train_val_predict(tmp_path, capsys, mini_rotated_preset):
    run = tmp_path / "run"
    args = ["train", *SYNTHETIC, "--preset", str(mini_rotated_preset), "--image-size", "64", "--epochs", "1"]
    # No drawn validation images here (one predict compile less): the demo test below draws them.
    assert main([*args, "--batch-size", "4", "--warmup-steps", "2", "--num-val-images", "0", "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "RTMDet-R" in printed and "mAP" in printed and "ellipse" in printed
    rows = read_rows(run / "results.csv")
    assert len(rows) == 1 and {"mAP50", "mAP75", "mmAP", "AP50_ship", "loss_bbox", "learning_rate"} <= set(rows[0])
    assert 0.0 <= float(rows[0]["mAP50"]) <= 1.0
    assert json.loads((run / "best" / "metadata.json").read_text())["mAP50"] == float(rows[0]["mAP50"])
    for name in ("results.png", "args.json", "last/model.weights.h5", "train_log.csv", "val_metrics.json",
                 "val_precision_recall.png", "val_confusion_matrix.png"):
        assert (run / name).is_file(), name
    # The rotated recipe's learning rate: 0.004/16 at batch 8, here batch 4, during warm-up.
    assert float(rows[0]["learning_rate"]) <= 0.004 / 16 * 4 / 8 + 1e-9

    val = ["val", "--preset", str(run / "best"), *SYNTHETIC, "--score-thr", "0.0", "--out", str(tmp_path / "val")]
    assert main(val) == 0
    printed = capsys.readouterr().out
    assert "DOTA" in printed and "arrow" in printed and "AP50" in printed
    metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP50"] <= 1.0 and {"mAP75", "mmAP", "per_class", "per_class_AP"} <= set(metrics)
    assert set(metrics["per_class"]["ship"]) == {"AP", "AP50", "AP75", "ground_truths", "detections", "recall"}
    assert set(metrics["pr_curves"]["classes"]) <= set(ROTATED_SHAPE_NAMES[:3])
    assert metrics["confusion_matrix"]["classes"] == [*ROTATED_SHAPE_NAMES[:3], "background"]
    assert np.asarray(metrics["confusion_matrix"]["matrix"]).shape == (4, 4)
    for figure in ("precision_recall.png", "confusion_matrix.png"):
        assert (tmp_path / "val" / figure).is_file(), figure

    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "small.png", SyntheticRotatedSource(1, image_size=(48, 64), seed=3).load_image(0))
    write_image(images / "large.png", SyntheticRotatedSource(1, image_size=(100, 150), seed=4).load_image(0))
    out = tmp_path / "pred"
    predict = ["predict", str(images), "--preset", str(run / "best"), "--out", str(out), "--score-thr", "0.0"]
    assert main([*predict, "--max-det", "5", "--patch-size", "64", "--gap", "16"]) == 0
    results = json.loads((out / "detections.json").read_text())
    assert results["settings"]["patch_size"] == 64 and results["settings"]["gap"] == 16
    by_file = {entry["file"].rsplit("/", 1)[-1]: entry for entry in results["images"]}
    assert len(by_file["small.png"]["detections"]) == 5
    # Six 64-px windows on the large image, up to 5 detections each, merged by rotated NMS.
    assert 5 <= len(by_file["large.png"]["detections"]) <= 30
    for entry in results["images"]:
        assert read_image(out / entry["output"]).shape == (entry["height"], entry["width"], 3)
        for detection in entry["detections"]:
            assert "box" not in detection and len(detection["rbox"]) == 5 and detection["class_name"] in ROTATED_SHAPE_NAMES
            expected = rboxes_to_polygons(np.array([detection["rbox"]], np.float32))[0]
            np.testing.assert_allclose(detection["polygon"], expected, atol=2e-3)


def test_rotated_cli_refuses_bad_inputs_with_reasons(tmp_path, capsys, mini_rotated_preset):
    mini = str(mini_rotated_preset)
    out = ["--out", str(tmp_path / "x")]
    assert main(["train", "--dota", "images", "annfiles", *out]) == 2
    assert "--dota data have rotated boxes" in capsys.readouterr().err
    assert main(["train", "--task", "rot", "--tfds", "coco/2017", *out]) == 2
    assert "needs rotated boxes" in capsys.readouterr().err
    assert main(["train", "--task", "rot", "--val-dota", "images", "annfiles", *out]) == 2
    assert "training needs --dota" in capsys.readouterr().err
    assert main(["train", "--task", "rot", "--dota", str(tmp_path / "none"), str(tmp_path), *out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--task", "rot", "--size", "x", *SYNTHETIC, *out]) == 2
    assert "RTMDet-R comes in sizes tiny, s, m, l" in capsys.readouterr().err
    assert main(["train", "--task", "det", "--preset", mini, *SYNTHETIC, *out]) == 2
    assert "is an RTMDet-R (rot) model" in capsys.readouterr().err
    stage2 = ["--image-size", "64", "--batch-size", "4", "--stage2-epochs", "2"]
    assert main(["train", "--preset", mini, *SYNTHETIC, *stage2, *out]) == 2
    assert "one stage" in capsys.readouterr().err
    assert main(["val", "--preset", mini, "--val-ann", "a.json", "--val-images", "images"]) == 2
    assert "needs rotated boxes" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--preset", mini, "--patch-size", "32", "--gap", "40", *out]) == 2
    assert "--gap < --patch-size" in capsys.readouterr().err


@pytest.mark.backend_independent
def test_rot_task_defaults_to_the_mmrotate_recipe(monkeypatch):
    args = build_parser().parse_args(["train", "--task", "rot", "--size", "tiny", *SYNTHETIC])
    task = train_cli.resolve_task(args)
    train_cli.fill_run_defaults(args, task)
    assert task == "rot" and (args.image_size, args.epochs, args.batch_size, args.val_every) == (1024, 36, 8, 12)
    train_source, val_source = build_sources(args, train=True, rotated=True)
    assert isinstance(train_source, SyntheticRotatedSource) and isinstance(val_source, SyntheticRotatedSource)
    # The architecture chosen, without building the model (initialising it is slow on JAX).
    built = {}
    monkeypatch.setattr(RTMDetRotated, "from_arch", classmethod(lambda cls, **kwargs: built.update(kwargs) or cls))
    assert train_cli.build_model(args, train_source.num_classes, list(train_source.class_names), task) is RTMDetRotated
    assert built == {"deepen_factor": 0.167, "widen_factor": 0.375, "neck_num_csp_blocks": 1, "exp_on_reg": False,
                     "num_classes": 3, "class_names": ["ship", "ellipse", "arrow"], "image_size": (1024, 1024)}
    det = build_parser().parse_args(["train", *SYNTHETIC])
    train_cli.fill_run_defaults(det, train_cli.resolve_task(det))
    assert (det.image_size, det.epochs, det.batch_size, det.val_every) == (640, 300, 32, 10)


def write_dota_folder(root, source):
    """`source`'s images as PNGs with DOTA annotation txts (polygon, class, difficulty); one image without objects."""
    (root / "images").mkdir(parents=True)
    (root / "annfiles").mkdir()
    for image_id in source.image_ids:
        write_image(root / "images" / f"P{image_id:04d}.png", source.load_image(image_id))
        ann = source.annotations(image_id)
        lines = [
            " ".join(f"{v:.3f}" for v in polygon) + f" {source.class_names[label]} 0\n"
            for polygon, label in zip(ann["polygons"], ann["labels"])
        ]
        (root / "annfiles" / f"P{image_id:04d}.txt").write_text("imagesource:synthetic\n" + "".join(lines))
    write_image(root / "images" / "P9999.png", np.zeros((40, 40, 3), np.uint8))
    (root / "annfiles" / "P9999.txt").write_text("")


@pytest.mark.backend_independent
def test_dota_folders_feed_the_rotated_pipeline(tmp_path):
    source = SyntheticRotatedSource(3, image_size=(64, 64), seed=2)
    write_dota_folder(tmp_path, source)
    folders = [str(tmp_path / "images"), str(tmp_path / "annfiles")]
    names = ["--dota-classes", ",".join(source.class_names)]
    args = build_parser().parse_args(["train", "--task", "rot", "--dota", *folders, "--val-dota", *folders, *names])
    train_source, val_source = build_sources(args, train=True, rotated=True)
    assert isinstance(train_source, DotaSource) and len(train_source) == 3 and len(val_source) == 4
    assert train_source.class_names == source.class_names
    val_args = build_parser().parse_args(["val", "--preset", "unused", "--dota", *folders, *names])
    assert len(build_sources(val_args, train=False, rotated=True)[1]) == 4
    # The default classes are DOTA-v1.0's, which do not know these names; a blank name is refused.
    with pytest.raises(ValueError, match="unknown class 'ship'|unknown class 'ellipse'|unknown class 'arrow'"):
        build_sources(build_parser().parse_args(["val", "--preset", "p", "--dota", *folders]), train=False, rotated=True)
    with pytest.raises(argparse.ArgumentTypeError, match="distinct, non-empty"):
        build_sources(build_parser().parse_args(["val", "--preset", "p", "--dota", *folders, "--dota-classes", "a,,b"]),
                      train=False, rotated=True)
    for image_id in train_source.image_ids:
        ours, theirs = train_source.annotations(image_id), source.annotations(image_id)
        np.testing.assert_array_equal(ours["labels"], theirs["labels"])
        np.testing.assert_allclose(ours["boxes"][:, :4], theirs["boxes"][:, :4], atol=0.05)
    samples = source_dataset(train_source, shuffle=False)
    assert samples.element_spec["boxes"].shape.as_list() == [None, 5]
    images, targets = next(iter(rotated_train_pipeline(samples, image_size=64, batch_size=3, max_boxes=8, seed=0)))
    assert images.shape == (3, 64, 64, 3) and targets["boxes"].shape == (3, 8, 5)
    assert int(np.sum(targets["labels"].numpy() >= 0)) >= 1


@pytest.mark.backend_independent
def test_draw_detections_draws_rotated_polygons():
    image = np.full((60, 60, 3), 100, np.uint8)
    box = np.array([[30, 30, 40, 10, np.pi / 4]], np.float32)
    drawn = draw_detections(image, box, [0.9], [2], ["a", "b", "c"], thickness=1)
    colour = np.array(class_color(2))
    corners = rboxes_to_polygons(box).reshape(4, 2)
    # Halfway along an edge the line has the class colour; the centre and the axis-aligned hull's corner do not.
    middle = np.round((corners[0] + corners[1]) / 2).astype(int)
    near = drawn[middle[1] - 1 : middle[1] + 2, middle[0] - 1 : middle[0] + 2].reshape(-1, 3).astype(int)
    assert np.min(np.abs(near - colour).sum(-1)) < 60
    np.testing.assert_array_equal(drawn[30, 30], [100, 100, 100])
    np.testing.assert_array_equal(drawn[50, 50], [100, 100, 100])
    assert not np.array_equal(drawn, draw_detections(image, np.array([[10, 10, 50, 50]]), [0.9], [2], thickness=1))
    assert np.array_equal(draw_detections(image, np.zeros((0, 5)), [], []), image)


def test_rotated_demo_wiring(tmp_path, capsys, monkeypatch):
    """`demo --task rot` trains an RTMDet-R on synthetic rotated shapes and reports DOTA mAP (training: the test above)."""
    from keras_rtmdet.training import train_recipe

    seen = {}

    def no_training(model, train_source, run_dir, **kwargs):
        seen.update(model=model, source=train_source, kwargs=kwargs)

    monkeypatch.setattr(train_recipe, "train_rtmdet", no_training)
    out = tmp_path / "demo"
    args = ["--task", "rot", "--images", "4", "--epochs", "1", "--image-size", "64", "--batch-size", "4"]
    assert main(["demo", *args, "--out", str(out)]) == 0
    assert isinstance(seen["model"], RTMDetRotated) and isinstance(seen["source"], SyntheticRotatedSource)
    assert isinstance(seen["kwargs"]["val_source"], SyntheticRotatedSource)
    assert "Final mAP50" in capsys.readouterr().out
    assert len(list((out / "val_predictions").glob("*.jpg"))) == 6


@pytest.mark.backend_independent
def test_bad_argument_namespace_is_refused():
    with pytest.raises(argparse.ArgumentTypeError, match="exactly one data source"):
        build_sources(build_parser().parse_args(["val", "--preset", "p"]), train=False, rotated=True)
