"""`rtmdet predict` on videos, webcam indices and URLs: the annotated video, a JSON line per frame, labels.

On a 10-frame MJPG video written here and the tiny model saved as a preset.
"""

import json

import numpy as np
import pytest

from keras_rtmdet import DenseDetector
from keras_rtmdet.inference.video import VideoReader
from keras_rtmdet.utils.image_io import write_image
from keras_rtmdet_cli.main import main
from keras_rtmdet_cli.video_files import split_inputs
from tests.test_case import TASK_SETTINGS
from tests.test_case import serving
from tests.test_case import tiny_model
from tests.test_case import write_moving_square_video

FRAMES, HEIGHT, WIDTH = 10, 48, 64


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at 80 columns off a terminal, splitting names


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preset") / "tiny"
    tiny_model(**TASK_SETTINGS).save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder with clip.avi (10 frames) and still.png."""
    folder = tmp_path_factory.mktemp("inputs")
    write_moving_square_video(folder / "clip.avi", FRAMES, HEIGHT, WIDTH)
    write_image(folder / "still.png", np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return folder


def predict(preset, out, *sources, options=()):
    common = ["--preset", str(preset), "--out", str(out), "--score-thr", "0.001", "--batch-size", "4"]
    return main(["predict", *map(str, sources), *common, *options])


def read_json_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_video_and_an_image_give_an_annotated_video_and_a_record_per_frame(preset, inputs, tmp_path):
    out = tmp_path / "pred"
    assert predict(preset, out, inputs / "clip.avi", inputs / "still.png", options=["--save-txt"]) == 0
    results = json.loads((out / "detections.json").read_text())
    assert results["errors"] == [] and [entry["output"] for entry in results["images"]] == ["still.jpg"]
    assert results["videos"] == [
        {
            "file": str(inputs / "clip.avi"),
            "width": WIDTH,
            "height": HEIGHT,
            "fps": 10.0,
            "frames": FRAMES,
            "output": "clip.mp4",
            "records": "clip.jsonl",
        }
    ]
    with VideoReader(out / "clip.mp4") as video:
        annotated = [frame for _, _, frame in video]
    assert len(annotated) == FRAMES and {frame.shape for frame in annotated} == {(HEIGHT, WIDTH, 3)}

    records = read_json_lines(out / "clip.jsonl")
    assert [record["frame"] for record in records] == list(range(FRAMES))
    assert [record["time"] for record in records] == pytest.approx([i / 10 for i in range(FRAMES)])
    with VideoReader(inputs / "clip.avi") as video:
        frames = np.stack([frame for _, _, frame in video])
    model = DenseDetector.from_preset(preset)
    expected = model.predict(frames, batch_size=4, verbose=0, score_threshold=0.001)
    assert expected["num_detections"].min() > 0, "nothing detected: the records would compare nothing"
    for b, record in enumerate(records):
        count = int(expected["num_detections"][b])
        found = record["detections"]
        assert [d["label"] for d in found] == expected["labels"][b, :count].tolist()
        np.testing.assert_allclose([d["score"] for d in found], expected["scores"][b, :count], atol=2e-6)
        np.testing.assert_allclose([d["box"] for d in found], expected["boxes"][b, :count], atol=1e-3)
    labels = sorted(path.name for path in (out / "labels").iterdir())
    assert labels == sorted([f"clip_{i}.txt" for i in range(FRAMES)] + ["still.txt"])
    assert len((out / "labels" / "clip_3.txt").read_text().splitlines()) == len(records[3]["detections"])


@pytest.mark.backend_independent  # the CLI's part: the model's per-frame detections are checked above
def test_max_frames_and_a_missing_webcam_in_one_call(preset, inputs, tmp_path, capsys):
    out = tmp_path / "pred"
    assert predict(preset, out, "99", inputs / "clip.avi", options=["--max-frames", "3"]) == 1
    assert "No camera at webcam index 99" in capsys.readouterr().err
    results = json.loads((out / "detections.json").read_text())
    assert [error["file"] for error in results["errors"]] == ["99"]
    assert results["settings"]["max_frames"] == 3 and results["videos"][0]["frames"] == 3
    assert [record["frame"] for record in read_json_lines(out / "clip.jsonl")] == [0, 1, 2]


@pytest.mark.backend_independent
def test_an_image_url_is_downloaded_and_a_failing_one_named(preset, inputs, tmp_path, capsys):
    out = tmp_path / "pred"
    with serving(inputs) as base:
        assert predict(preset, out, f"{base}/still.png", f"{base}/gone.jpg") == 1
    assert f"{base}/gone.jpg" in capsys.readouterr().err
    results = json.loads((out / "detections.json").read_text())
    (entry,) = results["images"]
    assert (entry["file"], entry["output"]) == (f"{base}/still.png", "still.jpg")
    assert (entry["width"], entry["height"]) == (56, 40)
    (error,) = results["errors"]
    assert error["file"] == f"{base}/gone.jpg" and "HTTP 404" in error["error"]


@pytest.mark.backend_independent
def test_inputs_split_into_images_and_videos(inputs):
    sources = ["0", str(inputs / "*"), "rtsp://cam/live", "http://host/a.jpg?size=2", "https://host/clip", "nothere"]
    images, videos, problems = split_inputs(sources)
    assert images == [str(inputs / "still.png"), "http://host/a.jpg?size=2"]
    assert videos == [0, "rtsp://cam/live", "https://host/clip", str(inputs / "clip.avi")]
    assert problems == [("nothere", "Cannot read image nothere: no such file or directory.")]


@pytest.mark.backend_independent
def test_image_only_options_are_refused_with_videos(preset, inputs, tmp_path, capsys):
    assert predict(preset, tmp_path / "a", inputs / "clip.avi", options=["--channel-order", "bgr"]) == 2
    assert "--channel-order bgr applies to image files" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
