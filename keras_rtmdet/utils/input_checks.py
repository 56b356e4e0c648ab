"""Checks of user settings and pixels where they enter, shared by the API and the command line.

A setting that would run silently wrong (a threshold of 2, a batch of 0, an
input size the strides do not divide, images in [0, 1] read as [0, 255]
pixels) is refused here with a `ValueError` naming the setting, the rule and
the value given. The checks return the value normalised (Python numbers,
sizes as tuples), so a setting is stored the same whichever way it came in.
Numpy only: no backend is needed.
"""

import math
import numbers

import numpy as np

# The largest stride of every RTMDet variant: a padded input must divide into its grid.
LARGEST_STRIDE = 32
DEFAULT_PIXEL_RANGE = (0, 255)


def is_integer(value):
    """True for Python and numpy integers; False for bools (which `int` would silently take as 0 / 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value, name):
    """`value` as an int ≥ 1; bools, floats (even 3.0) and strings are refused."""
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_number(value, name, low=None, high=None):
    """`value` as a finite float in [low, high] (a bound of None is open)."""
    finite = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if finite and (low is None or value >= low) and (high is None or value <= high):
        return float(value)
    rule = "a finite number"
    if low is not None and high is not None:
        rule += f" in [{low}, {high}]"
    elif low is not None:
        rule += f" ≥ {low}"
    elif high is not None:
        rule += f" ≤ {high}"
    raise ValueError(f"{name} must be {rule}, got {value!r}.")


def check_probability(value, name):
    """`value` as a finite float in [0, 1]."""
    return check_number(value, name, 0, 1)


def check_num_classes(value):
    """`num_classes` as an int ≥ 1."""
    return check_positive_int(value, "num_classes")


def nearest_multiples(side, multiple=LARGEST_STRIDE):
    """The valid sides nearest `side`: the multiples of `multiple` just below (at least one) and above."""
    below = max(multiple, side // multiple * multiple)
    above = max(multiple, -(-side // multiple) * multiple)
    return (below, above) if below != above else (below,)


def _size_suggestion(sides, square):
    """'96 or 128' for a square size, '(96, 640) or (128, 640)' for a pair, from the nearest valid sides."""
    options = [nearest_multiples(s) for s in sides]
    lows = tuple(o[0] for o in options)
    highs = tuple(o[-1] for o in options)
    sizes = [lows] if lows == highs else [lows, highs]
    return " or ".join(str(s[0]) if square else str(s) for s in sizes)


def check_image_size(value, name="image_size"):
    """A model input size as (height, width): positive integers, multiples of 32 (the largest stride).

    Args:
        value: one side (a square input) or a (height, width) pair; ints.
        name: the setting named in the error.

    Returns: (height, width), Python ints.

    Raises: ValueError naming the value and, for a side that is not a
    multiple of 32, the nearest valid sizes.
    """
    square = is_integer(value)
    sides = (value, value) if square else value
    try:
        sides = () if isinstance(value, str) else tuple(sides)
    except TypeError:
        sides = ()
    if len(sides) != 2 or not all(is_integer(s) and s > 0 for s in sides):
        raise ValueError(
            f"{name} must be one positive integer or two (height, width), multiples of "
            f"{LARGEST_STRIDE} (the largest stride); got {value!r}."
        )
    if any(s % LARGEST_STRIDE for s in sides):
        shown = int(sides[0]) if square else tuple(int(s) for s in sides)
        suggestion = _size_suggestion(sides, square)
        nearest = "sizes are" if " or " in suggestion else "size is"
        raise ValueError(
            f"{name} {shown} is not valid: each side must be a multiple of {LARGEST_STRIDE} (the largest "
            f"stride); the nearest valid {nearest} {suggestion}."
        )
    return tuple(int(s) for s in sides)


# The rule of each post-processing setting: value → normalised value, or ValueError.
POSTPROCESS_CHECKS = {
    "score_threshold": lambda v: check_probability(v, "score_threshold"),
    "nms_pre": lambda v: check_positive_int(v, "nms_pre"),
    "iou_threshold": lambda v: check_probability(v, "iou_threshold"),
    "max_detections": lambda v: check_positive_int(v, "max_detections"),
    # Negative keeps the degenerate (zero-size) boxes as well, which random weights give.
    "min_bbox_size": lambda v: check_number(v, "min_bbox_size"),
    "max_candidates": lambda v: check_positive_int(v, "max_candidates"),
}


def check_postprocess_settings(settings, nms_methods):
    """Every post-processing setting of `settings` checked, before any is used.

    Args:
        settings: {name: value}, names among `POSTPROCESS_CHECKS` and `nms_method`.
        nms_methods: the `nms_method` values the model understands.

    Returns: a new dict of the normalised values.

    Raises: ValueError for the first unknown name, else the first bad value.
    """
    known = (*POSTPROCESS_CHECKS, "nms_method")
    unknown = [key for key in settings if key not in known]
    if unknown:
        raise ValueError(f"Unknown post-processing setting {unknown[0]!r}; known: {known}.")
    checked = {}
    for key, value in settings.items():
        if key == "nms_method":
            if value not in nms_methods:
                raise ValueError(f"nms_method must be one of {tuple(nms_methods)}, got {value!r}.")
            checked[key] = value
        else:
            checked[key] = POSTPROCESS_CHECKS[key](value)
    return checked


def check_pixel_range(pixel_range):
    """`pixel_range` as (low, high) finite floats with low < high."""
    try:
        low, high = (check_number(v, "pixel_range") for v in pixel_range)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not low < high:
        raise ValueError(f"pixel_range must be two finite numbers (low, high) with low < high, got {pixel_range!r}.")
    return low, high


def _image_list(images):
    """One (H, W, C) image, a (B, H, W, C) batch or a list of images → a list of arrays."""
    if isinstance(images, (list, tuple)):
        return [np.asarray(image) for image in images]
    array = np.asarray(images)
    return [array] if array.ndim == 3 else list(array)


def _pixel_problem(image, low, high, default_range):
    """What is wrong with one image's (integer or float) pixels, or None."""
    if image.size == 0:
        return None
    if np.issubdtype(image.dtype, np.integer):
        bounds = np.iinfo(image.dtype)
        if low <= bounds.min and bounds.max <= high:
            return None  # every value of the dtype is in range (uint8 in [0, 255]): no pass over the pixels
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        return "contains NaN or infinite pixel values"
    found_min, found_max = float(np.min(image)), float(np.max(image))
    if found_min < low or found_max > high:
        return (
            f"has pixel values in [{found_min:g}, {found_max:g}], outside the declared pixel_range "
            f"({low:g}, {high:g}); pass the range the values span as pixel_range"
        )
    if default_range and np.issubdtype(image.dtype, np.floating) and 0 < found_max <= 1:
        return (
            f"is float with values in [{found_min:g}, {found_max:g}]: it looks like pixels scaled to "
            "[0, 1], not [0, 255]. Pass pixel_range=(0, 1), or multiply the images by 255"
        )
    return None


def check_pixels(images, pixel_range=DEFAULT_PIXEL_RANGE):
    """Raise ValueError unless every image's pixels are finite and inside `pixel_range`.

    Args:
        images: host pixels (numpy or array-likes): one (H, W, C) image, a
            (B, H, W, C) batch or a list of (H, W, C) images of any sizes.
        pixel_range: (low, high) the values are declared to span; default
            (0, 255). With the default, float images whose maximum is in
            (0, 1] are refused as [0, 1]-scaled pixels.

    Returns: `pixel_range` as (low, high) floats.

    Raises: ValueError naming the first bad image's index (and the min / max
    found); TypeError for a non-numeric dtype.
    """
    low, high = check_pixel_range(pixel_range)
    default_range = (low, high) == DEFAULT_PIXEL_RANGE
    for index, image in enumerate(_image_list(images)):
        if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
            raise TypeError(f"Image {index} has dtype {image.dtype}; expected uint8 or real-valued pixels.")
        problem = _pixel_problem(image, low, high, default_range)
        if problem is not None:
            raise ValueError(f"Image {index} {problem}.")
    return low, high
