"""COCO-format datasets: an annotation JSON plus an image folder, read with pycocotools."""

import contextlib
import io
import os
import warnings

import numpy as np

from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.target_checks import check_file_targets

# What a complete file of each format ends with: a truncated download, the
# usual corruption, is caught by name before training starts.
_END_MARKERS = {b"\xff\xd8": b"\xff\xd9", b"\x89P": b"IEND\xaeB`\x82"}


def check_image_file(path):
    """`None` if `path` looks like a whole image file, else the reason it does not."""
    if not os.path.isfile(path):
        return "no such file"
    size = os.path.getsize(path)
    if size == 0:
        return "empty file"
    with open(path, "rb") as f:
        head = f.read(2)
        end = _END_MARKERS.get(head)
        if end is not None:
            f.seek(max(0, size - 64))
            if end not in f.read():
                return "truncated file (no end marker)"
    return None


def _load_coco(annotation_file):
    from pycocotools.coco import COCO

    if not os.path.isfile(annotation_file):
        raise FileNotFoundError(f"COCO annotation file {annotation_file} does not exist.")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(annotation_file)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{annotation_file} is not a COCO annotation file: {error!r}") from error


# Why an annotation is not a training target, tested in this order (mmdet's `CocoDataset` rules).
DROP_REASONS = ("crowd", "ignore flag", "width or height < 1 px", "area <= 0", "outside the image")


def _is_bbox(bbox):
    return (
        isinstance(bbox, (list, tuple))
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    )


def _bbox_array(annotations, annotation_file):
    """(M, 4) float64 xywh of every annotation; `ValueError` naming the first whose bbox is not 4 numbers."""
    raw = [a.get("bbox") for a in annotations]
    try:
        boxes = np.array(raw)
    except ValueError:
        boxes = None
    if boxes is None or boxes.shape != (len(raw), 4) or boxes.dtype.kind not in "iuf":
        for annotation, bbox in zip(annotations, raw):
            if not _is_bbox(bbox):
                raise ValueError(
                    f"{annotation_file}: annotation id {annotation.get('id')} (image id {annotation.get('image_id')}): "
                    f"bbox must be 4 numbers [x, y, w, h], got {bbox!r}."
                )
    return boxes.astype(np.float64).reshape(-1, 4)


def _flags(annotations, key):
    return np.array([bool(a.get(key, 0)) for a in annotations], bool).reshape(-1)


def parse_annotations(coco, annotation_file, category_ids, image_ids, image_path):
    """Every annotation of `coco` as arrays, in file order, with the reason each one is not a target.

    Args:
        coco: the loaded `COCO`; category_ids: sorted ids (label = position); image_ids: sorted ids;
        image_path: image id → its file (for messages).

    Returns: dict of (M,) arrays over the annotations of known images: `"index"` (position in the
    file's list), `"image"` (position in `image_ids`), `"boxes"` (M, 4) float64 xywh, `"labels"` int64,
    `"reason"` (index into `DROP_REASONS`, −1: a target), `"clipped"` (a target partly outside its image),
    `"sizes"` (I, 2) float64 (height, width) of the images, NaN where the file has none, and `"orphans"`:
    the count of annotations of image ids the file does not list (never used).

    Raises:
        ValueError: naming the file and annotation id of a bbox that is not 4 numbers, an unknown category
            or a problem of `keras_rtmdet.utils.target_checks` (`TargetError`).
    """
    annotations = coco.dataset.get("annotations", [])
    columns = _columns(annotations, annotation_file, category_ids, image_ids)
    known = np.flatnonzero(columns["image"] >= 0)
    columns = {key: value[known] for key, value in columns.items()}
    sizes = np.array(
        [[coco.imgs[i].get("height", np.nan), coco.imgs[i].get("width", np.nan)] for i in image_ids], np.float64
    ).reshape(-1, 2)

    def where(k, i):
        name = f"image {image_path(image_ids[i])} (id {image_ids[i]})"
        if k is None:
            return f"{annotation_file}, {name}"
        annotation = annotations[known[k]]
        return f"{annotation_file}, annotation id {annotation.get('id')} (bbox {annotation.get('bbox')}) of {name}"

    _check(columns, sizes, category_ids, annotation_file, where, lambda k: annotations[known[k]])
    reason, clipped = _drop_reasons(columns, sizes)
    parsed = {"index": known, "image": columns["image"], "boxes": columns["xywh"], "labels": columns["labels"]}
    return {**parsed, "reason": reason, "clipped": clipped, "sizes": sizes, "orphans": len(annotations) - known.size}


def _columns(annotations, annotation_file, category_ids, image_ids):
    """(M,) arrays of the file's annotations: image position (−1: not listed), xywh, label (−1: unknown), area, flags."""
    position = {image_id: k for k, image_id in enumerate(image_ids)}
    label_of = {c: i for i, c in enumerate(category_ids)}
    try:
        area = np.array([a.get("area", np.nan) for a in annotations], np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{annotation_file}: an annotation's area is not a number ({error}).") from error
    return {
        "image": np.array([position.get(a["image_id"], -1) for a in annotations], np.int64).reshape(-1),
        "xywh": _bbox_array(annotations, annotation_file),
        "labels": np.array([label_of.get(a.get("category_id"), -1) for a in annotations], np.int64).reshape(-1),
        "area": area,
        "crowd": _flags(annotations, "iscrowd"),
        "ignore": _flags(annotations, "ignore"),
    }


def _check(columns, sizes, category_ids, annotation_file, where, annotation):
    """Unknown categories, then the target rules over every annotation (crowd regions too): errors by name."""
    image, labels = columns["image"], columns["labels"]
    unknown = np.flatnonzero(labels < 0)
    if unknown.size:
        raise ValueError(
            f"{where(int(unknown[0]), int(image[unknown[0]]))}: unknown category "
            f"{annotation(unknown[0]).get('category_id')!r} (the file's categories: {list(category_ids)})."
        )
    x, y, w, h = columns["xywh"].T
    xyxy = np.stack([x, y, x + w, y + h], axis=1)
    normalised = check_file_targets(xyxy, labels, len(category_ids), sizes, image, where)
    if normalised.size:
        warnings.warn(
            f"{normalised.size} image(s) of {annotation_file} have only boxes within [0, 1.5] px (e.g. "
            f"{where(None, int(normalised[0]))}): normalised coordinates? Such objects are mostly dropped "
            "(width or height < 1 px).",
            stacklevel=4,
        )


def _drop_reasons(columns, sizes):
    """(M,) index into `DROP_REASONS` of each annotation (−1: a target), and (M,) targets partly outside the image."""
    x, y, w, h = columns["xywh"].T
    height, width = sizes[columns["image"]].T
    # mmdet's test: the part of the box inside the image must have an area (no size: no limit).
    inside_w = np.minimum(np.where(np.isnan(width), x + w, width), x + w) - np.maximum(x, 0.0)
    inside_h = np.minimum(np.where(np.isnan(height), y + h, height), y + h) - np.maximum(y, 0.0)
    area = np.where(np.isnan(columns["area"]), w * h, columns["area"])
    tests = (columns["crowd"], columns["ignore"], (w < 1) | (h < 1), area <= 0, (inside_w <= 0) | (inside_h <= 0))
    reason = np.select(tests, np.arange(len(tests)), -1)
    clipped = (reason < 0) & ((x < 0) | (y < 0) | (x + w > width) | (y + h > height))
    return reason, clipped


class CocoJsonSource(DetectionSource):
    """A COCO-format dataset.

    Category ids are mapped to contiguous labels in increasing id order
    (`category_ids[label]` is the id back). Annotations are parsed as mmdet's
    `CocoDataset`: boxes with w < 1, h < 1, area ≤ 0 or no part inside the
    image dropped, xywh → xyxy; crowd annotations are not targets (they stay
    in `coco`, where COCOeval uses them as ignore regions). Why each object
    was dropped is counted in `dropped` (`DROP_REASONS`), targets partly
    outside their image (clipped by the transforms) in `clipped`, images left
    out by `filter_empty` in `left_out_empty` (see `dataset_report`).

    Every annotation is parsed once, vectorised, at construction, and checked
    (`keras_rtmdet.utils.target_checks`): a bbox that is not 4 numbers or is
    not finite, an unknown category, a box far outside its image or a file of
    normalised boxes raise `ValueError` naming the JSON, the image file and
    the annotation id.

    Args:
        annotation_file: the COCO JSON.
        image_dir: folder the images' `file_name`s are relative to.
        with_masks: decode polygons / RLE into (N, H, W) uint8 masks.
        filter_empty: drop images without any (non-crowd) object, as the
            reference's training set does (`filter_empty_gt=True`); keep
            False for evaluation.
        min_size: drop images whose shorter side is below this (reference
            training: 32).
        on_corrupt: `"skip"` (default: warn and list it in `skipped`) or
            `"raise"` for images that are missing, empty or truncated
            (checked at construction: a tail read per file) and for those
            that fail to decode in `source_dataset` (a corrupt middle).
    """

    def __init__(
        self,
        annotation_file,
        image_dir,
        with_masks=False,
        filter_empty=False,
        min_size=0,
        on_corrupt="skip",
    ):
        super().__init__()
        if on_corrupt not in ("skip", "raise"):
            raise ValueError(f"on_corrupt must be 'skip' or 'raise', got {on_corrupt!r}.")
        self.on_corrupt = on_corrupt
        self.annotation_file = os.fspath(annotation_file)
        self.image_dir = os.fspath(image_dir)
        self.with_masks = with_masks
        self.coco = _load_coco(self.annotation_file)
        self.category_ids = sorted(self.coco.getCatIds())
        cats = self.coco.loadCats(self.category_ids)
        self.class_names = [c.get("name", str(c["id"])) for c in cats]
        all_ids = sorted(self.coco.getImgIds())
        parsed = parse_annotations(self.coco, self.annotation_file, self.category_ids, all_ids, self.image_path)
        self._index_targets(parsed, all_ids)
        ids = []
        for image_id in all_ids:
            info = self.coco.imgs[image_id]
            path = self.image_path(image_id)
            reason = check_image_file(path)
            if reason is not None:
                if on_corrupt == "raise":
                    raise ValueError(f"Image {path} (id {image_id}): {reason}.")
                self.skipped.append((path, reason))
                continue
            if min(info.get("height", min_size), info.get("width", min_size)) < min_size:
                self.skipped.append((path, f"smaller than {min_size} px"))
                continue
            if filter_empty and not self._target_count(image_id):
                self.left_out_empty += 1
                continue
            ids.append(image_id)
        self.image_ids = ids
        self._count_drops(parsed, ids)
        if self.skipped:
            shown = "; ".join(f"{p}: {r}" for p, r in self.skipped[:5])
            more = f" (and {len(self.skipped) - 5} more)" if len(self.skipped) > 5 else ""
            warnings.warn(f"Skipped {len(self.skipped)} image(s) of {self.annotation_file}: {shown}{more}.", stacklevel=2)
        if not ids:
            raise ValueError(f"No usable images in {self.annotation_file} (image folder {self.image_dir}).")

    def image_path(self, image_id):
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    def load_image(self, image_id):
        return read_image(self.image_path(image_id))

    def _index_targets(self, parsed, all_ids):
        """The targets of every image, grouped by image in file order: (K, 4) xyxy float32, (K,) labels, offsets."""
        targets = np.flatnonzero(parsed["reason"] < 0)
        order = targets[np.argsort(parsed["image"][targets], kind="stable")]
        x, y, w, h = parsed["boxes"][order].T
        # mmdet keeps the unclipped xyxy box; pixels outside the image are clipped by the transforms.
        self._boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
        self._labels = parsed["labels"][order].astype(np.int32)
        self._annotation_index = parsed["index"][order]
        self._offsets = np.searchsorted(parsed["image"][order], np.arange(len(all_ids) + 1))
        self._position = {image_id: k for k, image_id in enumerate(all_ids)}

    def _target_count(self, image_id):
        k = self._position[image_id]
        return int(self._offsets[k + 1] - self._offsets[k])

    def _count_drops(self, parsed, ids):
        """`dropped` and `clipped` over the objects of the images in use."""
        in_use = np.zeros(len(self._position), bool)
        in_use[[self._position[i] for i in ids]] = True
        in_use = in_use[parsed["image"]]
        counts = np.bincount(parsed["reason"][in_use & (parsed["reason"] >= 0)], minlength=len(DROP_REASONS))
        self.dropped = {reason: int(count) for reason, count in zip(DROP_REASONS, counts) if count}
        if parsed["orphans"]:
            self.dropped["image id not in the file"] = parsed["orphans"]
        self.clipped = int(np.count_nonzero(parsed["clipped"] & in_use))

    def object_counts(self):
        """(objects per image in `image_ids` order, objects per label), from the parsed arrays."""
        positions = np.array([self._position[i] for i in self.image_ids], np.int64)
        per_image = np.diff(self._offsets)
        in_use = np.zeros(len(per_image), bool)
        in_use[positions] = True
        target_in_use = np.repeat(in_use, per_image)
        return per_image[positions], np.bincount(self._labels[target_in_use], minlength=self.num_classes)

    def targets(self, ids):
        """The targets of images `ids` concatenated: (K, 4) float32 xyxy boxes, (K,) int32 labels, (I,) int64 counts."""
        positions = np.array([self._position[i] for i in ids], np.int64).reshape(-1)
        starts, counts = self._offsets[positions], np.diff(self._offsets)[positions]
        # Index of every target: its image's start plus its rank within the image.
        first = np.cumsum(counts) - counts
        index = np.repeat(starts - first, counts) + np.arange(counts.sum())
        return self._boxes[index], self._labels[index], counts.astype(np.int64)

    def annotations(self, image_id, with_masks=None):
        """See `DetectionSource.annotations`; `with_masks` overrides the source's setting for this call."""
        k = self._position[image_id]
        span = slice(self._offsets[k], self._offsets[k + 1])
        out = {"boxes": self._boxes[span].copy(), "labels": self._labels[span].copy()}
        if self.with_masks if with_masks is None else with_masks:
            info = self.coco.imgs[image_id]
            anns = [self.coco.dataset["annotations"][i] for i in self._annotation_index[span]]
            shape = (len(anns), info["height"], info["width"])
            out["masks"] = np.stack([self.coco.annToMask(a) for a in anns]).astype(np.uint8) if anns else np.zeros(shape, np.uint8)
        return out
