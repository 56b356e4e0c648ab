"""DOTA: an image folder plus one annotation txt per image, and polygon ↔ rotated-box conversion.

An annotation file holds optional header lines (`imagesource:GoogleEarth`,
`gsd:0.146`) and one object per line: `x1 y1 x2 y2 x3 y3 x4 y4 class
difficulty` (the polygon in pixels, the class name, an integer difficulty;
the split tool writes 2 for objects cut by a patch border). Rotated boxes
("rboxes") are `(cx, cy, w, h, angle)` float32 in pixels and radians, le90
(angle in [−π/2, π/2), w ≥ h), as `keras_rtmdet.ops.rotated_boxes`.
"""

import math
import os
import warnings

import cv2
import numpy as np

from keras_rtmdet.data.coco_json import check_image_file
from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.utils.dota_classes import DOTA_CLASSES
from keras_rtmdet.utils.image_io import IMAGE_EXTENSIONS
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.target_checks import TargetError
from keras_rtmdet.utils.target_checks import check_file_targets


def _as_polygons(polygons):
    polygons = np.asarray(polygons, dtype=np.float64)
    if polygons.ndim == 3 and polygons.shape[1:] == (4, 2):
        polygons = polygons.reshape(-1, 8)
    if polygons.ndim != 2 or polygons.shape[1] != 8:
        raise ValueError(f"Expected polygons of shape (N, 8) or (N, 4, 2), got {polygons.shape}.")
    return polygons


def regularize_le90_numpy(boxes):
    """Numpy twin of `ops.rotated_boxes.regularize_le90`: w > h, else swap and add π/2; angle into [−π/2, π/2).

    Args: boxes (N, 5). Returns (N, 5) float32.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    x, y, w, h, t = boxes.T
    wider = w > h
    t = np.where(wider, t, t + math.pi / 2)
    t = np.mod(t + math.pi / 2, math.pi) - math.pi / 2
    return np.stack([x, y, np.where(wider, w, h), np.where(wider, h, w), t], axis=1).astype(np.float32)


def polygons_to_rboxes(polygons):
    """The minimum-area rotated rectangle of each polygon (`cv2.minAreaRect`, as MMRotate's qbox2rbox), le90.

    Args: polygons (N, 8) `x1 y1 ... x4 y4` pixels (or (N, 4, 2)).
    Returns: (N, 5) float32 rboxes, w ≥ h, angle in [−π/2, π/2).
    """
    polygons = _as_polygons(polygons)
    raw = np.zeros((len(polygons), 5), np.float64)
    for i, points in enumerate(polygons.reshape(-1, 4, 2).astype(np.float32)):
        (cx, cy), (w, h), angle = cv2.minAreaRect(points)
        raw[i] = (cx, cy, w, h, math.radians(angle))
    return regularize_le90_numpy(raw)


def read_dota_annotation(path, class_names=None):
    """Parse one DOTA annotation txt.

    Header lines (a first word with a ':') and blank lines are skipped; a
    missing difficulty reads as 0 (as MMRotate's split tool). With
    `class_names`, a name outside it is an error; without, any name passes.

    Returns: dict with `polygons` (N, 8) float32, `names` list of N class
    names (as written), `difficult` (N,) int32 and `lines` (N,) int32, the
    line number of each object.

    Raises:
        ValueError: naming the file and line of a malformed object line, of
            an unknown class or (`TargetError`) of non-finite coordinates
            (`nan`, `inf` read as numbers).
    """
    known = None if class_names is None else set(class_names)
    polygons, names, difficult, lines = [], [], [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            items = line.split()
            if not items or ":" in items[0]:
                continue
            if len(items) not in (9, 10):
                raise ValueError(
                    f"{path}, line {number}: expected 8 coordinates, a class name and a difficulty, got {line.strip()!r}."
                )
            try:
                polygons.append([float(v) for v in items[:8]])
                difficult.append(int(items[9]) if len(items) == 10 else 0)
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: {error} in {line.strip()!r}.") from error
            if known is not None and items[8] not in known:
                raise ValueError(f"{path}, line {number}: unknown class {items[8]!r}; known: {list(class_names)}.")
            names.append(items[8])
            lines.append(number)
    polygons = np.asarray(polygons, np.float32).reshape(-1, 8)
    bad = np.flatnonzero(~np.all(np.isfinite(polygons), axis=1))
    if bad.size:
        raise TargetError(
            f"{path}, line {lines[bad[0]]}: non-finite polygon coordinates {polygons[bad[0]].tolist()} "
            f"({bad.size} such object(s) in the file)."
        )
    return {"polygons": polygons, "names": names, "difficult": np.asarray(difficult, np.int32),
            "lines": np.asarray(lines, np.int32)}


def image_size(path):
    """(height, width) of an image file from its header (PIL, no decoding); NaNs if PIL is missing or cannot say."""
    try:
        from PIL import Image
    except ImportError:
        return (math.nan, math.nan)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError):
        return (math.nan, math.nan)
    return (float(height), float(width))


def list_images(image_dir):
    """{file stem: file name} of the images in `image_dir` (`IMAGE_EXTENSIONS`, any case), sorted by stem.

    Raises:
        ValueError: if the folder is missing or two images share a stem.
    """
    if not os.path.isdir(image_dir):
        raise ValueError(f"Image folder {image_dir} does not exist.")
    files = {}
    for name in sorted(os.listdir(image_dir)):
        stem, extension = os.path.splitext(name)
        if extension.lower() not in IMAGE_EXTENSIONS:
            continue
        if stem in files:
            raise ValueError(f"Images {files[stem]} and {name} in {image_dir} share the stem {stem!r}.")
        files[stem] = name
    return dict(sorted(files.items()))


class DotaSource(DetectionSource):
    """A DOTA-format dataset: `image_dir/{stem}.png|jpg|tif|...` and `ann_dir/{stem}.txt`.

    Image ids are ints, `image_names[image_id]` is the file stem (e.g.
    `P0003__1024__0___824` for a split patch). An image without annotation
    file has no objects (the test set: `ann_dir=None`); an annotation file
    without image counts as a missing image. Every annotation file is parsed
    at construction, so an unknown class fails before training.

    `annotations(image_id)` gives `boxes` (N, 5) float32 le90 rboxes (from
    `polygons_to_rboxes`), `polygons` (N, 8) float32, `labels` (N,) int32,
    `difficult` (N,) int32. No object is ignored here (MMRotate's
    `diff_thr=100`); evaluation decides with its difficulty threshold.

    The targets are checked at construction (`keras_rtmdet.utils.target_checks`),
    errors naming the annotation txt and line: non-finite coordinates, and,
    with the image sizes read from the file headers (PIL, when installed), a
    box far outside its image or a dataset of normalised polygons. Targets
    partly outside their image are counted in `clipped`.

    Args:
        image_dir: the image folder.
        ann_dir: the annotation folder, or None (no objects anywhere).
        class_names: class names in label order (default DOTA-v1.0).
        filter_empty: drop images without objects (the reference's training
            set: `filter_empty_gt=True`); keep False for evaluation.
        on_corrupt: `"raise"` (default) or `"skip"` (warn, list in
            `skipped`) for images that are missing, empty or truncated, and
            for those OpenCV cannot decode in `source_dataset` (a PNG with a
            bad checksum, a damaged header; a JPEG with a corrupt middle is
            decoded by OpenCV with warnings only, and not caught).
    """

    def __init__(self, image_dir, ann_dir=None, class_names=DOTA_CLASSES, filter_empty=False, on_corrupt="raise"):
        super().__init__()
        if on_corrupt not in ("skip", "raise"):
            raise ValueError(f"on_corrupt must be 'skip' or 'raise', got {on_corrupt!r}.")
        self.on_corrupt = on_corrupt
        self.image_dir = os.fspath(image_dir)
        self.ann_dir = None if ann_dir is None else os.fspath(ann_dir)
        self.class_names = list(class_names)
        self.category_ids = list(range(len(self.class_names)))
        self._label = {name: i for i, name in enumerate(self.class_names)}
        files = list_images(self.image_dir)
        if self.ann_dir is not None:
            if not os.path.isdir(self.ann_dir):
                raise ValueError(f"Annotation folder {self.ann_dir} does not exist.")
            for name in sorted(os.listdir(self.ann_dir)):
                stem, extension = os.path.splitext(name)
                if extension == ".txt" and stem not in files:
                    self._corrupt(on_corrupt, os.path.join(self.ann_dir, name), "no image file for this annotation")
        self.image_names, self._files, self._objects, self._lines = [], [], [], []
        for stem, file_name in files.items():
            path = os.path.join(self.image_dir, file_name)
            reason = check_image_file(path)
            if reason is not None:
                self._corrupt(on_corrupt, path, reason)
                continue
            self.image_names.append(stem)
            self._files.append(file_name)
            self._objects.append(self._parse(stem))
        self._check_targets()
        self.image_ids = [i for i, objects in enumerate(self._objects) if not filter_empty or len(objects["labels"])]
        self.left_out_empty = len(self._objects) - len(self.image_ids)
        if self.skipped:
            shown = "; ".join(f"{p}: {r}" for p, r in self.skipped[:5])
            more = f" (and {len(self.skipped) - 5} more)" if len(self.skipped) > 5 else ""
            warnings.warn(f"Skipped {len(self.skipped)} file(s) of {self.image_dir}: {shown}{more}.", stacklevel=2)
        if not self.image_ids:
            raise ValueError(f"No usable images in {self.image_dir} (annotations {self.ann_dir}).")

    def _corrupt(self, on_corrupt, path, reason):
        if on_corrupt == "raise":
            raise ValueError(f"Image {path}: {reason}.")
        self.skipped.append((path, reason))

    def _parse(self, stem):
        path = None if self.ann_dir is None else os.path.join(self.ann_dir, stem + ".txt")
        if path is None or not os.path.isfile(path):
            parsed = {"polygons": np.zeros((0, 8), np.float32), "names": [], "difficult": np.zeros(0, np.int32),
                      "lines": np.zeros(0, np.int32)}
        else:
            parsed = read_dota_annotation(path, self.class_names)
        self._lines.append(parsed["lines"])
        return {
            "boxes": polygons_to_rboxes(parsed["polygons"]),
            "polygons": parsed["polygons"],
            "labels": np.asarray([self._label[name] for name in parsed["names"]], np.int32),
            "difficult": parsed["difficult"],
        }

    def _check_targets(self):
        """The target rules over every image's rboxes at once (sizes from the headers); counts `clipped`."""
        sizes = np.array([image_size(os.path.join(self.image_dir, name)) for name in self._files], np.float64)
        boxes = np.concatenate([o["boxes"] for o in self._objects]) if self._objects else np.zeros((0, 5), np.float32)
        labels = np.concatenate([o["labels"] for o in self._objects]) if self._objects else np.zeros(0, np.int32)
        counts = [len(o["labels"]) for o in self._objects]
        image_index = np.repeat(np.arange(len(counts)), counts)
        lines = np.concatenate(self._lines) if self._lines else np.zeros(0, np.int32)

        def where(k, i):
            txt = os.path.join(self.ann_dir or "", self.image_names[i] + ".txt")
            return f"{txt} (image {self._files[i]})" if k is None else f"{txt}, line {lines[k]}"

        check_file_targets(boxes, labels, self.num_classes, sizes, image_index, where)
        corners = rboxes_to_polygons(boxes).reshape(-1, 4, 2)
        height, width = sizes[image_index].T
        outside = (corners[..., 0].min(1) < 0) | (corners[..., 1].min(1) < 0)
        outside |= (corners[..., 0].max(1) > width) | (corners[..., 1].max(1) > height)
        self.clipped = int(np.count_nonzero(outside)) if np.isfinite(sizes).all() else None

    def image_path(self, image_id):
        return os.path.join(self.image_dir, self._files[image_id])

    def load_image(self, image_id):
        return read_image(self.image_path(image_id))

    def annotations(self, image_id, with_masks=None):
        """`{"boxes": (N, 5) rboxes, "polygons": (N, 8), "labels": (N,) int32, "difficult": (N,) int32}` (copies)."""
        if with_masks:
            raise ValueError("DOTA annotations have no masks.")
        return {key: value.copy() for key, value in self._objects[image_id].items()}
