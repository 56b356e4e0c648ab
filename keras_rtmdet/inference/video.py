"""Detection in videos: the frames of a video file, a webcam or a stream URL, through `predict` batch by batch.

>>> for frame in detect_video(model, "clip.mp4", score_threshold=0.3):
...     print(frame.index, frame.time, len(frame.detections))

`cv2.VideoCapture` reads the frames (BGR, turned into RGB here). The frames of
a video share one size, so each batch goes to the compiled step with the
letterbox on the device, and a short batch (the video's end) repeats its last
frame: one compiled step for the whole video, never one per frame.
`VideoFileWriter` writes annotated frames back (`Detections.plot`).
"""

import contextlib
import itertools
import math
import os
import time
import urllib.parse
from typing import NamedTuple

import cv2
import numpy as np

from keras_rtmdet.models.detections import Detections
from keras_rtmdet.models.detections import detections_from_predictions
from keras_rtmdet.utils.input_checks import check_positive_int
from keras_rtmdet.utils.input_checks import is_integer

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".asf")
STREAM_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp")
# FFmpeg waits for an unreachable stream for 30 s by default; a URL that does not answer fails sooner.
STREAM_TIMEOUT_MS = 10_000
# MPEG-4 Part 2: every OpenCV wheel's FFmpeg writes it; H.264 ("avc1") needs an encoder the pip wheels lack.
DEFAULT_CODEC = "mp4v"
# Frames per second written when a source does not give a plausible rate (webcams and streams may say 0,
# or FFmpeg's 90 kHz time base).
DEFAULT_FPS = 30.0
MAX_PLAUSIBLE_FPS = 1000.0


class FrameDetections(NamedTuple):
    """One frame's detections: `index` from 0, `time` in seconds from the start, `detections` (with the frame)."""

    index: int
    time: float
    detections: Detections


def video_source(source):
    """A webcam index (an int ≥ 0, or a string of digits such as "0") as an int; a path or URL as a str."""
    if is_integer(source):
        if source < 0:
            raise ValueError(f"A webcam index must be ≥ 0, got {source}.")
        return int(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"A video source is a file path, a URL or a webcam index, got {type(source).__name__}.")
    source = os.fspath(source)
    return int(source) if source.isascii() and source.isdigit() else source


def is_stream_url(text):
    """Whether `text` is a URL that `cv2.VideoCapture` opens (http(s), rtsp(s), rtmp)."""
    return isinstance(text, str) and urllib.parse.urlsplit(text).scheme.lower() in STREAM_SCHEMES


def is_video_file(path):
    """Whether `path` names a video by its extension (`VIDEO_EXTENSIONS`)."""
    return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


class VideoReader:
    """The frames of a video file, a webcam or a stream URL as (H, W, 3) uint8 RGB arrays.

    >>> with VideoReader("clip.mp4") as video:
    ...     for index, seconds, frame in video: ...

    Args:
        source: a video file, a stream URL (http(s), rtsp, rtmp) or a webcam
            index (an int, or a string of digits: "0"; a file named "0" is
            "./0").

    Attributes:
        source: the int or str opened.
        live: True for a webcam.
        fps: the source's frames per second, or None when it gives no
            plausible rate.
        frame_count: the number of frames the source says it holds (a
            file's), or None (webcams, live streams).
        frames_read: the frames read so far.

    Raises:
        ValueError naming the source when OpenCV cannot open it: a missing
        file, a file that is not a video (or has a codec this OpenCV lacks),
        a webcam index with no camera, a URL that does not answer.
    """

    def __init__(self, source):
        self.source = video_source(source)
        self.live = isinstance(self.source, int)
        self._capture = _open_capture(self.source)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if math.isfinite(fps) and 0 < fps < MAX_PLAUSIBLE_FPS else None
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if math.isfinite(count) and count > 0 and not self.live else None
        self.frames_read, self._started = 0, None

    def __iter__(self):
        """(index, time in seconds, frame) per frame, until the source ends; indices count the frames read
        from the source, across iterations (a second loop goes on where the first stopped).

        The time is the file's or stream's own timestamp of the frame (OpenCV's `CAP_PROP_POS_MSEC`,
        right for variable frame rates); a webcam's is the wall clock since its first frame.
        """
        while True:
            ok, frame = self._capture.read()
            if not ok:
                if self.frames_read == 0:
                    name = f"Webcam {self.source}" if self.live else f"Video {self.source}"
                    raise ValueError(f"{name} gave no frame that OpenCV can decode.")
                return
            index, self.frames_read = self.frames_read, self.frames_read + 1
            yield index, self._frame_time(index), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _frame_time(self, index):
        if self._started is None:
            self._started = time.monotonic()
        if not self.live:
            msec = self._capture.get(cv2.CAP_PROP_POS_MSEC)
            # A source without timestamps keeps saying 0: then the frame's place at the nominal rate.
            if math.isfinite(msec) and (msec > 0 or index == 0):
                return msec / 1000.0
            if self.fps:
                return index / self.fps
        return time.monotonic() - self._started

    def close(self):
        self._capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _open_capture(source):
    if isinstance(source, int):
        capture = cv2.VideoCapture(source)
        problem = f"No camera at webcam index {source}: OpenCV cannot open it (none connected, or in use)."
    elif is_stream_url(source):
        timeouts = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, cv2.CAP_PROP_READ_TIMEOUT_MSEC)
        capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [v for key in timeouts for v in (key, STREAM_TIMEOUT_MS)])
        problem = f"Cannot open the stream {source}: it did not answer, or holds no video OpenCV can decode."
    elif not os.path.exists(source):
        raise ValueError(f"Cannot read video {source}: no such file.")
    elif not os.path.isfile(source):
        raise ValueError(f"Cannot read video {source}: not a file.")
    else:
        capture = cv2.VideoCapture(source)
        problem = f"Cannot read video {source}: OpenCV cannot open it (not a video, or a codec it lacks)."
    if not capture.isOpened():
        capture.release()
        raise ValueError(problem)
    return capture


def detect_video(model, source, batch_size=8, max_frames=None, **predict_kwargs):
    """Detect objects in the frames of a video; a `FrameDetections` per frame, in order, as they are detected.

    Args:
        model: a detector (`DenseDetector`).
        source: a `VideoReader` (left open), or what it opens: a video file,
            a stream URL or a webcam index (closed at the end).
        batch_size: frames per forward pass. A live source's frames wait
            until a batch is full: 1 for the least delay.
        max_frames: stop after this many frames (a webcam runs until the
            caller stops iterating otherwise).
        **predict_kwargs: `predict`'s thresholds, `classes`, `agnostic_nms`,
            `clip_boxes`, `letterbox`. The frames are uint8 RGB: no
            `channel_order` or `pixel_range`.

    Returns: an iterator; each `detections` holds its frame as `image` (for
    `plot`) and no `path`.
    """
    check_positive_int(batch_size, "batch_size")
    if max_frames is not None:
        check_positive_int(max_frames, "max_frames")
    for fixed in ("channel_order", "pixel_range", "verbose"):
        if fixed in predict_kwargs:
            raise ValueError(f"detect_video sets predict's {fixed} itself (uint8 RGB frames, silent calls): drop it.")
    reader = source if isinstance(source, VideoReader) else VideoReader(source)
    return _frames_detected(model, reader, batch_size, max_frames, predict_kwargs, close=reader is not source)


def _frames_detected(model, reader, batch_size, max_frames, predict_kwargs, close):
    with reader if close else contextlib.nullcontext():
        batch = []
        for frame in itertools.islice(reader, max_frames):
            if batch and frame[2].shape != batch[0][2].shape:
                yield from _detect_batch(model, batch, batch_size, predict_kwargs)  # a stream changed its size
                batch = []
            batch.append(frame)
            if len(batch) == batch_size:
                yield from _detect_batch(model, batch, batch_size, predict_kwargs)
                batch = []
        if batch:
            yield from _detect_batch(model, batch, batch_size, predict_kwargs)


def _detect_batch(model, batch, batch_size, predict_kwargs):
    frames = [frame for _, _, frame in batch]
    # A short batch repeats its last frame up to `batch_size`: the compiled step keeps its one shape.
    padded = np.stack(frames + frames[-1:] * (batch_size - len(frames)))
    outputs = model.predict(padded, batch_size=batch_size, verbose=0, channel_order="rgb", **predict_kwargs)
    outputs = {key: value[: len(frames)] for key, value in outputs.items()}
    found = detections_from_predictions(outputs, frames, class_names=model.class_names)
    return [FrameDetections(index, seconds, detections) for (index, seconds, _), detections in zip(batch, found)]


class VideoFileWriter:
    """Writes (H, W, 3) uint8 RGB frames to a video file with `cv2.VideoWriter`, opened at the first frame.

    >>> with VideoFileWriter("annotated.mp4", fps=30) as writer:
    ...     for frame in detect_video(model, "clip.mp4"):
    ...         writer.write(frame.detections.plot())

    Args:
        path: the file; its container follows the extension (.mp4 for the
            default codec).
        fps: frames per second written.
        codec: the FourCC, default `DEFAULT_CODEC` (mp4v).

    Attributes:
        frames: the number of frames written.
        size: (width, height) of the frames, None before the first.
    """

    def __init__(self, path, fps=DEFAULT_FPS, codec=DEFAULT_CODEC):
        self.path, self.fps, self.codec = os.fspath(path), float(fps), codec
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}.")
        self.frames, self.size, self._writer = 0, None, None

    def write(self, frame):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"Video frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}.")
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self.codec), self.fps, size)
            if not self._writer.isOpened():
                raise ValueError(f"Cannot write video {self.path} with codec {self.codec}: OpenCV cannot open it.")
            self.size = size
        elif size != self.size:
            # cv2.VideoWriter drops a frame of another size without a word.
            (width, height), video = size, "x".join(map(str, self.size))
            raise ValueError(f"Frame {self.frames} of {self.path} is {width}x{height}; the video is {video}.")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self):
        if self._writer is not None:
            self._writer.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
