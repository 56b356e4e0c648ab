"""Reading and writing image files with OpenCV, in RGB order.

cv2 works in BGR; these helpers convert at the file boundary so the rest of
the package sees (H, W, 3) uint8 RGB arrays only. An http(s) URL reads as
a file does: downloaded into memory and decoded.
"""

import glob
import os
import urllib.error
import urllib.parse
import urllib.request

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
URL_SCHEMES = ("http", "https")
DOWNLOAD_TIMEOUT_S = 30
MAX_DOWNLOAD_BYTES = 100 << 20


class ImageReadError(ValueError):
    """An image file that cannot be read: `path` names it, `reason` says why."""

    def __init__(self, path, reason):
        super().__init__(f"Cannot read image {path}: {reason}.")
        self.path, self.reason = path, reason


def is_url(path):
    """Whether `path` is an http(s) URL (an image there is downloaded, not opened)."""
    return isinstance(path, str) and urllib.parse.urlsplit(path).scheme.lower() in URL_SCHEMES


def is_image_url(path):
    """Whether `path` is an http(s) URL whose path ends in an image extension (`IMAGE_EXTENSIONS`)."""
    return is_url(path) and urllib.parse.urlsplit(path).path.lower().endswith(IMAGE_EXTENSIONS)


def read_image(path):
    """Read an image file, or an http(s) URL's image, as an (H, W, 3) uint8 RGB array.

    Grayscale images are expanded to 3 channels and alpha is dropped; 16-bit
    images are reduced to 8 bits (cv2's `IMREAD_COLOR`).

    Raises:
        ImageReadError (a ValueError): naming the file, if it is missing, not
            a file, or cannot be decoded as an image; or the URL, if its
            download fails. OpenCV decodes a JPEG whose entropy-coded middle
            is corrupt with warnings only (libjpeg fills the rest): such a
            file is read, not caught here.
    """
    path = os.fspath(path)
    if is_url(path):
        return _decode(_download(path), path)
    if not os.path.exists(path):
        raise ImageReadError(path, "no such file")
    if not os.path.isfile(path):
        raise ImageReadError(path, "not a file")
    try:
        # np.fromfile + imdecode, because cv2.imread fails on non-ASCII paths
        # on some platforms and says nothing about why.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ImageReadError(path, error.strerror or error) from error
    return _decode(data, path)


def _download(url):
    """The bytes at `url`, as uint8, at most `MAX_DOWNLOAD_BYTES`."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise ImageReadError(url, f"the download failed: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise ImageReadError(url, f"the download failed: {getattr(error, 'reason', error)}") from error
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise ImageReadError(url, f"larger than {MAX_DOWNLOAD_BYTES >> 20} MiB, too large for an image")
    return np.frombuffer(data, np.uint8)


def _decode(data, path):
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(path, "the file is empty, corrupt or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path, image, jpeg_quality=95):
    """Write an (H, W, 3) uint8 RGB array; the format follows the extension.

    Raises:
        ValueError: if the extension is unknown to cv2 or the file cannot be
            written.
    """
    path = os.fspath(path)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}.")
    extension = os.path.splitext(path)[1].lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if extension in (".jpg", ".jpeg") else []
    try:
        ok, encoded = cv2.imencode(extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    except cv2.error as error:
        raise ValueError(f"Cannot encode {path}: {error}") from error
    if not ok:
        raise ValueError(f"Cannot encode {path} as {extension}.")
    try:
        encoded.tofile(path)
    except OSError as error:
        raise ValueError(f"Cannot write {path}: {error.strerror or error}.") from error


def expand_image_paths(paths):
    """Expand directories and glob patterns into their image files.

    Args:
        paths: file and directory paths, or glob patterns (`photos/*.jpg`,
            `**` recursive). Files are kept whatever their extension (a bad
            one fails later, by name), and http(s) URLs as they are; a
            directory yields its files with an `IMAGE_EXTENSIONS` suffix,
            sorted, not recursively; a pattern its matching files, sorted.

    Returns: (files, problems): the file paths in order, and
    `(path, message)` pairs for paths that yield nothing (missing paths,
    directories without images, patterns matching no file).
    """
    files, problems = [], []
    for path in map(os.fspath, paths):
        if is_url(path):
            files.append(path)
        elif not os.path.exists(path) and glob.has_magic(path):
            found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not found:
                problems.append((path, f"The pattern {path} matches no file."))
            files.extend(found)
        elif os.path.isdir(path):
            found = sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, name))
            )
            if not found:
                known = ", ".join(IMAGE_EXTENSIONS)
                problems.append((path, f"Directory {path} holds no image files ({known})."))
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            problems.append((path, f"Cannot read image {path}: no such file or directory."))
    return files, problems


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


def read_image_inputs(images):
    """`images` with its files read: a path (file, directory, glob) or a list holding paths → RGB uint8 arrays.

    Returns: (images, paths): a list of arrays (the paths' images in order, arrays in a list kept as they
    are) and, per array, the file it was read from (None for an array given as one); or `images`
    unchanged and None when it names no file.

    Raises: ValueError naming the first path that yields no image (missing, empty directory, pattern
    matching nothing) or a file that cannot be decoded (`ImageReadError`).
    """
    items = [images] if _is_path(images) else images
    if not isinstance(items, (list, tuple)) or not any(_is_path(item) for item in items):
        return images, None
    arrays, paths = [], []
    for item in items:
        if not _is_path(item):
            arrays.append(item)
            paths.append(None)
            continue
        files, problems = expand_image_paths([item])
        if problems:
            raise ValueError(problems[0][1])
        arrays.extend(read_image(file) for file in files)
        paths.extend(files)
    return arrays, paths
