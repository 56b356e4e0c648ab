"""An independent rotated IoU for the tests: Sutherland–Hodgman polygon clipping in float64 numpy."""

import numpy as np


def rbox_polygon(box):
    """(4, 2) corners of (cx, cy, w, h, angle), counter-clockwise in pixel coordinates."""
    cx, cy, w, h, t = (float(v) for v in box)
    c, s = np.cos(t), np.sin(t)
    u = np.array([w / 2 * c, w / 2 * s])
    v = np.array([-h / 2 * s, h / 2 * c])
    center = np.array([cx, cy])
    return np.array([center + u + v, center - u + v, center - u - v, center + u - v])


def _inside(point, a, b):
    return (b[0] - a[0]) * (point[1] - a[1]) - (b[1] - a[1]) * (point[0] - a[0]) >= 0


def _intersection(p, q, a, b):
    d1, d2 = p - q, a - b
    t = ((p[0] - a[0]) * d2[1] - (p[1] - a[1]) * d2[0]) / (d1[0] * d2[1] - d1[1] * d2[0])
    return p - t * d1


def clip_polygon(subject, clipper):
    """The part of polygon `subject` inside convex, counter-clockwise `clipper`."""
    out = list(subject)
    for i in range(len(clipper)):
        a, b = clipper[i], clipper[(i + 1) % len(clipper)]
        points, out = out, []
        if not points:
            break
        previous = points[-1]
        for current in points:
            if _inside(current, a, b):
                if not _inside(previous, a, b):
                    out.append(_intersection(previous, current, a, b))
                out.append(current)
            elif _inside(previous, a, b):
                out.append(_intersection(previous, current, a, b))
            previous = current
    return np.array(out)


def polygon_area(points):
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def rotated_iou_oracle(box1, box2):
    inter = max(polygon_area(clip_polygon(rbox_polygon(box1), rbox_polygon(box2))), 0.0)
    return inter / (box1[2] * box1[3] + box2[2] * box2[3] - inter)
