"""COCO-format datasets: an annotation JSON plus an image folder, read with pycocotools."""

import contextlib
import io
import os
import warnings

import numpy as np

from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.utils.image_io import read_image

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


class CocoJsonSource(DetectionSource):
    """A COCO-format dataset.

    Category ids are mapped to contiguous labels in increasing id order
    (`category_ids[label]` is the id back). Annotations are parsed as mmdet's
    `CocoDataset`: boxes with w < 1, h < 1 or area ≤ 0 dropped, xywh → xyxy;
    crowd annotations are not targets (they stay in `coco`, where COCOeval
    uses them as ignore regions).

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
            `"raise"` for images that are missing, empty or truncated.
            Checked at construction: a tail read per file.
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
        self.annotation_file = os.fspath(annotation_file)
        self.image_dir = os.fspath(image_dir)
        self.with_masks = with_masks
        self.coco = _load_coco(self.annotation_file)
        self.category_ids = sorted(self.coco.getCatIds())
        cats = self.coco.loadCats(self.category_ids)
        self.class_names = [c.get("name", str(c["id"])) for c in cats]
        self._label = {c: i for i, c in enumerate(self.category_ids)}
        ids = []
        for image_id in sorted(self.coco.getImgIds()):
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
            if filter_empty and not len(self.annotations(image_id)["labels"]):
                continue
            ids.append(image_id)
        self.image_ids = ids
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

    def _objects(self, image_id):
        info = self.coco.imgs[image_id]
        out = []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0) or ann.get("ignore", 0):
                continue
            x, y, w, h = ann["bbox"]
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(info.get("width", x + w)), x + w), min(float(info.get("height", y + h)), y + h)
            if w < 1 or h < 1 or ann.get("area", w * h) <= 0 or x2 <= x1 or y2 <= y1:
                continue
            if ann["category_id"] not in self._label:
                raise ValueError(f"Annotation {ann.get('id')} of image {image_id} has unknown category {ann['category_id']}.")
            out.append(ann)
        return out

    def annotations(self, image_id, with_masks=None):
        """See `DetectionSource.annotations`; `with_masks` overrides the source's setting for this call."""
        anns = self._objects(image_id)
        # mmdet keeps the unclipped xyxy box; pixels outside the image are clipped by the transforms.
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns], np.float32)
        out = {
            "boxes": boxes.reshape(-1, 4),
            "labels": np.array([self._label[a["category_id"]] for a in anns], np.int32),
        }
        if self.with_masks if with_masks is None else with_masks:
            info = self.coco.imgs[image_id]
            shape = (len(anns), info["height"], info["width"])
            out["masks"] = np.stack([self.coco.annToMask(a) for a in anns]).astype(np.uint8) if anns else np.zeros(shape, np.uint8)
        return out
