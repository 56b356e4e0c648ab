"""Ground truth beside prediction: the picture of one validation image that shows what a model got right."""

import cv2
import numpy as np

from keras_rtmdet.utils.drawing import draw_detections

TITLE_HEIGHT = 22
GAP = 6


def draw_ground_truth_and_prediction(image, ground_truth, prediction, class_names=None, min_side=320):
    """Two panels side by side: the ground truth (left) and the model's detections (right).

    Small images are enlarged (bilinear; boxes and masks with them) until their
    shorter side is `min_side`, so labels stay readable on a 160-pixel image.

    Args:
        image: (H, W, 3) uint8 RGB.
        ground_truth: `{"boxes": (N, 4) xyxy or (N, 5) (cx, cy, w, h, angle) px, "labels": (N,)}`,
            optionally `"masks"` (N, H, W), as a `DetectionSource.annotations` gives.
        prediction: `{"boxes": (K, 4 | 5), "scores": (K,), "labels": (K,)}`, optionally `"masks"` (K, H, W).
        class_names: class index → name.
        min_side: the shorter side of each panel at least, in pixels.

    Returns: an (H' + 22, 2 W' + 6, 3) uint8 RGB image, each panel titled.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    scale = max(1.0, min_side / max(1, min(height, width)))
    size = (int(round(width * scale)), int(round(height * scale)))
    enlarged = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if scale > 1 else image.copy()
    panels = []
    for title, drawn in (("ground truth", ground_truth), ("prediction", prediction)):
        masks = drawn.get("masks")
        if masks is not None:
            masks = _scale_masks(masks, size)
        panel = draw_detections(
            enlarged,
            _scale_boxes(drawn["boxes"], scale),
            drawn.get("scores"),
            drawn["labels"],
            class_names,
            font_scale=0.45,
            masks=masks,
        )
        panels.append(_titled(panel, f"{title} ({len(drawn['labels'])})"))
    gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)


def _scale_boxes(boxes, scale):
    """xyxy boxes scale whole; rotated ones (cx, cy, w, h, angle) keep their angle."""
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim == 2 and boxes.shape[1] == 5:
        return np.concatenate([boxes[:, :4] * scale, boxes[:, 4:]], axis=1)
    return boxes.reshape(-1, 4) * scale


def _scale_masks(masks, size):
    resized = [cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) for m in np.asarray(masks, np.uint8)]
    return np.stack(resized) if resized else np.zeros((0, size[1], size[0]), np.uint8)


def _titled(panel, title):
    strip = np.full((TITLE_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, title, (4, TITLE_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)
