"""The videos of `rtmdet predict`: which inputs are videos, and the files written of each.

A video is a file with a video extension (`.mp4 .avi .mov .mkv .webm .m4v
...`, `keras_rtmdet.inference.video.VIDEO_EXTENSIONS`), a URL that is not an
image's (http(s) not ending in an image extension, rtsp, rtmp) or a webcam
index (a bare integer: `0`; a file named `0` is `./0`). Each one writes,
named after its file (`webcam0` for a webcam):

- `<stem>.mp4`: the annotated frames at the source's size and frame rate
  (30 frames/s when it gives none), codec mp4v, whatever the input's format;
- `<stem>.jsonl`: one JSON line per frame, `{"frame": i, "time": seconds,
  "detections": [...]}`, the detections in detections.json's record format,
  frames counted from 0. Lines, not one JSON document, so that a stream
  stopped with Ctrl-C leaves a whole file;
- with `--save-txt`, `labels/<stem>_<frame>.txt` per frame (YOLO's naming);

and an entry of detections.json's `videos`: `{"file", "width", "height",
"fps", "frames", "output", "records"}`, plus `"interrupted": true` when
Ctrl-C ended it. A webcam runs until Ctrl-C or `--max-frames`.

Imported by the command when it runs, so it imports the library freely.
"""

import json
import os

from rich.markup import escape
from rich.progress import BarColumn
from rich.progress import MofNCompleteColumn
from rich.progress import Progress
from rich.progress import ProgressColumn
from rich.progress import TextColumn
from rich.progress import TimeElapsedColumn
from rich.text import Text

from keras_rtmdet.inference.video import DEFAULT_FPS
from keras_rtmdet.inference.video import VideoFileWriter
from keras_rtmdet.inference.video import VideoReader
from keras_rtmdet.inference.video import detect_video
from keras_rtmdet.inference.video import is_stream_url
from keras_rtmdet.inference.video import is_video_file
from keras_rtmdet.inference.video import video_source
from keras_rtmdet.utils.image_io import expand_image_paths
from keras_rtmdet.utils.image_io import is_image_url
from keras_rtmdet_cli.detection_files import unique_output_name
from keras_rtmdet_cli.label_files import write_label_file


class FramesPerSecondColumn(ProgressColumn):
    """The recent speed in frames/s (rich's own speed columns count bytes)."""

    def render(self, task):
        return Text("" if task.speed is None else f"{task.speed:.1f} frames/s")


def split_inputs(inputs):
    """(images, videos, problems) of `rtmdet predict`'s inputs.

    Images: files and image URLs, directories and globs expanded (`expand_image_paths`); videos: webcam
    indices (int), video and stream URLs, and the files with a video extension among the expanded paths;
    problems: `(input, message)` of the paths that yield nothing.
    """
    paths, videos = [], []
    for text in inputs:
        source = video_source(text)
        if isinstance(source, int) or (is_stream_url(source) and not is_image_url(source)):
            videos.append(source)
        else:
            paths.append(source)
    files, problems = expand_image_paths(paths)
    videos += [file for file in files if is_video_file(file)]
    return [file for file in files if not is_video_file(file)], videos, problems


def check_video_options(args, videos):
    """Refuse the image-only options of a call with videos: `--patch-size`, `--channel-order bgr`."""
    if videos and args.patch_size is not None:
        raise ValueError("--patch-size (sliding windows over large images) applies to images, not to videos.")
    if videos and args.channel_order != "rgb":
        raise ValueError("--channel-order bgr applies to image files; OpenCV decodes a video's frames itself.")


def predict_video(model, source, args, filters, used, console):
    """Detect objects in every frame of one video source and write its files (module docstring).

    Args:
        source: a file path, a URL or a webcam index.
        args: the command's arguments (`out`, `batch_size`, `max_frames`, `save_txt`, `save_conf`).
        filters: `predict`'s `classes` / `agnostic_nms`.
        used: the output names taken so far (`unique_output_name`).

    Returns: the video's entry of detections.json's `videos`.

    Raises: ValueError naming the source when it cannot be opened or decoded.
    """
    name = f"webcam{source}" if isinstance(source, int) else source
    stem = os.path.splitext(unique_output_name(name, "mp4", used, fallback="stream"))[0]
    output, records_file = f"{stem}.mp4", f"{stem}.jsonl"
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        FramesPerSecondColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    interrupted = False
    with VideoReader(source) as reader:
        fps = reader.fps or DEFAULT_FPS
        known = [count for count in (reader.frame_count, args.max_frames) if count is not None]
        writer = VideoFileWriter(os.path.join(args.out, output), fps)
        with progress, writer, open(os.path.join(args.out, records_file), "w") as records:
            task = progress.add_task(escape(stem), total=min(known, default=None))
            try:
                for frame in detect_video(model, reader, args.batch_size, args.max_frames, **filters):
                    found = frame.detections
                    writer.write(found.plot())
                    record = {"frame": frame.index, "time": round(frame.time, 6), "detections": found.to_records()}
                    records.write(json.dumps(record) + "\n")
                    if args.save_txt:
                        write_label_file(args.out, f"{stem}_{frame.index}", found, args.save_conf)
                    progress.advance(task)
            except KeyboardInterrupt:
                interrupted = True  # Ctrl-C ends a stream: what was written stays whole
    width, height = writer.size or (None, None)
    entry = {"file": str(source), "width": width, "height": height, "fps": fps, "frames": writer.frames}
    entry.update(output=output, records=records_file)
    if interrupted:
        entry["interrupted"] = True
    return entry
