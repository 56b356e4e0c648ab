"""A rotated-detection dataset drawn on the fly: elongated shapes at random angles on textured backgrounds.

Needs no download, so the rotated demo and tests can train and evaluate an
RTMDet-R anywhere. Class = shape (`ROTATED_SHAPE_NAMES`): "ship" (a rotated
rectangle, aspect 2.5–5), "ellipse" (aspect 1.5–2.5), "arrow" (a shaft and a
head, aspect 2–3.5) and "tank" (a disc annotated, as DOTA's storage tanks, by
its axis-aligned square: `rect_labels`). Objects do not touch, are wholly
inside the image and are drawn as the pixels whose centre lies in the shape,
so each annotation is the tight rotated box of what is drawn.
"""

import cv2
import numpy as np

from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons
from keras_rtmdet.data.dota import regularize_le90_numpy
from keras_rtmdet.data.synthetic import _background
from keras_rtmdet.data.synthetic import draw_image_size

ROTATED_SHAPE_NAMES = ("ship", "ellipse", "arrow", "tank")
# Shapes annotated by axis-aligned boxes (RandomRotate then turns by multiples of 90°).
RECT_SHAPE_NAMES = ("tank",)
_ASPECT_RANGES = {"ship": (2.5, 5.0), "ellipse": (1.5, 2.5), "arrow": (2.0, 3.5), "tank": (1.0, 1.0)}
# The arrow along u ∈ [−1, 1]: a shaft (half-thickness 0.4) up to the neck, full-height barbs up to
# the shoulder, then a head tapering to a blunt tip (half-height 0.3), so it reaches every side of its box.
_ARROW_NECK, _ARROW_SHOULDER, _ARROW_SHAFT, _ARROW_TIP = 0.2, 0.35, 0.4, 0.3
_MIN_THICKNESS = 4.0
_MIN_CONTRAST = 90.0
_TRIES = 20


def shape_inside(shape, u, v):
    """Bool array: the points of local coordinates (u, v) ∈ [−1, 1]² (u along the
    box's width, v along its height) that belong to `shape`; each shape reaches
    all four sides of the square."""
    if shape == "ship":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape in ("ellipse", "tank"):
        return u * u + v * v <= 1
    if shape == "arrow":
        taper = 1 - (1 - _ARROW_TIP) * (u - _ARROW_SHOULDER) / (1 - _ARROW_SHOULDER)
        head = (u >= _ARROW_NECK) & (u <= 1) & (np.abs(v) <= np.minimum(1.0, taper))
        shaft = (u >= -1) & (u < _ARROW_NECK) & (np.abs(v) <= _ARROW_SHAFT)
        return head | shaft
    raise ValueError(f"Unknown shape {shape!r}; known: {ROTATED_SHAPE_NAMES}.")


def rasterize_rbox_shape(shape, rbox, height, width):
    """(H, W) bool: the pixels whose centre (j + 0.5, i + 0.5) lies in `shape` fitted
    to `rbox` (cx, cy, w, h, angle) in pixels / radians (clockwise on screen)."""
    cx, cy, w, h, angle = (float(v) for v in rbox)
    cos, sin = np.cos(angle), np.sin(angle)
    reach_x = abs(w / 2 * cos) + abs(h / 2 * sin)
    reach_y = abs(w / 2 * sin) + abs(h / 2 * cos)
    x0, x1 = max(int(np.floor(cx - reach_x)), 0), min(int(np.ceil(cx + reach_x)) + 1, width)
    y0, y1 = max(int(np.floor(cy - reach_y)), 0), min(int(np.ceil(cy + reach_y)) + 1, height)
    mask = np.zeros((height, width), bool)
    if x1 <= x0 or y1 <= y0:
        return mask
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    dx, dy = xs - cx, ys - cy
    u = (dx * cos + dy * sin) / (w / 2)
    v = (-dx * sin + dy * cos) / (h / 2)
    mask[y0:y1, x0:x1] = shape_inside(shape, u, v)
    return mask


def _draw_rbox(rng, shape, height, width, min_size, max_size):
    """A random rbox for `shape` wholly inside the image, or None if it does not fit."""
    low, high = _ASPECT_RANGES[shape]
    length = rng.uniform(min_size, max_size)
    if shape == "tank":
        length, angle = length * 0.6, 0.0
    else:
        angle = rng.uniform(-np.pi / 2, np.pi / 2)
    w = length
    h = max(length / rng.uniform(low, high), min(_MIN_THICKNESS, length))
    reach_x = abs(w / 2 * np.cos(angle)) + abs(h / 2 * np.sin(angle))
    reach_y = abs(w / 2 * np.sin(angle)) + abs(h / 2 * np.cos(angle))
    if 2 * reach_x + 2 > width or 2 * reach_y + 2 > height:
        return None
    cx = rng.uniform(reach_x + 1, width - reach_x - 1)
    cy = rng.uniform(reach_y + 1, height - reach_y - 1)
    return np.array([cx, cy, w, h, angle], np.float64)


def _contrasting_colour(rng, image, mask):
    under = image[mask].mean(axis=0)
    colour = rng.uniform(0, 255, 3)
    for _ in range(_TRIES):
        if np.abs(colour - under).sum() >= _MIN_CONTRAST:
            break
        colour = rng.uniform(0, 255, 3)
    return colour


def draw_rotated_sample(rng, height, width, num_classes=3, max_objects=6, min_objects=1, min_size=None, max_size=None):
    """One image: `(image (H, W, 3) uint8 RGB, boxes (N, 5) float32 le90 rboxes, labels (N,) int32)`.

    Boxes are `(cx, cy, w, h, angle)` in pixels (pixel (i, j) covers
    [j, j+1) × [i, i+1)) and radians, w ≥ h, angle in [−π/2, π/2) (the le90
    regularisation of `DotaSource`; a tank's square has angle −π/2).
    """
    if not 1 <= num_classes <= len(ROTATED_SHAPE_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(ROTATED_SHAPE_NAMES)}], got {num_classes}.")
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"Need 0 <= min_objects <= max_objects, got {min_objects} and {max_objects}.")
    short = min(height, width)
    min_size = min_size or max(12, short // 6)
    max_size = max_size or max(min_size + 1, short // 2)
    image = _background(rng, height, width)
    occupied = np.zeros((height, width), np.uint8)
    boxes, labels = [], []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        label = int(rng.integers(num_classes))
        shape = ROTATED_SHAPE_NAMES[label]
        for _ in range(_TRIES):
            rbox = _draw_rbox(rng, shape, height, width, min_size, max_size)
            if rbox is None:
                continue
            mask = rasterize_rbox_shape(shape, rbox, height, width)
            if mask.any() and not occupied[mask].any():
                break
        else:
            continue
        image[mask] = _contrasting_colour(rng, image, mask) * rng.uniform(0.85, 1.15)
        occupied |= cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
        boxes.append(rbox)
        labels.append(label)
    boxes = regularize_le90_numpy(np.array(boxes).reshape(-1, 5))
    return np.clip(image, 0, 255).astype(np.uint8), boxes, np.array(labels, np.int32)


class SyntheticRotatedSource(DetectionSource):
    """`num_images` generated rotated-detection images, reproducible from `seed`, with `DotaSource`'s interface.

    `annotations(image_id)` gives `boxes` (N, 5) float32 le90 rboxes,
    `polygons` (N, 8) float32 (their corners, `rboxes_to_polygons`) and
    `labels` (N,) int32; `rect_labels` lists the labels annotated by
    axis-aligned boxes (the tank, when `num_classes` includes it).

    Args:
        num_images: dataset size.
        image_size: `(height, width)`, or `((min_h, max_h), (min_w, max_w))`
            for images of varying size.
        num_classes: how many of `ROTATED_SHAPE_NAMES` to use (1–4).
        max_objects, min_objects: objects per image are uniform in
            [min_objects, max_objects] before placement (an object that does
            not fit without touching another is left out).
        min_size, max_size: object length range in pixels (default: a sixth
            and a half of the shorter image side).
        seed: the dataset is a pure function of it.

    Images are drawn on first use and kept (≈ H·W·3 bytes each).
    """

    def __init__(self, num_images, image_size=(256, 256), num_classes=3, seed=0, max_objects=6, min_objects=1,
                 min_size=None, max_size=None):
        super().__init__()
        if num_images < 1:
            raise ValueError(f"num_images must be positive, got {num_images}.")
        if not 1 <= num_classes <= len(ROTATED_SHAPE_NAMES):
            raise ValueError(f"num_classes must be in [1, {len(ROTATED_SHAPE_NAMES)}], got {num_classes}.")
        self.seed = seed
        self.image_size = image_size
        self.max_objects, self.min_objects = max_objects, min_objects
        self.min_size, self.max_size = min_size, max_size
        self.image_ids = list(range(num_images))
        self.image_names = [f"synthetic_{i:05d}" for i in self.image_ids]
        self.category_ids = list(range(num_classes))
        self.class_names = list(ROTATED_SHAPE_NAMES[:num_classes])
        self.rect_labels = [i for i, name in enumerate(self.class_names) if name in RECT_SHAPE_NAMES]
        self._cache = {}

    def _draw(self, image_id):
        if image_id not in self._cache:
            rng = np.random.default_rng([self.seed, image_id])
            height, width = draw_image_size(rng, self.image_size)
            self._cache[image_id] = draw_rotated_sample(
                rng, height, width, self.num_classes, self.max_objects, self.min_objects, self.min_size, self.max_size
            )
        return self._cache[image_id]

    def load_image(self, image_id):
        return self._draw(image_id)[0].copy()

    def annotations(self, image_id, with_masks=None):
        """`{"boxes": (N, 5) le90 rboxes, "polygons": (N, 8), "labels": (N,) int32}` (copies)."""
        if with_masks:
            raise ValueError("SyntheticRotatedSource has rotated boxes only, no masks.")
        _, boxes, labels = self._draw(image_id)
        return {"boxes": boxes.copy(), "polygons": rboxes_to_polygons(boxes), "labels": labels.copy()}
