"""Cut large DOTA images into overlapping patches, as MMRotate's `tools/data/dota/split/img_split.py`.

Windows: on each axis they start at multiples of `step = size − gap`; the
last one is pulled back to end at the border (when there are several). A
window is kept when its in-image area fraction is > `img_rate_thr`; when no
window passes, those within 0.01 of the best fraction are kept. Multi-scale
splits use, per rate r, windows of `int(size / r)` native pixels with gaps
`int(gap / r)` (1024/500 at rates 0.5, 1, 1.5: 2048/1000, 1024/500,
682/333), all scales thresholded together; patches are saved at native size
(the model's resize does the scaling).

Objects: a polygon goes into a window when the fraction of its area inside
the window (not clipped to the image) is ≥ `iof_thr`; it is translated, not
clipped, and written with difficulty 2 when that fraction is < 1.

Patch names: `{stem}__{size}__{x}___{y}`, size the native window width and
(x, y) its top-left corner in the original image.
"""

import math
import os
import re

import numpy as np

from keras_rtmdet.data.dota import list_images
from keras_rtmdet.data.dota import read_dota_annotation
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.image_io import write_image

# The mean colour, BGR as in MMRotate's split configs.
DOTA_PAD_VALUE = (104, 116, 124)

_PATCH_NAME = re.compile(r"^(?P<stem>.+)__(?P<mid>\d+(?:\.\d+)?)__(?P<x>\d+)___(?P<y>\d+)(?:\.[A-Za-z0-9]+)?$")


def _axis_starts(length, size, step):
    count = 1 if length <= size else math.ceil((length - size) / step + 1)
    starts = [step * i for i in range(count)]
    if len(starts) > 1 and starts[-1] + size > length:
        starts[-1] = length - size
    return starts


def patch_windows(width, height, patch_size=1024, gap=200, img_rate_thr=0.6):
    """The sliding windows of one image.

    Args:
        width, height: the image size in pixels.
        patch_size, gap: ints, or equal-length sequences (one per scale; the
            windows of all scales are thresholded together, as MMRotate).
        img_rate_thr: keep windows whose in-image area fraction is > this.
    Returns: (K, 4) int64 `x0, y0, x1, y1` (x1 − x0 = the window size; a
    window may reach past the border), per scale x-major (x0 outer).
    """
    sizes = [patch_size] if np.isscalar(patch_size) else list(patch_size)
    gaps = [gap] if np.isscalar(gap) else list(gap)
    if len(sizes) != len(gaps):
        raise ValueError(f"Got {len(sizes)} patch sizes for {len(gaps)} gaps.")
    if width < 1 or height < 1:
        raise ValueError(f"Image size must be positive, got {width}×{height}.")
    windows = []
    for size, step_gap in zip(sizes, gaps):
        size, step_gap = int(size), int(step_gap)
        if not 0 <= step_gap < size:
            raise ValueError(f"The gap must be in [0, patch size), got size {size} and gap {step_gap}.")
        step = size - step_gap
        for x in _axis_starts(width, size, step):
            for y in _axis_starts(height, size, step):
                windows.append((x, y, x + size, y + size))
    windows = np.asarray(windows, np.int64)
    inside_w = np.clip(windows[:, 2], 0, width) - np.clip(windows[:, 0], 0, width)
    inside_h = np.clip(windows[:, 3], 0, height) - np.clip(windows[:, 1], 0, height)
    rates = inside_w * inside_h / ((windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1]))
    if not (rates > img_rate_thr).any():
        rates = np.where(np.abs(rates - rates.max()) < 0.01, 1.0, rates)
    return windows[rates > img_rate_thr]


def _shoelace(points, count):
    """Signed areas of (P, V, 2) polygons whose first `count` (P,) vertices are used."""
    index = np.arange(points.shape[1])
    following = (index[None] + 1) % np.maximum(count[:, None], 1)
    nxt = np.take_along_axis(points, following[..., None], axis=1)
    cross = points[..., 0] * nxt[..., 1] - points[..., 1] * nxt[..., 0]
    return 0.5 * np.sum(np.where(index[None] < count[:, None], cross, 0.0), axis=1)


def _clip(points, count, axis, bound, keep_above):
    """One Sutherland–Hodgman step: keep the part of each polygon on one side of `x[axis] = bound` (P,)."""
    bound = bound[:, None]
    index = np.arange(points.shape[1])
    valid = index[None] < count[:, None]
    following = (index[None] + 1) % np.maximum(count[:, None], 1)
    nxt = np.take_along_axis(points, following[..., None], axis=1)
    side = points[..., axis] - bound if keep_above else bound - points[..., axis]
    next_side = nxt[..., axis] - bound if keep_above else bound - nxt[..., axis]
    inside, next_inside = side >= 0, next_side >= 0
    crossing = valid & (inside != next_inside)
    t = side / np.where(crossing, side - next_side, 1.0)
    cut = points + t[..., None] * (nxt - points)
    # Each input vertex emits itself (if inside) then the crossing of its edge (if any).
    out = np.stack([points, cut], axis=2).reshape(len(points), -1, 2)
    keep = np.stack([valid & inside, crossing], axis=2).reshape(len(points), -1)
    order = np.argsort(~keep, axis=1, kind="stable")
    count = keep.sum(axis=1)
    width = max(int(count.max(initial=0)), 1)
    return np.take_along_axis(out, order[:, :width, None], axis=1), count


def polygon_window_iof(polygons, windows):
    """Fraction of each polygon's area inside each axis-aligned window (Sutherland–Hodgman clipping).

    Args:
        polygons: (N, 8) pixels `x1 y1 ... x4 y4` (any vertex order; convex
            or not).
        windows: (W, 4) `x0, y0, x1, y1`.
    Returns: (N, W) float64 in [0, 1]; 0 for polygons of area < 1e-6 px²
    (MMRotate divides by the area clamped to 1e-6).
    """
    polygons = np.asarray(polygons, np.float64).reshape(-1, 4, 2)
    windows = np.asarray(windows, np.float64).reshape(-1, 4)
    out = np.zeros((len(polygons), len(windows)))
    if not out.size:
        return out
    lo, hi = polygons.min(axis=1), polygons.max(axis=1)
    hull_overlap = (
        np.minimum(hi[:, None, 0], windows[None, :, 2]) > np.maximum(lo[:, None, 0], windows[None, :, 0])
    ) & (np.minimum(hi[:, None, 1], windows[None, :, 3]) > np.maximum(lo[:, None, 1], windows[None, :, 1]))
    rows, cols = np.nonzero(hull_overlap)
    if not len(rows):
        return out
    points, count = polygons[rows], np.full(len(rows), 4)
    for axis, bound_index, keep_above in ((0, 0, True), (0, 2, False), (1, 1, True), (1, 3, False)):
        points, count = _clip(points, count, axis, windows[cols, bound_index], keep_above)
    four = np.full(len(polygons), 4)
    areas = np.abs(_shoelace(polygons, four))
    out[rows, cols] = np.abs(_shoelace(points, count)) / np.maximum(areas[rows], 1e-6)
    return np.clip(out, 0.0, 1.0)


def split_annotations(polygons, window, iof_thr=0.7):
    """The objects of one window (MMRotate's rule).

    Args:
        polygons: (N, 8) pixels in the original image.
        window: `(x0, y0, x1, y1)`.
        iof_thr: keep objects with in-window area fraction ≥ this.
    Returns: `(indices (K,) int64, polygons (K, 8) float32 translated by
    −(x0, y0), not clipped, truncated (K,) bool)`: truncated objects (fraction
    < 1) are written with difficulty 2.
    """
    window = np.asarray(window, np.float64).reshape(4)
    iof = polygon_window_iof(polygons, window[None])[:, 0]
    return _window_objects(np.asarray(polygons, np.float32).reshape(-1, 8), iof, window, iof_thr)


def _window_objects(polygons, iof, window, iof_thr):
    indices = np.flatnonzero(iof >= iof_thr)
    offset = np.tile(np.asarray(window[:2], np.float32), 4)
    return indices, polygons[indices] - offset, iof[indices] < 1


def patch_name(stem, window):
    """`{stem}__{size}__{x}___{y}` of a window `(x0, y0, x1, y1)`."""
    x0, y0, x1, _ = (int(v) for v in window)
    return f"{stem}__{x1 - x0}__{x0}___{y0}"


def parse_patch_name(name):
    """`(stem, size or rate, x, y)` of a patch name (a path or an extension is allowed).

    MMRotate's `P0003__1024__0___824` gives the native window size as an int
    (1024); DOTA_devkit's `P0003__0.5__0___824` the rate as a float (a
    middle field with a decimal point), its x, y then being in the rescaled
    image.
    """
    base = os.path.basename(os.fspath(name))
    match = _PATCH_NAME.match(base)
    if match is None:
        raise ValueError(f"{name!r} is not a patch name like 'P0003__1024__0___824'.")
    mid = match["mid"]
    return match["stem"], float(mid) if "." in mid else int(mid), int(match["x"]), int(match["y"])


def _format_number(value):
    return np.format_float_positional(np.float32(value), unique=True, trim="0")


def _split_one(stem, image_path, ann_path, out_dir, sizes, gaps, img_rate_thr, iof_thr, pad_value, extension):
    image = read_image(image_path)
    height, width = image.shape[:2]
    if ann_path is not None and os.path.isfile(ann_path):
        ann = read_dota_annotation(ann_path)
    else:
        ann = {"polygons": np.zeros((0, 8), np.float32), "names": [], "difficult": np.zeros(0, np.int32)}
    windows = patch_windows(width, height, sizes, gaps, img_rate_thr)
    iofs = polygon_window_iof(ann["polygons"], windows)
    names = []
    for k, window in enumerate(windows):
        x0, y0, x1, y1 = (int(v) for v in window)
        patch = image[y0:y1, x0:x1]
        if pad_value is not None and patch.shape[:2] != (y1 - y0, x1 - x0):
            padded = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
            padded[...] = np.asarray(pad_value, np.uint8)[::-1]  # BGR → RGB
            padded[: patch.shape[0], : patch.shape[1]] = patch
            patch = padded
        name = patch_name(stem, window)
        write_image(os.path.join(out_dir, "images", name + extension), np.ascontiguousarray(patch))
        indices, polygons, truncated = _window_objects(ann["polygons"], iofs[:, k], window, iof_thr)
        with open(os.path.join(out_dir, "annfiles", name + ".txt"), "w", encoding="utf-8") as f:
            for index, polygon, cut in zip(indices, polygons, truncated):
                coordinates = " ".join(_format_number(v) for v in polygon)
                difficulty = 2 if cut else int(ann["difficult"][index])
                f.write(f"{coordinates} {ann['names'][index]} {difficulty}\n")
        names.append(name)
    return names


def split_dota(
    image_dir,
    ann_dir,
    out_dir,
    rates=(1.0,),
    patch_size=1024,
    gap=200,
    img_rate_thr=0.6,
    iof_thr=0.7,
    pad_value=DOTA_PAD_VALUE,
    extension=".png",
    num_workers=0,
    verbose=True,
):
    """Split every image of a DOTA folder into patches, as MMRotate's img_split.

    Writes `out_dir/images/{stem}__{size}__{x}___{y}.png` and
    `out_dir/annfiles/` with one txt per patch (empty without objects, and
    for every patch when `ann_dir` is None: the test set). Class names are
    copied as written, whatever they are.

    Args:
        image_dir: the original images. ann_dir: their txt files, or None.
        out_dir: created if needed; existing patches are overwritten.
        rates: scales; `(1.0,)` with gap 200 is the SS split, `(0.5, 1.0,
            1.5)` with gap 500 the MS split.
        patch_size, gap: at rate 1 (native: `int(patch_size / rate)`,
            `int(gap / rate)`).
        img_rate_thr, iof_thr: see the module docstring.
        pad_value: BGR colour of the padding of windows reaching past the
            border (MMRotate's (104, 116, 124)), or None for no padding.
        extension: image format of the patches.
        num_workers: processes (0: this one).
        verbose: a rich progress bar when the console is a terminal.
    Returns: the sorted list of patch names written.
    """
    from rich.console import Console
    from rich.progress import Progress

    image_dir, out_dir = os.fspath(image_dir), os.fspath(out_dir)
    if ann_dir is not None and not os.path.isdir(ann_dir):
        raise ValueError(f"Annotation folder {ann_dir} does not exist.")
    sizes = [int(patch_size / rate) for rate in rates]
    gaps = [int(gap / rate) for rate in rates]
    for sub in ("images", "annfiles"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    jobs = []
    for stem, file_name in list_images(image_dir).items():
        ann_path = None if ann_dir is None else os.path.join(os.fspath(ann_dir), stem + ".txt")
        jobs.append(
            (
                stem,
                os.path.join(image_dir, file_name),
                ann_path,
                out_dir,
                sizes,
                gaps,
                img_rate_thr,
                iof_thr,
                pad_value,
                extension,
            )
        )
    names = []
    with Progress(disable=not (verbose and Console().is_terminal)) as progress:
        task = progress.add_task("Splitting DOTA", total=len(jobs))
        if num_workers and num_workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(num_workers) as pool:
                for result in pool.map(_split_one, *zip(*jobs)) if jobs else ():
                    names.extend(result)
                    progress.advance(task)
        else:
            for job in jobs:
                names.extend(_split_one(*job))
                progress.advance(task)
    return sorted(names)
