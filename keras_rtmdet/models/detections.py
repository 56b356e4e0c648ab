"""`Detections`: one image's detections as numpy arrays, drawn, saved, or written as JSON, COCO results or a table.

`model.predict` returns padded arrays for a whole batch; `model.detect_images`
cuts them into one `Detections` per image (`detections_from_predictions`),
each holding its valid detections, its image and the file it came from.
"""

import json
import os

import numpy as np

from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import as_image_list
from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.utils.drawing import draw_detections
from keras_rtmdet.utils.image_io import write_image
from keras_rtmdet.utils.input_checks import DEFAULT_PIXEL_RANGE
from keras_rtmdet.utils.mask_rle import encode_mask

BOX_COLUMNS = {4: ("x1", "y1", "x2", "y2"), 5: ("cx", "cy", "w", "h", "angle")}
BOX_FORMATS = {4: "xyxy", 5: "xywha"}


class Detections:
    """The detections of one image, in its original pixels.

    Attributes:
        boxes: (K, 4) float32 x1, y1, x2, y2; or (K, 5) rotated boxes cx, cy,
            w, h in pixels and angle in radians (clockwise on screen, le90).
        scores: (K,) float32, best first as `predict` gives them.
        labels: (K,) int32 class indices.
        masks: (K, H, W) bool instance masks at the image's size, or None.
        image: (H, W, 3) uint8 RGB image the detections belong to, or None.
        path: the image file, or None.
        class_names: the model's class names (`class_names[label]`), or None.
    """

    def __init__(self, boxes, scores, labels, masks=None, image=None, path=None, class_names=None):
        boxes = np.asarray(boxes, np.float32)
        if boxes.size == 0 and boxes.ndim == 1:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] not in BOX_FORMATS:
            raise ValueError(f"boxes must be (K, 4) xyxy or (K, 5) rotated boxes, got shape {boxes.shape}.")
        self.boxes = boxes
        self.scores = np.asarray(scores, np.float32).reshape(-1)
        self.labels = np.asarray(labels).reshape(-1).astype(np.int32)
        if not len(self.boxes) == len(self.scores) == len(self.labels):
            raise ValueError(f"Got {len(self.boxes)} boxes, {len(self.scores)} scores and {len(self.labels)} labels.")
        if image is not None:
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}.")
        if masks is not None:
            masks = np.asarray(masks, bool)
            expected = (len(self.boxes), *(image.shape[:2] if image is not None else masks.shape[1:]))
            if masks.ndim != 3 or masks.shape != expected:
                raise ValueError(f"masks must be (K, H, W) at the image's size, {expected}; got {masks.shape}.")
        self.masks, self.image = masks, image
        self.path = None if path is None else os.fspath(path)
        self.class_names = None if class_names is None else list(class_names)

    @property
    def box_format(self):
        """`"xyxy"` or `"xywha"` (rotated: cx, cy, w, h, angle)."""
        return BOX_FORMATS[self.boxes.shape[1]]

    @property
    def image_size(self):
        """(height, width) of the image or of the masks; None when neither is attached."""
        if self.image is not None:
            return tuple(self.image.shape[:2])
        return None if self.masks is None else tuple(self.masks.shape[1:])

    @property
    def names(self):
        """(K,) class name of each detection (None for a label without a name)."""
        names = self.class_names or []
        return [names[label] if 0 <= label < len(names) else None for label in self.labels.tolist()]

    def __len__(self):
        return len(self.boxes)

    def __getitem__(self, index):
        """The detections at `index` (an int, a slice, indices or a (K,) bool mask), as `Detections`."""
        keep = np.atleast_1d(np.arange(len(self))[index])
        return Detections(
            self.boxes[keep],
            self.scores[keep],
            self.labels[keep],
            None if self.masks is None else self.masks[keep],
            self.image,
            self.path,
            self.class_names,
        )

    def __repr__(self):
        parts = [f"{len(self)} {self.box_format} box{'' if len(self) == 1 else 'es'}"]
        if self.masks is not None:
            parts.append("masks")
        if self.image_size is not None:
            parts.append("image {}x{}".format(*self.image_size))
        if self.path is not None:
            parts.append(f"path={self.path!r}")
        return f"Detections({', '.join(parts)})"

    def plot(self, image=None, masks=True, thickness=None, font_scale=None, mask_alpha=0.45):
        """The image annotated with boxes (rotated: polygons), "name score" labels and masks.

        Args:
            image: (H, W, 3) uint8 RGB to draw on instead of the attached one.
            masks: draw the masks (when there are any).
            thickness, font_scale, mask_alpha: as `keras_rtmdet.utils.drawing.draw_detections`.

        Returns: a new (H, W, 3) uint8 RGB array.
        """
        image = self.image if image is None else image
        if image is None:
            raise ValueError("These detections have no image attached: pass plot(image=...).")
        return draw_detections(
            image,
            self.boxes,
            self.scores,
            self.labels,
            self.class_names,
            thickness,
            font_scale,
            masks=self.masks if masks else None,
            mask_alpha=mask_alpha,
        )

    def save(self, path, **plot_options):
        """Write `plot(**plot_options)` to `path` in the format of its extension (.jpg, .png, ...); return `path`."""
        write_image(path, self.plot(**plot_options))
        return path

    def to_records(self):
        """One JSON-ready dict per detection: `label`, `class_name` (None without one), `score` (to 1e-6) and
        `box` [x1, y1, x2, y2] (to 1e-4 px), or for rotated boxes `rbox` [cx, cy, w, h, angle] (angle to 1e-6 rad)
        and `polygon` (its 4 corners, x, y each); with masks `mask`, a COCO RLE (needs pycocotools)."""
        records = []
        for k, (box, score, label, name) in enumerate(zip(self.boxes, self.scores, self.labels.tolist(), self.names)):
            record = {**_box_fields(box), "score": round(float(score), 6), "label": label, "class_name": name}
            if self.masks is not None:
                record["mask"] = encode_mask(self.masks[k])
            records.append(record)
        return records

    def to_dict(self):
        """`{"file", "width", "height", "detections": to_records()}`, JSON-ready (None where unknown)."""
        height, width = self.image_size or (None, None)
        return {"file": self.path, "width": width, "height": height, "detections": self.to_records()}

    def to_json(self, indent=None):
        """`to_dict()` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_coco(self, image_id, category_ids=None):
        """COCO result records: `{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`, + `"segmentation"`
        (an RLE, pycocotools) with masks.

        Args:
            image_id: the image's COCO id.
            category_ids: `category_ids[label]` is the COCO category id of a label
                (`keras_rtmdet.utils.coco_classes.COCO_CATEGORY_IDS` for COCO's 80 classes); default the label.
        """
        if self.box_format != "xyxy":
            raise ValueError("COCO results hold axis-aligned boxes; rotated detections have to_records() instead.")
        records = []
        for k, ((x1, y1, x2, y2), score, label) in enumerate(zip(self.boxes.tolist(), self.scores, self.labels)):
            record = {
                "image_id": int(image_id),
                "category_id": int(label if category_ids is None else category_ids[label]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
            }
            if self.masks is not None:
                record["segmentation"] = encode_mask(self.masks[k])
            records.append(record)
        return records

    def to_dataframe(self):
        """A pandas DataFrame, one row per detection: `label`, `class_name`, `score` and the box's columns
        (`x1, y1, x2, y2`, or `cx, cy, w, h, angle`); the masks stay in `masks`. Needs pandas (optional)."""
        try:
            import pandas
        except ImportError as error:
            raise ImportError(
                "Detections.to_dataframe needs pandas, an optional dependency: pip install pandas."
            ) from error
        columns = {"label": self.labels, "class_name": self.names, "score": self.scores}
        columns.update(zip(BOX_COLUMNS[self.boxes.shape[1]], self.boxes.T))
        return pandas.DataFrame(columns)


def detections_from_predictions(outputs, images, paths=None, class_names=None):
    """`model.predict`'s padded outputs as one `Detections` per image, cut to its `num_detections`.

    Args:
        outputs: `predict`'s dict: `boxes` (B, K, 4 or 5), `scores`, `labels`
            (B, K), `num_detections` (B,), optionally `masks` (B, K, H, W)
            padded to the batch's largest image.
        images: the B (H, W, 3) uint8 RGB images; each one's masks are cut to its size.
        paths: optional B file paths (None for an image that came as an array).
    """
    if len(images) != len(outputs["num_detections"]):
        raise ValueError(f"Got {len(images)} images for {len(outputs['num_detections'])} rows of predictions.")
    paths = paths or [None] * len(images)
    found = []
    for b, (image, path) in enumerate(zip(images, paths)):
        count = int(outputs["num_detections"][b])
        height, width = image.shape[:2]
        # A copy, not a view: the batch's padded masks (B, K, H_max, W_max) need not outlive `predict`.
        masks = outputs["masks"][b, :count, :height, :width].copy() if "masks" in outputs else None
        fields = (outputs[key][b, :count] for key in ("boxes", "scores", "labels"))
        found.append(Detections(*fields, masks=masks, image=image, path=path, class_names=class_names))
    return found


def rgb_uint8_images(images, channel_order="rgb", pixel_range=DEFAULT_PIXEL_RANGE):
    """The images as (H, W, 3) uint8 RGB to draw on: BGR flipped, other pixel ranges mapped to [0, 255]."""
    shown = []
    for image in images:
        image = np.asarray(image)
        if image.dtype != np.uint8 or tuple(pixel_range) != DEFAULT_PIXEL_RANGE:
            image = np.clip(np.rint(as_image_list([image], pixel_range)[0]), 0, 255).astype(np.uint8)
        shown.append(image[..., ::-1] if channel_order == "bgr" else image)
    return shown


def _box_fields(box):
    """`{"box": xyxy}` for 4 numbers; `{"rbox": (cx, cy, w, h, angle), "polygon": its 4 corners}` for 5."""
    if len(box) == 5:
        polygon = rboxes_to_polygons(np.asarray(box, np.float32)[None])[0]
        return {
            "rbox": [round(float(v), 6 if i == 4 else 4) for i, v in enumerate(box)],
            "polygon": [round(float(v), 4) for v in polygon],
        }
    return {"box": [round(float(v), 4) for v in box]}
