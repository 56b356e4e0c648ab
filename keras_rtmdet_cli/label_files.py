"""YOLO-style label files of `rtmdet predict --save-txt`: one line per detection, coordinates normalised to [0, 1].

Boxes: `class cx cy w h`; rotated boxes (YOLO OBB): `class x1 y1 x2 y2 x3 y3 x4 y4`, the four corners;
`--save-conf` appends the score. Coordinates are clipped to the image (a label file of an image describes
that image); an image without detections gets an empty file, as a YOLO dataset's background image.
"""

import os

import numpy as np

from keras_rtmdet.ops.rotated_boxes import rboxes_to_polygons

LABELS_DIR = "labels"


def label_lines(boxes, scores, labels, width, height, with_score=False):
    """The label file's lines for (K, 4) xyxy or (K, 5) rotated `boxes` in pixels of a `width` x `height` image."""
    boxes = np.asarray(boxes, np.float64)
    scale = np.array([width, height], np.float64)
    lines = []
    for box, score, label in zip(boxes, scores, labels):
        if len(box) == 5:
            corners = rboxes_to_polygons(box[None].astype(np.float32))[0].reshape(4, 2).astype(np.float64)
            values = np.clip(corners / scale, 0.0, 1.0).reshape(-1)
        else:
            low, high = np.clip(box[:2] / scale, 0.0, 1.0), np.clip(box[2:] / scale, 0.0, 1.0)
            values = np.concatenate([(low + high) / 2, high - low])
        fields = [str(int(label)), *(f"{v:.6f}" for v in values)]
        if with_score:
            fields.append(f"{float(score):.6f}")
        lines.append(" ".join(fields))
    return lines


def write_label_file(out_dir, stem, found, with_score=False):
    """Write `out_dir/labels/<stem>.txt` of `found`, a `Detections` with its image attached; return its path."""
    folder = os.path.join(out_dir, LABELS_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, stem + ".txt")
    height, width = found.image_size
    lines = label_lines(found.boxes, found.scores, found.labels, width, height, with_score)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return path
