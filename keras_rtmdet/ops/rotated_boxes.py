"""Rotated-box geometry in `keras.ops`: decoding, le90 angles, corners, exact IoU (and the corners in numpy).

A rotated box ("rbox") is `(cx, cy, w, h, angle)` in pixels and radians, in
image coordinates (y down): a positive angle turns the width axis from +x
towards +y, i.e. clockwise on screen (MMRotate's convention). `le90` boxes
have the angle in [−π/2, π/2) (and, once regularised, w ≥ h).

`rotated_iou` is exact (edge clipping with Green's theorem, no vertex sort;
spec `rtmdet-rotated-and-mmyolo.md` §5.3), differentiable almost everywhere,
and gives finite values and gradients for identical, touching, nested and
degenerate boxes. Each crossing of two edges is computed once and bounds both
edges, so float32 stays within 1e-6 of a float64 clip for near-identical,
nearly parallel, thin and large boxes too.
"""

import math

import numpy as np
from keras import ops

# mmrotate's `rbbox_overlaps` clamps sizes and centres before mmcv's IoU.
MIN_IOU_SIZE = 1e-3
MAX_IOU_CENTER = 1e7
# Edges whose directions differ by less than this sine are parallel (float32's
# cos(π/2) is 4.4e-8); parallel lines closer than this fraction of the pair's
# extent coincide (float32 places both to about 1e-7 of it).
_PARALLEL_SINE = 1e-7
_COINCIDENT_FRACTION = 1e-6


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


def _iou_parts(boxes):
    """(cx, cy, w, h, angle) with mmrotate's guards: sizes ≥ 1e-3, centres within ±1e7."""
    boxes = ops.cast(boxes, "float32")
    cx, cy = (ops.clip(boxes[..., i], -MAX_IOU_CENTER, MAX_IOU_CENTER) for i in (0, 1))
    w, h = (ops.maximum(boxes[..., i], MIN_IOU_SIZE) for i in (2, 3))
    return cx, cy, w, h, boxes[..., 4]


# Corner k of a rectangle as (±u, ±v), and edge k's direction from corner k to corner k+1.
_CORNER_SIGNS = ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0))
_EDGE_ALONG = ((-1.0, 0.0), (0.0, -1.0), (1.0, 0.0), (0.0, 1.0))


def _rectangle_edges(center, half_width, half_height, cos, sin):
    """Edge k of a rectangle, k = 0…3, counter-clockwise (interior on the left; rbox2qbox reversed).

    Edges run along −u, −v, +u, +v, on the sides at +h/2, −w/2, −h/2, +w/2 of
    the rectangle's axes u = (cos, sin), v = (−sin, cos).
    Returns (start x, start y, unit direction x, y, length), each (4, …).
    """
    start_x, start_y, dir_x, dir_y, length = [], [], [], [], []
    for (su, sv), (au, av) in zip(_CORNER_SIGNS, _EDGE_ALONG):
        start_x.append(center[0] + su * half_width * cos - sv * half_height * sin)
        start_y.append(center[1] + su * half_width * sin + sv * half_height * cos)
        dir_x.append(au * cos - av * sin)
        dir_y.append(au * sin + av * cos)
        length.append(2.0 * (abs(au) * half_width + abs(av) * half_height))
    return tuple(ops.stack(v, axis=0) for v in (start_x, start_y, dir_x, dir_y, length))


def _along_axis(x, y, axis):
    """(x, y) · axis for an axis-aligned unit vector `axis` of Python numbers (no multiply by 0 or ±1)."""
    if axis[0]:
        return x if axis[0] > 0 else -x
    return y if axis[1] > 0 else -y


def _intersection_area(w1, h1, center2, w2, h2, cos2, sin2):
    """Area of rectangle P ∩ rectangle Q, in P's frame (P = [−w1/2, w1/2] × [−h1/2, h1/2]).

    Green's theorem over the boundary of P ∩ Q: each edge of P keeps the part
    inside Q and each edge of Q the part inside P (Liang–Barsky clipping, no
    vertex sort), and the area is Σ ½·cross(start, direction)·kept length.
    P's edge i and Q's edge k cross at one point X_ik, computed once and used
    as the clip bound of both edges: for nearly parallel edges X_ik is badly
    conditioned along the edges, but the same X on both sides leaves only a
    second-order area error (clipping each edge on its own placed two copies
    of X apart and lost up to 2.4e-4 of the IoU of near-identical boxes).
    Parallel edges bound nothing, or drop an edge that lies outside; a line
    shared by both rectangles is counted once, by P's edge when both run the
    same way. P's edges are taken one at a time against Q's four (arrays
    (4, …) over Q's edges), which bounds the memory to a few floats per pair
    and edge.
    """
    qx, qy, qdx, qdy, q_len = _rectangle_edges(center2, w2 / 2.0, h2 / 2.0, cos2, sin2)
    half = (w1 / 2.0, h1 / 2.0)
    extent = ops.abs(center2[0]) + ops.abs(center2[1]) + w1 + h1 + w2 + h2
    # A crossing this far out lies beyond both rectangles; clamped there, it still falls outside Q's edge.
    reach = 4.0 * extent
    q_low, q_high = ops.zeros_like(q_len), q_len
    p_area = 0.0
    for (su, sv), direction in zip(_CORNER_SIGNS, _EDGE_ALONG):
        p_len = 2.0 * (half[0] if direction[0] else half[1])
        offset_x, offset_y = su * half[0] - qx, sv * half[1] - qy
        # Q's inward normal is its direction turned by +90°: (−qdy, qdx); P's likewise.
        sine = _along_axis(-qdy, qdx, direction)
        cosine = _along_axis(qdx, qdy, direction)
        depth = qdx * offset_y - qdy * offset_x  # P's edge start inside Q's side k
        q_depth = _along_axis(-offset_y, offset_x, direction)  # Q's edge start inside P's side
        enters = sine > _PARALLEL_SINE
        parallel = ops.abs(sine) <= _PARALLEL_SINE
        coincident = ops.logical_and(parallel, ops.abs(depth) <= _COINCIDENT_FRACTION * extent)
        along_p = ops.clip(-depth / ops.where(parallel, 1.0, sine), -reach, p_len + reach)
        along_q = offset_x * qdx + offset_y * qdy + along_p * cosine
        # P's edge: entering bounds below, leaving above; parallel and outside, it is dropped.
        # Boolean logic, not a `where` of booleans: ONNX Runtime has no boolean `Where` (jax2onnx writes one).
        inside = ops.logical_or(
            ops.logical_and(coincident, cosine > 0), ops.logical_and(ops.logical_not(coincident), depth >= 0)
        )
        p_in = ops.logical_and(parallel, inside)
        p_lower = ops.logical_or(enters, p_in)
        p_bound = ops.where(parallel, -reach, along_p)
        # `amax` / `amin`: Keras' torch `max` / `min` inspect their result in a way a captured graph cannot trace.
        low = ops.maximum(ops.amax(ops.where(p_lower, p_bound, 0.0), axis=0), 0.0)
        high = ops.minimum(ops.amin(ops.where(p_lower, p_len, p_bound), axis=0), p_len)
        start_cross_direction = _along_axis(-sv * half[1], su * half[0], direction)
        p_area = p_area + start_cross_direction * ops.maximum(high - low, 0.0)
        # Q's edges: the same crossings, entered where P's edge leaves.
        q_in = ops.logical_and(parallel, ops.logical_and(ops.logical_not(coincident), q_depth >= 0))
        q_lower = ops.logical_or(ops.logical_not(ops.logical_or(enters, parallel)), q_in)
        q_bound = ops.where(parallel, -reach, along_q)
        q_low = ops.maximum(q_low, ops.where(q_lower, q_bound, 0.0))
        q_high = ops.minimum(q_high, ops.where(q_lower, q_len, q_bound))
    q_area = ops.sum((qx * qdy - qy * qdx) * ops.maximum(q_high - q_low, 0.0), axis=0)
    return 0.5 * (p_area + q_area)


def aligned_rotated_iou(boxes1, boxes2, eps=1e-6):
    """IoU of rbox pairs, broadcasting (..., 5) with (..., 5) → (...).

    Sizes are clamped to ≥ 1e-3 px and centres to ±1e7 first (MMRotate's
    `rbbox_overlaps` guards). The intersection is computed in the first
    box's own frame (its centre at the origin, its axes along x and y), so
    float32 keeps the precision of the boxes, not of their position in the
    image. IoU = I / max(A1 + A2 − I, eps); disjoint pairs give exactly 0.
    Within 1e-5 of a float64 polygon clip for near-identical, nearly
    parallel, thin and large boxes alike.
    """
    x1, y1, w1, h1, t1 = _iou_parts(boxes1)
    x2, y2, w2, h2, t2 = _iou_parts(boxes2)
    cos1, sin1 = ops.cos(t1), ops.sin(t1)
    dx, dy = x2 - x1, y2 - y1
    center2 = (cos1 * dx + sin1 * dy, cos1 * dy - sin1 * dx)
    turn = t2 - t1
    inter = _intersection_area(w1, h1, center2, w2, h2, ops.cos(turn), ops.sin(turn))
    area1, area2 = w1 * h1, w2 * h2
    inter = ops.clip(inter, 0.0, ops.minimum(area1, area2))
    return inter / ops.maximum(area1 + area2 - inter, eps)


def rotated_iou(boxes1, boxes2, eps=1e-6):
    """IoU of every pair: (..., N, 5) × (..., M, 5) → (..., N, M) (see `aligned_rotated_iou`).

    Memory is about 16 floats per pair and intermediate; chunk large sets.
    """
    return aligned_rotated_iou(boxes1[..., :, None, :], boxes2[..., None, :, :], eps=eps)


def rboxes_to_polygons(boxes):
    """MMRotate's rbox2qbox in numpy: (N, 5) rboxes → (N, 8) float32 corners c+u+v, c+u−v, c−u−v, c−u+v.

    u = (w/2)(cosθ, sinθ), v = (h/2)(−sinθ, cosθ); the order of `rbox_corners`, on the host (files, drawing).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(f"Expected rboxes of shape (N, 5), got {boxes.shape}.")
    cx, cy, w, h, t = boxes.T
    cos, sin = np.cos(t), np.sin(t)
    u = np.stack([w / 2 * cos, w / 2 * sin], axis=1)
    v = np.stack([-h / 2 * sin, h / 2 * cos], axis=1)
    c = np.stack([cx, cy], axis=1)
    corners = np.stack([c + u + v, c + u - v, c - u - v, c - u + v], axis=1)
    return corners.reshape(-1, 8).astype(np.float32)
