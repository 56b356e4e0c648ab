"""Rotated-box geometry in `keras.ops`: decoding, le90 angles, corners, exact IoU.

A rotated box ("rbox") is `(cx, cy, w, h, angle)` in pixels and radians, in
image coordinates (y down): a positive angle turns the width axis from +x
towards +y, i.e. clockwise on screen (MMRotate's convention). `le90` boxes
have the angle in [−π/2, π/2) (and, once regularised, w ≥ h).

`rotated_iou` is exact (edge clipping with Green's theorem, no vertex sort;
spec `rtmdet-rotated-and-mmyolo.md` §5.3), differentiable almost everywhere,
and gives finite values and gradients for identical, touching, nested and
degenerate boxes.
"""

import math

from keras import ops

# mmrotate's `rbbox_overlaps` clamps sizes and centres before mmcv's IoU.
MIN_IOU_SIZE = 1e-3
MAX_IOU_CENTER = 1e7
# Edges whose directions differ by less than this sine are parallel; parallel
# lines closer than this fraction of the rectangle's side coincide.
_PARALLEL_SINE = 1e-5
_COINCIDENT_FRACTION = 1e-5


def norm_angle_le90(angle):
    """`((angle + π/2) mod π) − π/2` with floor-mod, gradient 1 (as torch's `%`)."""
    angle = ops.convert_to_tensor(angle)
    return angle - math.pi * ops.stop_gradient(ops.floor((angle + math.pi / 2) / math.pi))


def regularize_le90(boxes):
    """MMRotate's `regularize_boxes('le90')`: w > h, else swap and add π/2; then the le90 range.

    Args: boxes (..., 5). Returns (..., 5) with w ≥ h and angle in [−π/2, π/2).
    """
    boxes = ops.convert_to_tensor(boxes)
    x, y, w, h, t = (boxes[..., i] for i in range(5))
    wider = w > h
    t = norm_angle_le90(ops.where(wider, t, t + math.pi / 2))
    return ops.stack([x, y, ops.where(wider, w, h), ops.where(wider, h, w), t], axis=-1)


def distance_to_rboxes(points, distances, angles):
    """MMRotate's `distance2obb` (le90): rboxes from a point, rotated distances and an angle.

    Args:
        points: (..., 2) prior points (x, y).
        distances: (..., 4) (left, top, right, bottom) along the box's own
            axes, in pixels.
        angles: (...) raw angles in radians.
    Returns: (..., 5) rboxes; w = l + r and h = t + b are not swapped or
    clamped (they may be negative for an untrained linear head), the angle is
    wrapped to [−π/2, π/2).
    """
    points, distances, angles = (ops.convert_to_tensor(x) for x in (points, distances, angles))
    left, top, right, bottom = (distances[..., i] for i in range(4))
    cos, sin = ops.cos(angles), ops.sin(angles)
    ox, oy = (right - left) / 2.0, (bottom - top) / 2.0
    cx = points[..., 0] + cos * ox - sin * oy
    cy = points[..., 1] + sin * ox + cos * oy
    return ops.stack([cx, cy, left + right, top + bottom, norm_angle_le90(angles)], axis=-1)


def rescale_rboxes(boxes, scale_x, scale_y):
    """MMRotate's `RotatedBoxes.rescale_((scale_x, scale_y))`, reproduced as it is.

    Centres scale by (sx, sy); w and h by the length of their scaled axis;
    the angle becomes `atan2(sx·sinθ, sy·cosθ)`. For the keep-ratio resizes
    of inference sx ≈ sy and the angle barely moves (for strongly
    non-uniform scales MMRotate's angle formula is not the geometric one; it
    is kept for parity).

    Args: boxes (..., 5); scale_x, scale_y broadcastable to (...).
    """
    boxes = ops.convert_to_tensor(boxes)
    scale_x = ops.cast(ops.convert_to_tensor(scale_x), boxes.dtype)
    scale_y = ops.cast(ops.convert_to_tensor(scale_y), boxes.dtype)
    cx, cy, w, h, t = (boxes[..., i] for i in range(5))
    cos, sin = ops.cos(t), ops.sin(t)
    w = w * ops.sqrt(ops.square(scale_x * cos) + ops.square(scale_y * sin))
    h = h * ops.sqrt(ops.square(scale_x * sin) + ops.square(scale_y * cos))
    t = ops.arctan2(scale_x * sin, scale_y * cos)
    return ops.stack([cx * scale_x, cy * scale_y, w, h, t], axis=-1)


def rbox_corners(boxes):
    """MMRotate's `rbox2qbox`: (..., 5) → (..., 4, 2) corners c+u+v, c+u−v, c−u−v, c−u+v.

    u = (w/2)(cosθ, sinθ) is the half-width axis, v = (h/2)(−sinθ, cosθ).
    """
    boxes = ops.convert_to_tensor(boxes)
    cx, cy, w, h, t = (boxes[..., i] for i in range(5))
    cos, sin = ops.cos(t), ops.sin(t)
    ux, uy = w / 2.0 * cos, w / 2.0 * sin
    vx, vy = -h / 2.0 * sin, h / 2.0 * cos
    xs = ops.stack([cx + ux + vx, cx + ux - vx, cx - ux - vx, cx - ux + vx], axis=-1)
    ys = ops.stack([cy + uy + vy, cy + uy - vy, cy - uy - vy, cy - uy + vy], axis=-1)
    return ops.stack([xs, ys], axis=-1)


def rbox_to_xyxy(boxes):
    """The axis-aligned (x1, y1, x2, y2) hull of each rbox, (..., 5) → (..., 4)."""
    corners = rbox_corners(boxes)
    return ops.concatenate([ops.min(corners, axis=-2), ops.max(corners, axis=-2)], axis=-1)


def points_in_rboxes(points, boxes, eps=0.01):
    """MMRotate's `find_inside_points`: which points lie inside which rboxes (eps px from the border).

    Args:
        points: (N, 2) (x, y).
        boxes: (B, G, 5).
    Returns: (B, N, G) bool, |offset along each box axis| ≤ half-size − eps.
    """
    points, boxes = ops.convert_to_tensor(points), ops.convert_to_tensor(boxes)
    dx = points[None, :, None, 0] - boxes[:, None, :, 0]
    dy = points[None, :, None, 1] - boxes[:, None, :, 1]
    t = boxes[:, None, :, 4]
    cos, sin = ops.cos(t), ops.sin(t)
    ox = cos * dx + sin * dy
    oy = -sin * dx + cos * dy
    half_w = boxes[:, None, :, 2] / 2.0 - eps
    half_h = boxes[:, None, :, 3] / 2.0 - eps
    return ops.logical_and(
        ops.logical_and(ox <= half_w, ox >= -half_w), ops.logical_and(oy <= half_h, oy >= -half_h)
    )


def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


def _ccw_corners(cx, cy, w, h, t):
    """Corner xs and ys (…, 4), counter-clockwise in pixel coordinates (interior on the left).

    rbox2qbox's order has a negative signed area; this is its reverse.
    """
    cos, sin = ops.cos(t), ops.sin(t)
    ux, uy = w / 2.0 * cos, w / 2.0 * sin
    vx, vy = -h / 2.0 * sin, h / 2.0 * cos
    xs = ops.stack([cx + ux + vx, cx - ux + vx, cx - ux - vx, cx + ux - vx], axis=-1)
    ys = ops.stack([cy + uy + vy, cy - uy + vy, cy - uy - vy, cy + uy - vy], axis=-1)
    return xs, ys


def _clipped_edge_area(px, py, q, primary):
    """Σ over P's edges of the part inside rectangle Q, as ½·cross(start, end) (Green's theorem).

    P: (…, 4) corner coordinates, counter-clockwise, in the pair's frame.
    Q: (cx, cy, w, h, angle) in that frame. P's corners are moved into Q's
    own frame, where Q is [−w/2, w/2] × [−h/2, h/2] and clipping edge
    p_i + t·d_i (t ∈ [0, 1]) is Liang–Barsky: each side k keeps the t with
    α_k + t·β_k ≥ 0 (α_k the start's distance inside side k). Along a line
    shared by both rectangles the boundary is counted once: by the primary
    polygon's edge, when both run the same way.
    """
    qx, qy, qw, qh, qt = q
    cos, sin = ops.cos(qt)[..., None], ops.sin(qt)[..., None]
    ox, oy = px - qx[..., None], py - qy[..., None]
    lx, ly = cos * ox + sin * oy, cos * oy - sin * ox
    ldx, ldy = ops.roll(lx, -1, axis=-1) - lx, ops.roll(ly, -1, axis=-1) - ly
    d_len2 = ldx * ldx + ldy * ldy
    hw, hh = (qw / 2.0)[..., None], (qh / 2.0)[..., None]
    side_len2 = (qh * qh)[..., None], (qw * qw)[..., None]
    # Q's sides x ≥ −w/2, x ≤ w/2, y ≥ −h/2, y ≤ h/2, with the direction a CCW traversal runs along each.
    sides = (
        (lx + hw, ldx, side_len2[0], ldy < 0),
        (hw - lx, -ldx, side_len2[0], ldy > 0),
        (ly + hh, ldy, side_len2[1], ldx > 0),
        (hh - ly, -ldy, side_len2[1], ldx < 0),
    )
    t_lo, t_hi = 0.0, 1.0
    for alpha, beta, len2, same_way in sides:
        parallel = beta * beta <= (_PARALLEL_SINE**2) * d_len2
        coincident = ops.logical_and(parallel, alpha * alpha <= (_COINCIDENT_FRACTION**2) * len2)
        dropped = ops.logical_and(coincident, ops.logical_not(same_way)) if primary else coincident
        outside = ops.logical_or(
            dropped, ops.logical_and(parallel, ops.logical_and(alpha < 0, ops.logical_not(coincident)))
        )
        bound = -alpha / ops.where(parallel, ops.ones_like(beta), beta)
        crossing = ops.logical_not(parallel)
        t_lo = ops.maximum(t_lo, ops.where(ops.logical_and(crossing, beta > 0), bound, 0.0))
        t_hi = ops.minimum(t_hi, ops.where(ops.logical_and(crossing, beta < 0), bound, 1.0))
        t_hi = ops.where(outside, 0.0, t_hi)
    length = ops.maximum(t_hi - t_lo, 0.0)
    dx, dy = ops.roll(px, -1, axis=-1) - px, ops.roll(py, -1, axis=-1) - py
    return ops.sum(0.5 * _cross(px, py, dx, dy) * length, axis=-1)


def _iou_parts(boxes):
    """(cx, cy, w, h, angle) with mmrotate's guards: sizes ≥ 1e-3, centres within ±1e7."""
    boxes = ops.cast(boxes, "float32")
    cx, cy = (ops.clip(boxes[..., i], -MAX_IOU_CENTER, MAX_IOU_CENTER) for i in (0, 1))
    w, h = (ops.maximum(boxes[..., i], MIN_IOU_SIZE) for i in (2, 3))
    return cx, cy, w, h, boxes[..., 4]


def aligned_rotated_iou(boxes1, boxes2, eps=1e-6):
    """IoU of rbox pairs, broadcasting (..., 5) with (..., 5) → (...).

    Sizes are clamped to ≥ 1e-3 px and centres to ±1e7 first (MMRotate's
    `rbbox_overlaps` guards); both boxes are shifted by the mean of their
    centres so float32 keeps the precision of the boxes, not of their
    position in the image. IoU = I / max(A1 + A2 − I, eps); disjoint pairs
    give exactly 0.
    """
    x1, y1, w1, h1, t1 = _iou_parts(boxes1)
    x2, y2, w2, h2, t2 = _iou_parts(boxes2)
    mx, my = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    box1 = (x1 - mx, y1 - my, w1, h1, t1)
    box2 = (x2 - mx, y2 - my, w2, h2, t2)
    ax, ay = _ccw_corners(*box1)
    bx, by = _ccw_corners(*box2)
    inter = _clipped_edge_area(ax, ay, box2, primary=True) + _clipped_edge_area(bx, by, box1, primary=False)
    area1, area2 = w1 * h1, w2 * h2
    inter = ops.clip(inter, 0.0, ops.minimum(area1, area2))
    return inter / ops.maximum(area1 + area2 - inter, eps)


def rotated_iou(boxes1, boxes2, eps=1e-6):
    """IoU of every pair: (..., N, 5) × (..., M, 5) → (..., N, M) (see `aligned_rotated_iou`).

    Memory is about 16 floats per pair and intermediate; chunk large sets.
    """
    return aligned_rotated_iou(boxes1[..., :, None, :], boxes2[..., None, :, :], eps=eps)
