"""Host-side checks of detection targets, run before they can reach a loss.

One rule set for every entry point: the readers check each image's objects
when they are built (naming the file and annotation), `fit` checks arrays
once before its first step (naming the batch, image and instance). A bad
target here is one that would silently spoil training: a non-finite
coordinate makes every weight NaN, a label outside the head's classes is
read as another class (or fails anonymously), boxes in [0, 1] instead of
pixels give a zero box loss, and a box far outside the image can never be
matched.

The rules are vectorised (`instance_problems`, `normalised_images`), so a
reader checks a whole file at once (`check_file_targets`, COCO train2017's
860k objects in a fraction of a second) and formats a message only for the
first problem. There the scale rule applies to the file: one image whose
only boxes are tiny proves nothing, a file without any box over 1.5 px does.
"""

import numpy as np

# Boxes whose every coordinate is at most this, on an image larger than
# `NORMALISED_MIN_IMAGE` pixels, are taken to be normalised to [0, 1].
NORMALISED_LIMIT = 1.5
NORMALISED_MIN_IMAGE = 32
# A box is "far outside" when it does not reach into the image grown by this
# fraction of its size on every side (boxes a little outside are clipped), and
# by at least `OUTSIDE_MIN_MARGIN` px: a tiny box just past the border, as
# annotation tools leave, is dropped by the readers, not an error.
OUTSIDE_MARGIN = 0.5
OUTSIDE_MIN_MARGIN = 8.0


class TargetError(ValueError):
    """A detection target that cannot be trained on; the message names where it is."""


def _extent(boxes):
    """(N, 4) xyxy extent of xyxy boxes, or of (cx, cy, w, h, angle) rotated boxes."""
    if boxes.shape[-1] == 4:
        return boxes
    cx, cy, w, h, angle = (boxes[:, i] for i in range(5))
    cos, sin = np.abs(np.cos(angle)), np.abs(np.sin(angle))
    half_w = (w * cos + h * sin) / 2
    half_h = (w * sin + h * cos) / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def _as_targets(boxes, labels):
    """(N, C) float64 boxes and (N,) labels from any array-likes (an empty box list becomes (0, 4))."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, np.shape(boxes)[-1] if np.ndim(boxes) else 4)
    return boxes, np.asarray(labels).reshape(-1)


def instance_problems(boxes, labels, num_classes, image_sizes, image_index):
    """The per-instance rules over many images' targets at once, vectorised (a reader's whole file).

    Args:
        boxes: (N, 4) xyxy or (N, 5) (cx, cy, w, h, angle) boxes in their image's pixels.
        labels: (N,) ints; −1 marks padding, which is not checked.
        num_classes: the head's classes.
        image_sizes: (I, 2) (height, width) per image; NaN where unknown (no "far outside" check there).
        image_index: (N,) the image of each instance, in [0, I).

    Returns: dict of (N,) bool masks: `"non_finite"`, `"bad_label"` and `"outside"` (far outside its
    image; only for instances with finite boxes and valid labels).
    """
    boxes, labels = _as_targets(boxes, labels)
    image_sizes = np.asarray(image_sizes, np.float64).reshape(-1, 2)
    real = labels != -1
    finite = np.all(np.isfinite(boxes), axis=1)
    bad_label = real & ((labels < 0) | (labels >= num_classes))
    usable = real & finite & ~bad_label
    extent = _extent(boxes[usable])
    height, width = image_sizes[np.asarray(image_index)[usable]].T
    margin_w = np.maximum(OUTSIDE_MARGIN * (extent[:, 2] - extent[:, 0]), OUTSIDE_MIN_MARGIN)
    margin_h = np.maximum(OUTSIDE_MARGIN * (extent[:, 3] - extent[:, 1]), OUTSIDE_MIN_MARGIN)
    outside = np.zeros(len(boxes), bool)
    outside[usable] = (
        (extent[:, 2] < -margin_w)
        | (extent[:, 3] < -margin_h)
        | (extent[:, 0] > width + margin_w)
        | (extent[:, 1] > height + margin_h)
    )
    return {"non_finite": real & ~finite, "bad_label": bad_label, "outside": outside}


def normalised_images(boxes, labels, num_classes, image_sizes, image_index):
    """(I,) bool: images larger than `NORMALISED_MIN_IMAGE` px whose every usable box lies within `NORMALISED_LIMIT`.

    Arguments as `instance_problems`; an image without usable boxes, or of unknown size, is not flagged.
    """
    boxes, labels = _as_targets(boxes, labels)
    image_sizes = np.asarray(image_sizes, np.float64).reshape(-1, 2)
    usable = (labels != -1) & np.all(np.isfinite(boxes), axis=1) & (labels >= 0) & (labels < num_classes)
    small = np.all(np.abs(_extent(boxes[usable])) <= NORMALISED_LIMIT, axis=1)
    index = np.asarray(image_index)[usable]
    count = np.bincount(index, minlength=len(image_sizes))
    small_count = np.bincount(index, weights=small, minlength=len(image_sizes))
    large_image = np.min(image_sizes, axis=1) > NORMALISED_MIN_IMAGE
    return (count > 0) & (small_count == count) & large_image


def target_problems(boxes, labels, num_classes, image_size, check_scale=True):
    """The problems of one image's targets, as `(instance index or None, message)` pairs, in instance order.

    Args:
        boxes: (N, 4) xyxy or (N, 5) (cx, cy, w, h, angle) boxes in the image's pixels.
        labels: (N,) ints; −1 marks padding, which is not checked.
        num_classes: the head's classes; labels must be in [−1, num_classes).
        image_size: (height, width) the boxes refer to.
        check_scale: look for boxes normalised to [0, 1] (off for relative box formats).

    Returns: a list, empty when every target is usable.
    """
    boxes, labels = _as_targets(boxes, labels)
    height, width = (float(s) for s in image_size)
    index = np.zeros(len(labels), np.int64)
    masks = instance_problems(boxes, labels, num_classes, [(height, width)], index)
    non_finite = np.flatnonzero(masks["non_finite"])
    problems = [(int(i), f"non-finite box coordinates {boxes[i].tolist()}") for i in non_finite]
    for i in np.flatnonzero(masks["bad_label"]):
        problems.append((int(i), f"label {labels[i]} is outside [0, {num_classes}) (the head's {num_classes} classes)"))
    if check_scale and normalised_images(boxes, labels, num_classes, [(height, width)], index)[0]:
        problems.append(
            (
                None,
                f"every box lies within [0, {NORMALISED_LIMIT}] on a {int(height)}x{int(width)} image: the boxes look "
                "normalised to [0, 1]; give them in pixels (or declare a relative bounding_box_format such as "
                "'rel_xyxy')",
            )
        )
    for i in np.flatnonzero(masks["outside"]):
        problems.append(
            (int(i), f"box {np.round(boxes[i], 2).tolist()} lies far outside the {int(height)}x{int(width)} image")
        )
    return sorted(problems, key=lambda p: -1 if p[0] is None else p[0])


def check_targets(boxes, labels, num_classes, image_size, where, check_scale=True):
    """Raise `TargetError` for the first problem of one image's targets (see `target_problems`).

    `where(index)` names instance `index` (e.g. "batch 3, image 1, instance 5"
    or "annotation id 17 of images/a.jpg"); `where(None)` names the image.
    """
    problems = target_problems(boxes, labels, num_classes, image_size, check_scale)
    if problems:
        index, message = problems[0]
        more = f" ({len(problems) - 1} more problem(s) in this image)" if len(problems) > 1 else ""
        raise TargetError(f"{where(index)}: {message}{more}.")


def check_target_batches(boxes, labels, num_classes, image_size, batch_size, check_scale=True):
    """`check_targets` for every image of `fit`'s padded arrays (B, G, 4|5) and (B, G), naming batch, image, instance.

    `batch_size` (of `fit`) turns the row into "batch k, image j"; all images share `image_size`.
    """
    boxes, labels = np.asarray(boxes), np.asarray(labels)
    if boxes.ndim != 3 or labels.ndim != 2 or labels.shape != boxes.shape[:2]:
        raise TargetError(
            f"Targets must be boxes (images, N, {boxes.shape[-1] if boxes.ndim else 4}) and labels (images, N); "
            f"got {boxes.shape} and {labels.shape}."
        )
    batch_size = max(1, int(batch_size or 32))
    for row in _rows_with_problems(boxes, labels, num_classes, image_size, check_scale):
        batch, image = divmod(int(row), batch_size)

        def where(index, batch=batch, image=image, row=row):
            image_name = f"batch {batch}, image {image} (row {row} of the targets)"
            return image_name if index is None else f"{image_name}, instance {index}"

        check_targets(boxes[row], labels[row], num_classes, image_size, where, check_scale)


def _rows_with_problems(boxes, labels, num_classes, image_size, check_scale):
    """Indices of the images of (B, G, 4|5) / (B, G) targets that `target_problems` would fault, found vectorised."""
    rows, per_row = labels.shape
    image_index = np.repeat(np.arange(rows), per_row)
    sizes = np.tile(np.asarray(image_size, np.float64), (rows, 1))
    flat_boxes, flat_labels = boxes.reshape(rows * per_row, boxes.shape[-1]), labels.reshape(-1)
    masks = instance_problems(flat_boxes, flat_labels, num_classes, sizes, image_index)
    faulty = np.zeros(rows, bool)
    faulty[image_index[masks["non_finite"] | masks["bad_label"] | masks["outside"]]] = True
    if check_scale:
        faulty |= normalised_images(flat_boxes, flat_labels, num_classes, sizes, image_index)
    return np.flatnonzero(faulty)


def check_file_targets(boxes, labels, num_classes, image_sizes, image_index, where, check_scale=True):
    """The rules over a reader's whole file: raise `TargetError` for its first faulty object, or if it looks normalised.

    Args: as `instance_problems`; `where(instance, image)` names object `instance` (an index into
    `boxes`) of image `image`, or the image itself when `instance` is None.

    The scale rule is applied to the file as a whole: a file whose every image looks normalised is an
    error; images of a file in pixels whose few boxes are tiny prove nothing, and are returned.

    Returns: (J,) indices of the images that look normalised on their own (for a warning).
    """
    boxes, labels = _as_targets(boxes, labels)
    image_sizes = np.asarray(image_sizes, np.float64).reshape(-1, 2)
    image_index = np.asarray(image_index, np.int64)
    masks = instance_problems(boxes, labels, num_classes, image_sizes, image_index)
    faulty = np.flatnonzero(masks["non_finite"] | masks["bad_label"] | masks["outside"])
    if faulty.size:
        image = image_index[faulty[0]]
        members = np.flatnonzero(image_index == image)
        try:
            check_targets(
                boxes[members],
                labels[members],
                num_classes,
                image_sizes[image],
                lambda k: where(None if k is None else int(members[k]), int(image)),
                check_scale=False,
            )
        except TargetError as error:
            raise TargetError(f"{error} {faulty.size} object(s) of the file fail these checks.") from None
    if not check_scale:
        return np.zeros(0, np.int64)
    flagged = normalised_images(boxes, labels, num_classes, image_sizes, image_index)
    usable = (labels != -1) & np.all(np.isfinite(boxes), axis=1)
    checked = np.bincount(image_index[usable], minlength=len(image_sizes)) > 0
    checked &= np.min(image_sizes, axis=1) > NORMALISED_MIN_IMAGE
    if flagged.any() and flagged[checked].all():
        first = int(np.flatnonzero(flagged)[0])
        raise TargetError(
            f"{where(None, first)}: every box of the file ({int(flagged.sum())} image(s) larger than "
            f"{NORMALISED_MIN_IMAGE} px) lies within [0, {NORMALISED_LIMIT}]: the boxes look normalised to [0, 1]; "
            "give them in pixels."
        )
    return np.flatnonzero(flagged)
