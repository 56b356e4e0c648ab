"""Box arithmetic in `keras.ops`. Boxes are xyxy in pixels unless named otherwise."""

from keras import ops


def distance_to_boxes(points, distances, max_shape=None):
    """Decode (left, top, right, bottom) distances from points into xyxy boxes.

    Args:
        points: (..., 2) point coordinates (x, y).
        distances: (..., 4) distances, same leading shape.
        max_shape: optional (height, width); boxes are clamped to
            [0, width] × [0, height] (mmdet's `distance2bbox`).

    Returns: (..., 4) boxes (x1, y1, x2, y2).
    """
    x, y = points[..., 0], points[..., 1]
    x1 = x - distances[..., 0]
    y1 = y - distances[..., 1]
    x2 = x + distances[..., 2]
    y2 = y + distances[..., 3]
    if max_shape is not None:
        height, width = max_shape
        x1 = ops.clip(x1, 0.0, float(width))
        x2 = ops.clip(x2, 0.0, float(width))
        y1 = ops.clip(y1, 0.0, float(height))
        y2 = ops.clip(y2, 0.0, float(height))
    return ops.stack([x1, y1, x2, y2], axis=-1)


def box_area(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def pairwise_iou(boxes_a, boxes_b, eps=1e-6):
    """IoU of every pair: (..., N, 4) × (..., M, 4) → (..., N, M).

    Areas are `(x2 − x1)(y2 − y1)` (no legacy +1); the union is clamped to
    at least `eps` so degenerate boxes give IoU 0 rather than NaN.
    """
    a = boxes_a[..., :, None, :]
    b = boxes_b[..., None, :, :]
    iw = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    union = box_area(a) + box_area(b) - inter
    return inter / ops.maximum(union, eps)
