"""`rtmdet predict`: detect (with an RTMDet-Ins model, segment; with an RTMDet-R, rotated boxes) objects in image files.

Writes one annotated image per input and a `detections.json`:

    {"model": str, "settings": {...},
     "images": [{"file": str, "width": int, "height": int, "output": str,
                 "detections": [{"box": [x1, y1, x2, y2], "score": float,
                                 "label": int, "class_name": str | null,
                                 "mask": {"size": [h, w], "counts": str}}]}],
     "errors": [{"file": str, "error": str}]}

Boxes are in the original image's pixels. `mask` (instance-segmentation
models only) is the detection's binary mask over the whole image as COCO
compressed RLE (`pycocotools.mask.decode` reads it back); the annotated
images show masks as a semi-transparent fill of the class colour with its
contour.

A rotated model (RTMDet-R) writes `"rbox": [cx, cy, w, h, angle]` (pixels,
radians, clockwise on screen) and `"polygon": [x1, y1, ..., x4, y4]` (its
corners) instead of `"box"`, and draws the polygons. With `--patch-size P`,
images larger than P on a side are cut into P×P windows overlapping by
`--gap` (the DOTA split), detected window by window and merged with rotated
NMS (`predict_large_image`).

`--classes 0,2` (or class names) keeps only those classes (dropped before
candidate selection, so they take no detection slot); `--agnostic-nms` runs
the NMS across classes (one box per object), where the reference's NMS is
per class. `--save-txt` also writes YOLO-style label files
(`label_files.py`), `--save-conf` with the scores.
"""

import collections
import json
import os

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn
from rich.progress import MofNCompleteColumn
from rich.progress import Progress
from rich.progress import TextColumn
from rich.progress import TimeElapsedColumn
from rich.table import Table

from keras_rtmdet.cli.run_folders import add_output_arguments
from keras_rtmdet.cli.run_folders import output_folder
from keras_rtmdet.cli.arg_types import class_list
from keras_rtmdet.cli.arg_types import image_size
from keras_rtmdet.cli.arg_types import non_negative_int
from keras_rtmdet.cli.arg_types import positive_int
from keras_rtmdet.cli.arg_types import probability
from keras_rtmdet.cli.label_files import write_label_file
from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.utils.drawing import draw_detections
from keras_rtmdet.utils.image_io import expand_image_paths
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.image_io import write_image

RESULTS_FILE = "detections.json"
DEFAULT_OUT = os.path.join("runs", "predict")
HELP = "detect objects in images and write annotated copies plus detections.json"


def add_parser(subparsers):
    parser = subparsers.add_parser("predict", help=HELP, description=HELP)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or directories of images")
    parser.add_argument("--preset", required=True, help="built-in preset name or a preset directory")
    parser.add_argument(
        "--checkpoint", metavar="PTH", help="MMDetection .pth to load into the preset's architecture"
    )
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
        "--save-txt", action="store_true", help="also write YOLO-style label files to OUT/labels/ (normalised, clipped)"
    )
    parser.add_argument("--save-conf", action="store_true", help="with --save-txt: append each detection's score")
    parser.add_argument(
        "--image-size",
        type=image_size,
        metavar="SIZE",
        help="network input size, SIZE or H,W, multiples of 32 (default: the preset's)",
    )
    parser.add_argument(
        "--channel-order",
        choices=("rgb", "bgr"),
        default="rgb",
        help="channel order of the pixel data in the files: rgb for ordinary images; bgr for files "
        "written from BGR arrays by a tool that assumed RGB",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass")
    parser.add_argument(
        "--patch-size",
        type=positive_int,
        help="rotated models: detect images larger than this by sliding windows of this side, merged (DOTA: 1024)",
    )
    parser.add_argument("--gap", type=non_negative_int, default=200, help="overlap of the --patch-size windows in pixels (200)")
    parser.add_argument("--save-format", choices=("jpg", "png"), default="jpg", help="annotated image format")
    parser.set_defaults(run=run)


def load_model(preset, checkpoint=None, image_size=None):
    """The detector of a preset name/directory (any variant), optionally with a checkpoint's weights and
    another network input size."""
    from keras_rtmdet import DenseDetector

    settings = {} if image_size is None else {"image_size": image_size}
    model = DenseDetector.from_preset(preset, load_weights=checkpoint is None, **settings)
    if checkpoint is not None:
        model.load_checkpoint(checkpoint)
    return model


def image_detections(outputs, index):
    """(boxes (K, 4), scores (K,), labels (K,)) of image `index` of `model.predict`'s outputs, unpadded."""
    count = int(outputs["num_detections"][index])
    return (
        outputs["boxes"][index, :count],
        outputs["scores"][index, :count],
        outputs["labels"][index, :count],
    )


def image_masks(outputs, index, height, width):
    """(K, height, width) bool masks of image `index` of `model.predict`'s outputs, or None without masks.

    `predict` pads every image's masks to the batch's largest height and width;
    this cuts them back to the image's own `height` x `width`.
    """
    if "masks" not in outputs:
        return None
    count = int(outputs["num_detections"][index])
    return np.asarray(outputs["masks"][index, :count, :height, :width], bool)


def _box_fields(box):
    """`{"box": xyxy}` for 4 numbers; `{"rbox": (cx, cy, w, h, angle), "polygon": its 4 corners}` for 5."""
    if len(box) == 5:
        polygon = rboxes_to_polygons(np.asarray(box, np.float32)[None])[0]
        return {"rbox": [round(float(v), 6 if i == 4 else 4) for i, v in enumerate(box)],
                "polygon": [round(float(v), 4) for v in polygon]}
    return {"box": [round(float(v), 4) for v in box]}


def detection_records(boxes, scores, labels, class_names=None, masks=None):
    """JSON-ready dicts `{box, score, label, class_name}` (+ `mask`, COCO RLE, with `masks` (K, H, W));
    boxes rounded to 1e-4 px, scores to 1e-6. Rotated boxes (K, 5) give `rbox` (angle to 1e-6 rad) and
    `polygon` instead of `box`."""
    from keras_rtmdet.evaluation.coco_metrics import encode_mask

    records = []
    for k, (box, score, label) in enumerate(zip(boxes, scores, labels)):
        label = int(label)
        name = class_names[label] if class_names is not None and 0 <= label < len(class_names) else None
        records.append(
            {**_box_fields(box), "score": round(float(score), 6), "label": label, "class_name": name}
        )
        if masks is not None:
            records[-1]["mask"] = encode_mask(masks[k])
    return records


def save_image_result(image, detections, class_names, output_path, file, masks=None):
    """Draw and write one annotated image; return its `images` entry of detections.json.

    Args:
        image: (H, W, 3) uint8 RGB.
        detections: (boxes, scores, labels) as from `image_detections`.
        masks: optional (K, H, W) bool, as from `image_masks`.
    """
    boxes, scores, labels = detections
    write_image(output_path, draw_detections(image, boxes, scores, labels, class_names, masks=masks))
    return {
        "file": os.fspath(file),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "output": os.path.basename(output_path),
        "detections": detection_records(boxes, scores, labels, class_names, masks),
    }


def write_results(out_dir, model_name, settings, images, errors):
    """Write detections.json (format in the module docstring); return its path."""
    path = os.path.join(out_dir, RESULTS_FILE)
    payload = {"model": model_name, "settings": settings, "images": images, "errors": errors}
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path


def summary_table(images):
    """A rich table: image, number of detections, the three most frequent classes."""
    table = Table(title="Detections")
    table.add_column("image")
    table.add_column("#detections", justify="right")
    table.add_column("top classes")
    for entry in images:
        counts = collections.Counter(d["class_name"] or f"class {d['label']}" for d in entry["detections"])
        top = ", ".join(f"{name} ×{n}" for name, n in counts.most_common(3))
        name = escape(os.path.basename(entry["file"]))
        table.add_row(name, str(len(entry["detections"])), escape(top) or "—")
    return table


def unique_output_name(file, extension, used):
    """`<stem>.<extension>`, suffixed `_1`, `_2`, ... when two inputs share a stem."""
    stem = os.path.splitext(os.path.basename(file))[0] or "image"
    name, n = f"{stem}.{extension}", 0
    while name in used:
        n += 1
        name = f"{stem}_{n}.{extension}"
    used.add(name)
    return name


def run(args):
    out, err = Console(), Console(stderr=True)
    files, problems = expand_image_paths(args.images)
    errors = []
    for path, message in problems:
        _report(err, errors, path, message)
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
    from keras_rtmdet.models.dense_postprocessing import class_mask

    filters = {"classes": args.classes, "agnostic_nms": args.agnostic_nms}
    try:
        model.set_postprocess(**{k: v for k, v in overrides.items() if v is not None})
        class_mask(args.classes, model.head.num_classes, model.class_names)  # refused here, before any image
        _check_patches(model, args.patch_size, args.gap)
        args.out = output_folder(args.out, DEFAULT_OUT, (RESULTS_FILE,), args.exist_ok, "predict")
    except ValueError as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    os.makedirs(args.out, exist_ok=True)

    results, used = [], set()
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
                    _report(err, errors, file, str(error))
                    progress.advance(task)
            images = [image for _, image in batch]
            found = predict_batch(
                model, images, args.channel_order, args.patch_size, args.gap, args.batch_size, filters
            )
            for (file, image), (detections, masks) in zip(batch, found):
                path = os.path.join(args.out, unique_output_name(file, args.save_format, used))
                try:
                    results.append(save_image_result(image, detections, model.class_names, path, file, masks))
                    if args.save_txt:
                        height, width = image.shape[:2]
                        write_label_file(args.out, os.path.basename(path), detections, width, height, args.save_conf)
                except ValueError as error:
                    _report(err, errors, file, str(error))
                progress.advance(task)

    settings = {key: getattr(model, key) for key in ("score_threshold", "iou_threshold", "max_detections")}
    settings.update(classes=args.classes, agnostic_nms=args.agnostic_nms)
    if args.patch_size is not None:
        settings.update(patch_size=args.patch_size, gap=args.gap)
    json_path = write_results(args.out, os.fspath(args.preset), settings, results, errors)
    if results:
        out.print(summary_table(results))
    out.print(f"Wrote {len(results)} annotated image(s) and {escape(json_path)}", highlight=False)
    if errors:
        failed = ", ".join(e["file"] for e in errors)
        err.print(f"[red]{len(errors)} input(s) failed:[/] {escape(failed)}", highlight=False)
        return 1
    return 0


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


def predict_batch(model, images, channel_order="rgb", patch_size=None, gap=200, batch_size=8, filters=None):
    """Per image `((boxes, scores, labels), masks or None)`, boxes in the image's pixels.

    One `model.predict` call for the images; with `patch_size` (rotated
    models), those larger than it on a side go through `predict_large_image`
    instead (windows of `patch_size` overlapping by `gap`, merged by rotated NMS).

    Args:
        images: list of (H, W, 3) uint8 arrays, channels in `channel_order`.
        filters: `predict`'s `classes` / `agnostic_nms`, if any.
    """
    from keras_rtmdet.inference.large_image import predict_large_image

    filters = {key: value for key, value in (filters or {}).items() if value is not None}

    large = [patch_size is not None and max(image.shape[:2]) > patch_size for image in images]
    found = [None] * len(images)
    small = [i for i, is_large in enumerate(large) if not is_large]
    if small:
        outputs = model.predict([images[i] for i in small], channel_order=channel_order, verbose=0, **filters)
        for n, i in enumerate(small):
            found[i] = (image_detections(outputs, n), image_masks(outputs, n, *images[i].shape[:2]))
    for i in (i for i, is_large in enumerate(large) if is_large):
        rgb = images[i][..., ::-1] if channel_order == "bgr" else images[i]
        merged = predict_large_image(model, rgb, patch_size, gap, batch_size=batch_size, **filters)
        found[i] = ((merged["boxes"], merged["scores"], merged["labels"]), None)
    return found


def _report(console, errors, file, message):
    """Record a failed input for detections.json and say so on stderr."""
    errors.append({"file": os.fspath(file), "error": message})
    console.print(f"[red]skipped:[/] {escape(message)}", highlight=False)
