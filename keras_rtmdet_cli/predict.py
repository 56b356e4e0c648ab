"""`rtmdet predict`: detect (with an RTMDet-Ins model, segment; with an RTMDet-R, rotated boxes) objects in images
and videos.

Writes one annotated image per input image and a `detections.json` (format
in `detection_files.py`): boxes in the original image's pixels, COCO RLE
masks of an RTMDet-Ins, rotated boxes and their polygons of an RTMDet-R.
Inputs are image files, directories and globs of them, image URLs, video
files and URLs, and webcam indices (`0`): a video writes an annotated video
and a JSON line per frame (`video_files.py`). With
`--patch-size P`, images larger than P on a side are cut into P×P windows
overlapping by `--gap` (the DOTA split), detected window by window and
merged with rotated NMS (`predict_large_image`).

`--classes 0,2` (or class names) keeps only those classes (dropped before
candidate selection, so they take no detection slot); `--agnostic-nms` runs
the NMS across classes (one box per object), where the reference's NMS is
per class. `--save-txt` also writes YOLO-style label files
(`label_files.py`), `--save-conf` with the scores.
"""

import functools
import os

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn
from rich.progress import MofNCompleteColumn
from rich.progress import Progress
from rich.progress import TextColumn
from rich.progress import TimeElapsedColumn

from keras_rtmdet_cli.arg_types import class_list
from keras_rtmdet_cli.arg_types import image_size
from keras_rtmdet_cli.arg_types import non_negative_int
from keras_rtmdet_cli.arg_types import positive_int
from keras_rtmdet_cli.arg_types import probability
from keras_rtmdet_cli.run_folders import add_output_arguments
from keras_rtmdet_cli.run_folders import output_folder

DEFAULT_OUT = os.path.join("runs", "predict")
HELP = "detect objects in images and videos; write annotated copies plus detections.json"


def add_parser(subparsers):
    parser = subparsers.add_parser("predict", help=HELP, description=HELP)
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="image files, directories or globs of images, video files (.mp4 .avi .mov .mkv ...), image or video "
        "URLs (http(s), rtsp), or a webcam index (0)",
    )
    add_model_arguments(parser)
    add_output_arguments(parser, DEFAULT_OUT, "earlier detections")
    parser.add_argument("--score-thr", type=probability, default=0.3, help="minimum score in [0, 1] (default 0.3)")
    parser.add_argument("--iou-thr", type=probability, help="NMS IoU threshold in [0, 1] (default: the model's)")
    parser.add_argument("--max-det", type=positive_int, help="detections per image (default: the model's)")
    parser.add_argument(
        "--classes",
        type=class_list,
        metavar="C[,C...]",
        help="keep only these classes: indices and/or names, comma-separated (e.g. 0,2 or person,car)",
    )
    parser.add_argument(
        "--agnostic-nms", action="store_true", help="NMS across classes: one box per object whatever its class"
    )
    parser.add_argument(
        "--save-txt",
        action="store_true",
        help="also write YOLO-style label files to OUT/labels/ (normalised, clipped; a video's: <name>_<frame>.txt)",
    )
    parser.add_argument("--save-conf", action="store_true", help="with --save-txt: append each detection's score")
    parser.add_argument(
        "--channel-order",
        choices=("rgb", "bgr"),
        default="rgb",
        help="channel order of the pixel data in the image files: rgb for ordinary images; bgr for files "
        "written from BGR arrays by a tool that assumed RGB",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images or video frames per forward pass")
    parser.add_argument(
        "--max-frames", type=positive_int, help="stop each video after this many frames (a webcam runs until Ctrl-C)"
    )
    parser.add_argument(
        "--patch-size",
        type=positive_int,
        help="rotated models: detect images larger than this by sliding windows of this side, merged (DOTA: 1024)",
    )
    parser.add_argument("--gap", type=non_negative_int, default=200, help="overlap of the --patch-size windows in pixels (200)")
    parser.add_argument("--save-format", choices=("jpg", "png"), default="jpg", help="annotated image format")
    parser.set_defaults(run=run)


def add_model_arguments(parser):
    """--preset, --checkpoint and --image-size: the model `load_model` builds."""
    parser.add_argument("--preset", required=True, help="built-in preset name or a preset directory")
    parser.add_argument("--checkpoint", metavar="PTH", help="MMDetection .pth to load into the preset's architecture")
    parser.add_argument(
        "--image-size",
        type=image_size,
        metavar="SIZE",
        help="network input size, SIZE or H,W, multiples of 32 (default: the preset's)",
    )


def load_model(preset, checkpoint=None, image_size=None):
    """The detector of a preset name/directory (any variant), optionally with a checkpoint's weights and
    another network input size."""
    from keras_rtmdet import DenseDetector

    settings = {} if image_size is None else {"image_size": image_size}
    model = DenseDetector.from_preset(preset, load_weights=checkpoint is None, **settings)
    if checkpoint is not None:
        model.load_checkpoint(checkpoint)
    return model


def run(args):
    from keras_rtmdet.models.dense_postprocessing import class_mask
    from keras_rtmdet_cli.detection_files import RESULTS_FILE
    from keras_rtmdet_cli.detection_files import summary_table
    from keras_rtmdet_cli.detection_files import write_results
    from keras_rtmdet_cli.video_files import check_video_options
    from keras_rtmdet_cli.video_files import predict_video
    from keras_rtmdet_cli.video_files import split_inputs

    out, err = Console(), Console(stderr=True)
    files, videos, problems = split_inputs(args.sources)
    errors = []
    report = functools.partial(_report, err, errors)
    for path, message in problems:
        report(path, message)
    try:
        model = load_model(args.preset, args.checkpoint, args.image_size)
    except (ValueError, OSError, ImportError) as error:
        err.print(f"[red]error:[/] cannot load the model: {escape(str(error))}", highlight=False)
        return 2
    overrides = {
        "score_threshold": args.score_thr,
        "iou_threshold": args.iou_thr,
        "max_detections": args.max_det,
    }
    filters = {"classes": args.classes, "agnostic_nms": args.agnostic_nms}
    try:
        model.set_postprocess(**{k: v for k, v in overrides.items() if v is not None})
        class_mask(args.classes, model.head.num_classes, model.class_names)  # refused here, before any image
        _check_patches(model, args.patch_size, args.gap)
        check_video_options(args, videos)
        args.out = output_folder(args.out, DEFAULT_OUT, (RESULTS_FILE,), args.exist_ok, "predict")
    except ValueError as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    os.makedirs(args.out, exist_ok=True)

    used = set()
    results = _predict_images(model, files, args, filters, used, out, report)
    written = []
    for source in videos:
        try:
            written.append(predict_video(model, source, args, filters, used, out))
        except ValueError as error:
            report(source, str(error))

    settings = {key: getattr(model, key) for key in ("score_threshold", "iou_threshold", "max_detections")}
    settings.update(classes=args.classes, agnostic_nms=args.agnostic_nms)
    if args.patch_size is not None:
        settings.update(patch_size=args.patch_size, gap=args.gap)
    if args.max_frames is not None:
        settings.update(max_frames=args.max_frames)
    json_path = write_results(args.out, os.fspath(args.preset), settings, results, errors, written)
    if results:
        out.print(summary_table(results))
    for entry in written:
        files_written = escape(f"{entry['output']}, {entry['records']}")
        out.print(f"{escape(entry['file'])}: {entry['frames']} frames → {files_written}", highlight=False)
    videos_note = f", {len(written)} annotated video(s)" if videos else ""
    out.print(f"Wrote {len(results)} annotated image(s){videos_note} and {escape(json_path)}", highlight=False)
    if errors:
        failed = ", ".join(e["file"] for e in errors)
        err.print(f"[red]{len(errors)} input(s) failed:[/] {escape(failed)}", highlight=False)
        return 1
    return 0


def _predict_images(model, files, args, filters, used, out, report):
    """Detect in the image files batch by batch, writing each one's annotated copy (and label file); return
    their detections.json entries. A file that cannot be read or written is `report(file, message)`ed."""
    from keras_rtmdet.utils.image_io import read_image
    from keras_rtmdet_cli.detection_files import save_image_result
    from keras_rtmdet_cli.detection_files import unique_output_name
    from keras_rtmdet_cli.label_files import write_label_file

    results = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
        disable=len(files) < 2,
    )
    with progress:
        task = progress.add_task("detecting", total=len(files))
        for start in range(0, len(files), args.batch_size):
            batch = []
            for file in files[start : start + args.batch_size]:
                try:
                    batch.append((file, read_image(file)))
                except ValueError as error:
                    report(file, str(error))
                    progress.advance(task)
            files_read, images = [file for file, _ in batch], [image for _, image in batch]
            found = predict_batch(
                model, images, files_read, args.channel_order, args.patch_size, args.gap, args.batch_size, filters
            )
            for file, detections in zip(files_read, found):
                name = unique_output_name(file, args.save_format, used)
                try:
                    results.append(save_image_result(detections, os.path.join(args.out, name)))
                    if args.save_txt:
                        write_label_file(args.out, os.path.splitext(name)[0], detections, args.save_conf)
                except ValueError as error:
                    report(file, str(error))
                progress.advance(task)
    return results


def _check_patches(model, patch_size, gap):
    if patch_size is None:
        return
    if not model.variant.sliding_windows:
        raise ValueError(
            f"--patch-size (sliding-window detection of large images) needs a rotated (RTMDet-R) model; "
            f"this one is an {model.variant.display_name}."
        )
    if patch_size < 1 or not 0 <= gap < patch_size:
        raise ValueError(f"need --patch-size ≥ 1 and 0 ≤ --gap < --patch-size, got {patch_size} and {gap}.")


def predict_batch(model, images, files, channel_order="rgb", patch_size=None, gap=200, batch_size=8, filters=None):
    """One `Detections` per image, with its image (as read) and file attached; boxes in the image's pixels.

    One `model.predict` call for the images; with `patch_size` (rotated
    models), those larger than it on a side go through `predict_large_image`
    instead (windows of `patch_size` overlapping by `gap`, merged by rotated NMS).

    Args:
        images: list of (H, W, 3) uint8 arrays, channels in `channel_order`.
        files: the file of each image.
        filters: `predict`'s `classes` / `agnostic_nms`, if any.
    """
    from keras_rtmdet.inference.large_image import predict_large_image
    from keras_rtmdet.models.detections import Detections
    from keras_rtmdet.models.detections import detections_from_predictions

    filters = {key: value for key, value in (filters or {}).items() if value is not None}
    large = [patch_size is not None and max(image.shape[:2]) > patch_size for image in images]
    found = [None] * len(images)
    small = [i for i, is_large in enumerate(large) if not is_large]
    if small:
        outputs = model.predict([images[i] for i in small], channel_order=channel_order, verbose=0, **filters)
        cut = detections_from_predictions(
            outputs, [images[i] for i in small], [files[i] for i in small], model.class_names
        )
        for i, detections in zip(small, cut):
            found[i] = detections
    for i in (i for i, is_large in enumerate(large) if is_large):
        rgb = images[i][..., ::-1] if channel_order == "bgr" else images[i]
        merged = predict_large_image(model, rgb, patch_size, gap, batch_size=batch_size, **filters)
        fields = (merged[key] for key in ("boxes", "scores", "labels"))
        found[i] = Detections(*fields, image=images[i], path=files[i], class_names=model.class_names)
    return found


def _report(console, errors, file, message):
    """Record a failed input for detections.json and say so on stderr."""
    errors.append({"file": str(file), "error": message})
    console.print(f"[red]skipped:[/] {escape(message)}", highlight=False)
