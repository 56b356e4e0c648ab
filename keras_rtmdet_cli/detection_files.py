"""The files `rtmdet predict` (and `rtmdet parity`) write of detections: annotated images and `detections.json`.

    {"model": str, "settings": {...},
     "images": [{"file": str, "width": int, "height": int, "output": str,
                 "detections": [{"box": [x1, y1, x2, y2], "score": float,
                                 "label": int, "class_name": str | null,
                                 "mask": {"size": [h, w], "counts": str}}]}],
     "videos": [{"file": str, "width": int, "height": int, "fps": float,
                 "frames": int, "output": str, "records": str}],
     "errors": [{"file": str, "error": str}]}

The records of each detection come from `Detections.to_records`. A video's
detections are in its own JSON-lines file, `records` (`video_files.py`).

Boxes are in the original image's pixels. `mask` (instance-segmentation
models only) is the detection's binary mask over the whole image as COCO
compressed RLE (`pycocotools.mask.decode` reads it back); the annotated
images show masks as a semi-transparent fill of the class colour with its
contour. A rotated model (RTMDet-R) writes `"rbox": [cx, cy, w, h, angle]`
(pixels, radians, clockwise on screen) and `"polygon": [x1, y1, ..., x4, y4]`
(its corners) instead of `"box"`, and draws the polygons.

Imported by the commands when they run, so it imports the library freely.
"""

import collections
import json
import os
import urllib.parse

from rich.markup import escape
from rich.table import Table

RESULTS_FILE = "detections.json"


def save_image_result(found, output_path):
    """Write the annotated image of `found` (a `Detections` with its image and file) to `output_path`;
    return its `images` entry of detections.json."""
    found.save(output_path)
    entry = found.to_dict()
    entry["output"] = os.path.basename(output_path)
    entry["detections"] = entry.pop("detections")  # the long list last, after the image's own fields
    return entry


def write_results(out_dir, model_name, settings, images, errors, videos=()):
    """Write detections.json (format in the module docstring); return its path."""
    path = os.path.join(out_dir, RESULTS_FILE)
    payload = {"model": model_name, "settings": settings, "images": images, "videos": list(videos), "errors": errors}
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


def unique_output_name(file, extension, used, fallback="image"):
    """`<stem>.<extension>`, suffixed `_1`, `_2`, ... when two inputs share a stem.

    The stem is the file's, or the last part of a URL's path (its query dropped), or `fallback` when that
    is empty (`http://host/`).
    """
    path = urllib.parse.urlsplit(file).path if "://" in file else file
    stem = os.path.splitext(os.path.basename(path))[0] or fallback
    name, n = f"{stem}.{extension}", 0
    while name in used:
        n += 1
        name = f"{stem}_{n}.{extension}"
    used.add(name)
    return name
