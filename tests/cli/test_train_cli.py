"""`rtmdet train`, `rtmdet val` and `rtmdet demo` on generated data, in-process."""

import argparse
import csv
import json
import os

import cv2
import keras
import pytest

from keras_rtmdet_cli.main import main
from keras_rtmdet_cli.train import add_parser

# 4 training images: one step an epoch at --batch-size 4 (8 gave two, checking nothing more);
# the validation set is max(4, N // 4) = 4 images either way.
SYNTHETIC = ["--synthetic", "4", "--synthetic-size", "64"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


def test_train_then_val_on_synthetic_data(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", *SYNTHETIC, "--size", "tiny", "--image-size", "64", "--epochs", "1", "--batch-size", "4"]
    assert main([*args, "--val-every", "1", "--warmup-steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Training data" in printed and "Validation data" in printed
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1]
    assert {"AP", "AP50", "loss", "loss_cls", "loss_bbox"} <= set(rows[0])
    for name in ("results.png", "args.json", "best/config.json", "last/model.weights.h5"):
        assert (out / name).is_file(), name
    assert len(list((out / "val_predictions").glob("*.jpg"))) == 4
    assert not (out / "backup").exists()  # a finished run leaves no backup behind
    saved_args = (out / "args.json").read_text()
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run" in err and "--exist-ok" in err
    assert (out / "args.json").read_text() == saved_args and (out / "results.csv").is_file()

    capsys.readouterr()
    assert main(["val", "--preset", str(out / "best"), *SYNTHETIC, "--out", str(tmp_path / "val")]) == 0
    metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0 and "AR100" in metrics
    assert set(metrics["per_class"]) == set(metrics["per_class_AP"]) and "pr_curves" in metrics
    assert len(metrics["confusion_matrix"]["matrix"]) == len(metrics["per_class"]) + 1
    assert (tmp_path / "val" / "precision_recall.png").is_file() and (tmp_path / "val" / "confusion_matrix.png").is_file()
    assert "AP50" in capsys.readouterr().out


def test_train_refuses_bad_runs_with_reasons(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "backup").mkdir(parents=True)
    assert main(["train", *SYNTHETIC, "--out", str(out)]) == 2
    assert "interrupted run" in capsys.readouterr().err
    assert main(["train", *SYNTHETIC, "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "no args.json" in capsys.readouterr().err
    assert main(["train", *SYNTHETIC, "--tfds", "coco/2017", "--out", str(tmp_path / "x")]) == 2
    assert "exactly one data source" in capsys.readouterr().err
    assert main(["train", "--val-ann", "a.json", "--out", str(tmp_path / "x")]) == 2
    assert "--val-ann and --val-images go together" in capsys.readouterr().err
    assert main(["val", "--preset", "rtmdet_nope", *SYNTHETIC]) == 2
    assert "rtmdet_nope" in capsys.readouterr().err
    backbone = ["--backbone-preset", "cspnext_s_imagenet"]
    assert main(["train", *SYNTHETIC, "--preset", "rtmdet_s_coco", *backbone, "--out", str(tmp_path / "y")]) == 2
    assert "cannot be combined with --preset" in capsys.readouterr().err
    assert main(["train", *SYNTHETIC, "--size", "tiny", *backbone, "--out", str(tmp_path / "z")]) == 2
    assert "deepen_factor=0.33 but this model's backbone has deepen_factor=0.167" in capsys.readouterr().err
    # One CPU device here; torch's replicas are torchrun processes, not a device count.
    too_many = "torchrun" if keras.backend.backend() == "torch" else "3 devices asked for, 1 available"
    assert main(["train", *SYNTHETIC, "--devices", "3", "--out", str(tmp_path / "d")]) == 2
    assert too_many in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", *SYNTHETIC, "--devices", "0", "--out", str(tmp_path / "d")])
    assert "--devices takes a positive count or 'all', not '0'" in capsys.readouterr().err


def test_demo_wiring(tmp_path, capsys, monkeypatch):
    """`demo` trains an RTMDet on generated shapes and reports box AP (training itself: the test above)."""
    from keras_rtmdet import RTMDet
    from keras_rtmdet.data.synthetic import SyntheticShapesSource
    from keras_rtmdet.training import train_recipe

    seen = {}

    def no_training(model, train_source, run_dir, **kwargs):
        seen.update(model=model, source=train_source, kwargs=kwargs)

    monkeypatch.setattr(train_recipe, "train_rtmdet", no_training)
    out = tmp_path / "demo"
    args = ["--images", "4", "--epochs", "1", "--image-size", "64", "--batch-size", "4", "--out", str(out)]
    assert main(["demo", *args]) == 0
    assert type(seen["model"]) is RTMDet and isinstance(seen["source"], SyntheticShapesSource)
    assert isinstance(seen["kwargs"]["val_source"], SyntheticShapesSource) and seen["kwargs"]["epochs"] == 1
    assert seen["kwargs"]["stage2_epochs"] == 0
    assert "Final box AP" in capsys.readouterr().out
    pictures = sorted((out / "val_predictions").glob("*.jpg"))
    assert len(pictures) == 6
    # Ground truth beside prediction, each panel enlarged from 48-64 pixels to at least 320.
    height, width = cv2.imread(str(pictures[0])).shape[:2]
    assert height >= 320 and width >= 2 * 320


@pytest.mark.backend_independent
def test_demo_schedule_is_the_tasks_short_one_or_half_light():
    from keras_rtmdet_cli.demo import TASK_SCHEDULES
    from keras_rtmdet_cli.demo import demo_schedule

    assert demo_schedule("det") == TASK_SCHEDULES["det"][:2] == (44, 22)
    assert demo_schedule("ins", epochs=30) == (30, 15)
    assert demo_schedule("det", epochs=30, stage2_epochs=3) == (30, 3)
    assert demo_schedule("rot") == (20, None) and demo_schedule("rot", epochs=5) == (5, None)
    with pytest.raises(ValueError, match="--task rot trains in one stage"):
        demo_schedule("rot", stage2_epochs=2)
    with pytest.raises(ValueError, match=r"--stage2-epochs must be in \[0, --epochs=10\], got 11"):
        demo_schedule("det", epochs=10, stage2_epochs=11)


@pytest.mark.backend_independent
def test_run_folders_increment_and_are_never_overwritten_silently(tmp_path, monkeypatch, capsys):
    from keras_rtmdet_cli.train import _run_arguments

    monkeypatch.chdir(tmp_path)

    def settle(*extra):
        parser = argparse.ArgumentParser()
        add_parser(parser.add_subparsers())
        return _run_arguments(parser.parse_args(["train", *SYNTHETIC, *extra])).out

    assert settle() == os.path.join("runs", "train")
    os.makedirs(os.path.join("runs", "train", "best"))
    assert settle() == os.path.join("runs", "train2")
    finished = tmp_path / "finished"
    (finished / "last").mkdir(parents=True)
    (finished / "results.csv").write_text("epoch,AP\n1,0.1\n")
    (finished / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"finished run \(results.csv, last\).*--exist-ok"):
        settle("--out", str(finished))
    assert (finished / "results.csv").is_file()
    assert settle("--out", str(finished), "--exist-ok") == str(finished)
    assert sorted(p.name for p in finished.iterdir()) == ["notes.txt"]  # only the run's own files go
    with pytest.raises(ValueError, match="--resume needs the run's folder"):
        settle("--resume")


@pytest.mark.backend_independent
def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, monkeypatch, capsys):
    from keras_rtmdet_cli import train as train_command
    from keras_rtmdet.training.stop_conditions import TrainingInterrupted

    out = tmp_path / "run"

    def interrupted(args, task, console, err):
        (out / "backup").mkdir(parents=True)
        raise TrainingInterrupted("stopped", 1, 4)

    monkeypatch.setattr(train_command, "_train", interrupted)
    assert main(["train", *SYNTHETIC, "--out", str(out)]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"Interrupted after epoch 2, step 5; continue with: rtmdet train --resume --out {out}"]
