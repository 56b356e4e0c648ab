"""A detection dataset drawn on the fly: shapes of several classes on textured backgrounds.

Needs no download, so the demo, the tests and the benchmarks can train and
evaluate a detector anywhere. Class = shape (`SHAPE_NAMES`); colour, size,
position and background vary. Objects may occlude each other: boxes and masks
are those of the visible part, and objects hidden for more than half of their
area are dropped.
"""

import cv2
import numpy as np

from keras_rtmdet.data.coco_ground_truth import coco_from_samples
from keras_rtmdet.data.detection_source import DetectionSource

SHAPE_NAMES = ("square", "disc", "triangle", "ring", "cross", "diamond")


def _background(rng, height, width):
    """Smooth colour gradient + stripes or blobs + noise: structured clutter, not a flat colour."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    tilt = rng.uniform(-60, 60, (2, 3))
    image = base + (x[..., None] / width) * tilt[0] + (y[..., None] / height) * tilt[1]
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
        stripes = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)
        image += stripes[..., None] * rng.uniform(8, 25)
    elif kind == 1:
        blobs = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), rng.uniform(3, 8))
        image += blobs[..., None] / (np.abs(blobs).max() + 1e-6) * rng.uniform(15, 40)
    image += rng.normal(0, rng.uniform(2, 8), (height, width, 1))
    return np.clip(image, 0, 255)


def _shape_mask(shape, height, width, cx, cy, size, angle):
    mask = np.zeros((height, width), np.uint8)
    r = size / 2
    if shape == "disc":
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
    elif shape == "ring":
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
        cv2.circle(mask, (int(cx), int(cy)), int(r * 0.55), 0, -1)
    else:
        if shape == "square":
            points = [(-r, -r), (r, -r), (r, r), (-r, r)]
        elif shape == "triangle":
            points = [(0, -r), (r, r * 0.8), (-r, r * 0.8)]
        elif shape == "diamond":
            points = [(0, -r), (r * 0.6, 0), (0, r), (-r * 0.6, 0)]
        else:  # cross
            a = r / 3
            points = [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a)]
        c, s = np.cos(angle), np.sin(angle)
        poly = np.array([(cx + px * c - py * s, cy + px * s + py * c) for px, py in points])
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask


def draw_sample(rng, height, width, num_classes=3, max_objects=6, min_size=None, max_size=None):
    """One image: `(image (H, W, 3) uint8 RGB, boxes (N, 4) float32 xyxy px, labels (N,) int32, masks (N, H, W) uint8)`."""
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}.")
    short = min(height, width)
    min_size = min_size or max(10, short // 10)
    max_size = max_size or max(min_size + 1, short // 2)
    image = _background(rng, height, width)
    count = int(rng.integers(0, max_objects + 1))
    masks, labels, full_areas = [], [], []
    for _ in range(count):
        label = int(rng.integers(num_classes))
        size = rng.uniform(min_size, max_size)
        cx, cy = rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)
        mask = _shape_mask(SHAPE_NAMES[label], height, width, cx, cy, size, rng.uniform(0, np.pi))
        if not mask.any():
            continue
        colour = rng.uniform(0, 255, 3)
        shade = rng.uniform(0.8, 1.2)
        image[mask.astype(bool)] = np.clip(colour * shade, 0, 255)
        for earlier in masks:  # the new object hides what it covers
            earlier[mask.astype(bool)] = 0
        masks.append(mask)
        labels.append(label)
        full_areas.append(mask.sum())
    keep = [i for i, m in enumerate(masks) if m.sum() >= 0.5 * full_areas[i]]
    masks = np.stack([masks[i] for i in keep]) if keep else np.zeros((0, height, width), np.uint8)
    boxes = np.zeros((len(keep), 4), np.float32)
    for j, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        boxes[j] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return image.astype(np.uint8), boxes, np.array([labels[i] for i in keep], np.int32), masks


def draw_image_size(rng, image_size):
    """(height, width) ints: `image_size` itself, or uniform in `((min_h, max_h), (min_w, max_w))`."""
    (h0, h1), (w0, w1) = image_size if np.ndim(image_size[0]) else ((s, s) for s in image_size)
    return int(rng.integers(h0, h1 + 1)), int(rng.integers(w0, w1 + 1))


class SyntheticShapesSource(DetectionSource):
    """`num_images` generated images (reproducible from `seed`), with an in-memory COCO ground truth.

    Args:
        num_images: dataset size.
        image_size: `(height, width)`, or `((min_h, max_h), (min_w, max_w))`
            for images of varying size.
        num_classes: how many of `SHAPE_NAMES` to use (1–6).
        max_objects: objects drawn per image are uniform in [0, max_objects]
            (so some images have none), before occlusion filtering.
        with_masks: include `"masks"` in `annotations`.
        seed: the dataset is a pure function of it.

    Images are drawn on first use and kept (≈ H·W·3 bytes each).
    """

    def __init__(self, num_images, image_size=(256, 256), num_classes=3, max_objects=6, with_masks=False, seed=0):
        super().__init__()
        if num_images < 1:
            raise ValueError(f"num_images must be positive, got {num_images}.")
        self.num_classes_ = num_classes
        self.max_objects = max_objects
        self.with_masks = with_masks
        self.seed = seed
        self.image_size = image_size
        self.image_ids = list(range(1, num_images + 1))
        self.category_ids = list(range(1, num_classes + 1))
        self.class_names = list(SHAPE_NAMES[:num_classes])
        self._cache = {}
        self._coco = None

    def _draw(self, image_id):
        if image_id not in self._cache:
            rng = np.random.default_rng([self.seed, image_id])
            height, width = draw_image_size(rng, self.image_size)
            self._cache[image_id] = draw_sample(rng, height, width, self.num_classes_, self.max_objects)
        return self._cache[image_id]

    def load_image(self, image_id):
        return self._draw(image_id)[0]

    def annotations(self, image_id, with_masks=None):
        _, boxes, labels, masks = self._draw(image_id)
        out = {"boxes": boxes, "labels": labels}
        if self.with_masks if with_masks is None else with_masks:
            out["masks"] = masks
        return out

    @property
    def coco(self):
        """pycocotools COCO of the ground truth (built on first use: it draws every image)."""
        if self._coco is None:
            self._coco = coco_from_samples(
                ((i, *self._draw(i)) for i in self.image_ids), self.category_ids, self.class_names
            )
        return self._coco
