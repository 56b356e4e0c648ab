"""The `rtmdet` command line, run in-process on the random-weight mini fixture."""

import fnmatch
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import keras_rtmdet
from keras_rtmdet.utils.coco_classes import COCO_CLASSES
from keras_rtmdet.utils.detection_matching import match_detections
from keras_rtmdet.utils.drawing import class_color
from keras_rtmdet.utils.drawing import draw_detections
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet_cli import parity
from keras_rtmdet_cli.main import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "det_mini_linear"
MINI_ARCH = "0.167,0.125,1,false"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    # Rich wraps at 80 columns when not on a terminal, which could split the
    # file names the tests look for.
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def mini_preset(tmp_path_factory):
    """A preset directory converted from the mini checkpoint by `rtmdet convert --arch`."""
    out = tmp_path_factory.mktemp("convert") / "mini"
    checkpoint = str(FIXTURE / "checkpoint.pth")
    code = main(["convert", checkpoint, "--arch", MINI_ARCH, "--image-size", "160", "--out", str(out)])
    assert code == 0
    return out


def _write_noise(path, height, width, seed):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 0)
    assert cv2.imwrite(str(path), image)


def test_parity_matches_mmdet_and_writes_outputs(tmp_path, capsys):
    out = tmp_path / "parity"
    assert main(["parity", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "PASS" in printed
    for name in ("img0.jpg", "img1.jpg", "detections.json", "preset/config.json", "preset/model.weights.h5"):
        assert (out / name).is_file(), name
    results = json.loads((out / "detections.json").read_text())
    assert [len(entry["detections"]) for entry in results["images"]] == [300, 300]
    assert read_image(out / "img0.jpg").shape == (160, 160, 3)


@pytest.mark.backend_independent
def test_parity_fixture_ships_with_the_package():
    # `rtmdet parity` from an installed wheel: its fixture is package data, not tests/fixtures.
    package = Path(keras_rtmdet.__file__).resolve().parent
    folder = parity.default_fixture()
    assert folder.resolve() == package / "resources" / parity.FIXTURE_NAME
    for name in parity.FIXTURE_FILES:
        # Real files in the package (tests/fixtures/det_mini_linear links to them, not the other way).
        assert (folder / name).is_file() and not (folder / name).is_symlink(), name
    meta, images, reference = parity.read_fixture(folder)
    assert meta["model"] == parity.FIXTURE_NAME and images.shape == (2, 160, 160, 3)
    assert [len(reference[f"img{i}_bboxes"]) for i in range(2)] == [300, 300]
    # ... and the wheel carries them: pyproject.toml's package data names each one.
    pyproject = package.parent / "pyproject.toml"
    if pyproject.is_file():  # a source checkout (an installed package has no pyproject.toml)
        # tomllib is in the standard library from Python 3.11 (CI's); on 3.10 this packaging half of the
        # check shows as a skip with its reason, never as a pass.
        tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
        setuptools_config = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
        patterns = setuptools_config["package-data"]["keras_rtmdet.resources"]
        for name in parity.FIXTURE_FILES:
            assert any(fnmatch.fnmatch(f"{parity.FIXTURE_NAME}/{name}", p) for p in patterns), name


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "broken, message",
    [
        ("missing", "Fixture directory not found"),
        ("empty", "it has no meta.json, checkpoint.pth, inputs.npz, preds.npz"),
        ("inputs.npz", "is not a readable parity fixture"),
        ("preds.npz", "is not a readable parity fixture"),
        ("meta.json", "is not a readable parity fixture"),
    ],
)
def test_parity_bad_fixture_exits_2_naming_it(broken, message, tmp_path, capsys):
    fixture = tmp_path / "fixture"
    if broken != "missing":
        fixture.mkdir()
    if broken not in ("missing", "empty"):
        for name in parity.FIXTURE_FILES:
            (fixture / name).write_bytes((parity.default_fixture() / name).read_bytes())
        (fixture / broken).write_bytes(b"not a fixture file")
    out = tmp_path / "parity"
    assert main(["parity", "--fixture", str(fixture), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(fixture) in err and "Traceback" not in err
    assert not (out / "preset").exists()


def test_convert_then_predict_writes_json(mini_preset, tmp_path, capsys):
    metadata = json.loads((mini_preset / "metadata.json").read_text())
    assert metadata["source_checkpoint"].endswith("checkpoint.pth")
    assert metadata["arch"]["widen_factor"] == 0.125
    images = tmp_path / "images"
    images.mkdir()
    _write_noise(images / "wide.png", 48, 96, seed=0)
    _write_noise(images / "tall.jpg", 80, 40, seed=1)
    (images / "notes.txt").write_text("not an image, and not picked up from a directory")
    out = tmp_path / "pred"
    args = ["--preset", str(mini_preset), "--out", str(out), "--score-thr", "0.05"]
    code = main(["predict", str(images), *args])
    assert code == 0
    assert "Detections" in capsys.readouterr().out

    results = json.loads((out / "detections.json").read_text())
    assert set(results) == {"model", "settings", "images", "videos", "errors"} and results["videos"] == []
    assert results["errors"] == [] and results["settings"]["score_threshold"] == 0.05
    by_name = {Path(entry["file"]).name: entry for entry in results["images"]}
    assert set(by_name) == {"wide.png", "tall.jpg"}
    written = (out / "detections.json").read_text()
    assert main(["predict", str(images), *args]) == 2  # the same --out again: refused, nothing overwritten
    assert "--exist-ok" in capsys.readouterr().err and (out / "detections.json").read_text() == written
    assert (by_name["wide.png"]["width"], by_name["wide.png"]["height"]) == (96, 48)
    assert (by_name["tall.jpg"]["width"], by_name["tall.jpg"]["height"]) == (40, 80)
    detections = [d for entry in results["images"] for d in entry["detections"]]
    assert detections, "random weights still score some boxes above 0.05"
    for d in detections:
        assert set(d) == {"box", "score", "label", "class_name"}
        x1, y1, x2, y2 = d["box"]
        assert x1 <= x2 and y1 <= y2
        assert d["score"] >= 0.05 and d["class_name"] == COCO_CLASSES[d["label"]]
    for entry in results["images"]:
        assert read_image(out / entry["output"]).shape == (entry["height"], entry["width"], 3)


@pytest.mark.backend_independent  # the CLI's part; the class mask in each backend's step: test_predict_steps.py
def test_predict_keeps_the_classes_asked_for(mini_preset, tmp_path, capsys):
    _write_noise(tmp_path / "noise.png", 64, 64, seed=3)
    common = [str(tmp_path / "noise.png"), "--preset", str(mini_preset), "--score-thr", "0.02"]
    assert main(["predict", *common, "--out", str(tmp_path / "all")]) == 0
    found = json.loads((tmp_path / "all" / "detections.json").read_text())["images"][0]["detections"]
    wanted = sorted({d["label"] for d in found})[:2]
    assert len(wanted) == 2, "random weights score several classes above 0.02"
    names = [COCO_CLASSES[wanted[0]], str(wanted[1])]  # a name and an index
    out = tmp_path / "some"
    filters = ["--classes", ",".join(names), "--agnostic-nms", "--save-txt", "--save-conf"]
    assert main(["predict", *common, "--out", str(out), *filters]) == 0
    results = json.loads((out / "detections.json").read_text())
    assert results["settings"]["classes"] == [names[0], wanted[1]] and results["settings"]["agnostic_nms"] is True
    kept = results["images"][0]["detections"]
    assert kept and {d["label"] for d in kept} <= set(wanted)
    lines = (out / "labels" / "noise.txt").read_text().splitlines()
    assert [(int(line.split()[0]), float(line.split()[-1])) for line in lines] == [
        (d["label"], pytest.approx(d["score"], abs=1e-6)) for d in kept
    ]
    capsys.readouterr()
    assert main(["predict", *common, "--out", str(tmp_path / "bad"), "--classes", "unicorn"]) == 2
    assert "Unknown class 'unicorn'" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_convert_wrong_arch_exits_2_naming_a_key(tmp_path, capsys):
    out = tmp_path / "wrong"
    checkpoint = str(FIXTURE / "checkpoint.pth")
    code = main(["convert", checkpoint, "--arch", "0.167,0.25,1,false", "--image-size", "160", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "'backbone." in err and "Traceback" not in err
    assert not (out / "config.json").exists()


def test_convert_rejects_malformed_arch(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "x.pth", "--arch", "0.167,0.125", "--out", "unused"])
    assert exit_info.value.code == 2
    assert "deepen,widen,neck_blocks,exp_on_reg" in capsys.readouterr().err


def test_predict_reports_corrupt_image_and_keeps_going(mini_preset, tmp_path, capsys):
    bad, good = tmp_path / "bad.jpg", tmp_path / "good.png"
    bad.write_bytes(b"definitely not a jpeg")
    _write_noise(good, 64, 64, seed=2)
    out = tmp_path / "pred"
    inputs = [str(bad), str(good), str(tmp_path / "missing.png")]
    code = main(["predict", *inputs, "--preset", str(mini_preset), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "missing.png" in err
    results = json.loads((out / "detections.json").read_text())
    assert [Path(entry["file"]).name for entry in results["images"]] == ["good.png"]
    assert sorted(Path(entry["file"]).name for entry in results["errors"]) == ["bad.jpg", "missing.png"]
    assert (out / "good.jpg").is_file() and not (out / "bad.jpg").exists()


@pytest.mark.backend_independent
def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg"):
        read_image(empty)


@pytest.mark.backend_independent
def test_read_image_returns_rgb(tmp_path):
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 255
    cv2.imwrite(str(tmp_path / "blue.png"), bgr)
    rgb = read_image(tmp_path / "blue.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 6, 3)
    assert rgb[0, 0].tolist() == [0, 0, 255]


@pytest.mark.backend_independent
def test_draw_detections_is_deterministic_and_copies():
    image = np.full((64, 80, 3), 128, np.uint8)
    boxes = np.array([[5, 10, 40, 50], [0, 0, 0, 0]], np.float32)
    drawn = draw_detections(image, boxes, [0.9, 0.0], [3, -1], COCO_CLASSES)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert np.all(image == 128) and not np.array_equal(drawn, image)
    assert np.array_equal(drawn, draw_detections(image, boxes, [0.9, 0.0], [3, -1], COCO_CLASSES))
    assert class_color(3) == class_color(3) != class_color(4)


@pytest.mark.backend_independent
def test_match_detections_ignores_order():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]], np.float32)
    scores = np.array([0.9, 0.5, 0.5], np.float32)
    labels = np.array([1, 2, 2])
    order = [2, 0, 1]
    shifted = boxes[order] + 0.01
    assert match_detections((boxes, scores, labels), (shifted, scores[order], labels[order]))["matched"] == 3
    assert match_detections((boxes, scores, labels), (boxes + 0.05, scores, labels))["matched"] == 0
