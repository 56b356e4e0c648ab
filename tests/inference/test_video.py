"""Videos: `VideoReader` (files, URLs, webcam indices and their errors), `VideoFileWriter`, and `detect_video`
(`predict` batch by batch, one compiled step for the whole video).

On a 10-frame MJPG video written here; the model test on the tiny model.
"""

import itertools
import socket
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_rtmdet.inference.video import VideoFileWriter
from keras_rtmdet.inference.video import VideoReader
from keras_rtmdet.inference.video import detect_video
from keras_rtmdet.inference.video import video_source
from keras_rtmdet.models.compiled_step import COMPILING_BACKENDS
from tests.test_case import TASK_SETTINGS
from tests.test_case import CountedPostprocess
from tests.test_case import serving
from tests.test_case import tiny_model
from tests.test_case import write_moving_square_video

FRAMES, HEIGHT, WIDTH, FPS = 10, 48, 64, 10.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    return path, write_moving_square_video(path, FRAMES, HEIGHT, WIDTH, FPS)


def read_all(source):
    with VideoReader(source) as video:
        return list(video)


@pytest.mark.backend_independent
def test_reader_gives_every_frame_in_rgb_with_its_time(clip):
    path, written = clip
    with VideoReader(path) as video:
        assert (video.fps, video.frame_count, video.live) == (FPS, FRAMES, False)
        frames = list(itertools.islice(video, 4))
        frames += list(video)  # a second loop goes on where the first stopped
        assert list(video) == [] and video.frames_read == FRAMES
    assert [index for index, _, _ in frames] == list(range(FRAMES))
    assert [seconds for _, seconds, _ in frames] == pytest.approx([i / FPS for i in range(FRAMES)])
    for (_, _, frame), expected in zip(frames, written):
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        assert np.abs(frame.astype(int) - expected).mean() < 3  # MJPG is lossy, but close
    red, green, blue = frames[0][2][18, 12]  # the square's centre: RGB order, not cv2's BGR
    assert red > 180 and green < 80 and blue < 80


@pytest.mark.backend_independent
def test_a_video_url_reads_as_its_file(clip):
    path, _ = clip
    with serving(path.parent) as base:
        frames = read_all(f"{base}/{path.name}")
    assert len(frames) == FRAMES
    np.testing.assert_array_equal(frames[-1][2], read_all(path)[-1][2])


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.backend_independent
def test_sources_are_parsed_and_bad_ones_named(tmp_path):
    assert video_source("0") == 0 and video_source(3) == 3 and video_source(np.int64(2)) == 2
    assert video_source(Path("clips/0")) == "clips/0" and video_source("rtsp://cam/1") == "rtsp://cam/1"
    with pytest.raises(ValueError, match="webcam index must be ≥ 0, got -1"):
        video_source(-1)
    with pytest.raises(TypeError, match="got bool"):
        video_source(True)
    with pytest.raises(ValueError, match=r"Cannot read video .*missing\.mp4: no such file"):
        VideoReader(tmp_path / "missing.mp4")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match=r"Cannot read video .*notes\.mp4: OpenCV cannot open it"):
        VideoReader(tmp_path / "notes.mp4")
    with pytest.raises(ValueError, match="No camera at webcam index 99"):  # no machine here has 100 cameras
        VideoReader("99")
    url = f"http://127.0.0.1:{closed_port()}/clip.mp4"
    with pytest.raises(ValueError, match=f"Cannot open the stream {url}"):
        VideoReader(url)


@pytest.mark.backend_independent
def test_writer_writes_every_frame_at_its_size_and_rate(tmp_path, clip):
    _, written = clip
    with VideoFileWriter(tmp_path / "out.mp4", fps=5) as writer:
        for frame in written[:3]:
            writer.write(frame)
        with pytest.raises(ValueError, match="is 32x16; the video is 64x48"):
            writer.write(np.zeros((16, 32, 3), np.uint8))
    assert (writer.frames, writer.size) == (3, (WIDTH, HEIGHT))
    with VideoReader(tmp_path / "out.mp4") as video:
        assert video.fps == 5 and len(list(video)) == 3
    with pytest.raises(ValueError, match="fps must be positive"):
        VideoFileWriter(tmp_path / "bad.mp4", fps=0)


@pytest.mark.backend_independent
def test_detect_video_refuses_what_it_sets_itself(clip):
    path, _ = clip
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        detect_video(None, path, batch_size=0)
    with pytest.raises(ValueError, match="sets predict's channel_order itself"):
        detect_video(None, path, channel_order="bgr")


def test_detect_video_equals_predict_in_one_compiled_step(clip):
    path, _ = clip
    model = tiny_model(**TASK_SETTINGS)
    # 10 frames in batches of 4: the last one, 2 frames, is padded to 4 (no second compiled shape).
    with CountedPostprocess(model) as counter:
        found = list(detect_video(model, path, batch_size=4))
    compiling = keras.config.backend() in COMPILING_BACKENDS
    assert counter.runs == 1 if compiling else counter.runs == 3
    assert [frame.index for frame in found] == list(range(FRAMES))
    frames = np.stack([frame for _, _, frame in read_all(path)])
    expected = model.predict(frames, batch_size=4, verbose=0)
    assert expected["num_detections"].min() > 0, "nothing detected: the comparison would compare nothing"
    for b, frame in enumerate(found):
        count = int(expected["num_detections"][b])
        np.testing.assert_array_equal(frame.detections.image, frames[b])
        np.testing.assert_allclose(frame.detections.boxes, expected["boxes"][b, :count], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(frame.detections.scores, expected["scores"][b, :count], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(frame.detections.labels, expected["labels"][b, :count])
