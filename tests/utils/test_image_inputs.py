"""Image files as `predict` inputs: paths, directories, glob patterns, http(s) URLs and lists mixing them with
arrays."""

import cv2
import numpy as np
import pytest

from keras_rtmdet.utils.image_io import expand_image_paths
from keras_rtmdet.utils.image_io import read_image
from keras_rtmdet.utils.image_io import read_image_inputs
from tests.test_case import serving

pytestmark = pytest.mark.backend_independent


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for name, size in (("b.png", (20, 30)), ("a.png", (24, 16)), ("c.jpg", (8, 8))):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / name), image[..., ::-1])  # written from RGB
        images[name] = image
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, images


def test_a_path_a_directory_a_pattern_and_a_mixed_list(folder):
    path, images = folder
    one, paths = read_image_inputs(str(path / "b.png"))
    assert paths == [str(path / "b.png")] and len(one) == 1 and np.array_equal(one[0], images["b.png"])
    every, _ = read_image_inputs(path)  # a directory: its images, sorted by name
    assert [image.shape[:2] for image in every] == [(24, 16), (20, 30), (8, 8)]
    pattern, _ = read_image_inputs(str(path / "*.png"))
    assert [image.shape[:2] for image in pattern] == [(24, 16), (20, 30)]
    array = np.zeros((5, 5, 3), np.uint8)
    mixed, paths = read_image_inputs([array, str(path / "a.png")])
    assert mixed[0] is array and np.array_equal(mixed[1], images["a.png"])
    assert paths == [None, str(path / "a.png")]


def test_arrays_alone_are_left_as_they_are():
    batch = np.zeros((2, 4, 4, 3), np.uint8)
    assert read_image_inputs(batch) == (batch, None)
    listed = [batch[0]]
    assert read_image_inputs(listed) == (listed, None)


def test_paths_that_yield_no_image_are_named(folder, tmp_path):
    path, _ = folder
    with pytest.raises(ValueError, match="matches no file"):
        read_image_inputs(str(path / "*.bmp"))
    with pytest.raises(ValueError, match="missing.png: no such file"):
        read_image_inputs([str(path / "a.png"), str(path / "missing.png")])
    with pytest.raises(ValueError, match="Cannot read image .*notes.txt"):
        read_image_inputs(str(path / "notes.txt"))
    files, problems = expand_image_paths([str(path / "*.jpg"), str(path / "*.gif")])
    assert [f.rsplit("/", 1)[-1] for f in files] == ["c.jpg"] and "matches no file" in problems[0][1]


def test_an_image_url_is_downloaded_and_decoded(folder):
    path, images = folder
    with serving(path) as base:
        url = f"{base}/b.png"
        assert expand_image_paths([url]) == ([url], [])
        arrays, paths = read_image_inputs(url)
        assert paths == [url] and np.array_equal(arrays[0], images["b.png"])
        with pytest.raises(ValueError, match=f"Cannot read image {base}/gone.png: the download failed: HTTP 404"):
            read_image(f"{base}/gone.png")
        with pytest.raises(ValueError, match=f"Cannot read image {base}/notes.txt: .* not an image"):
            read_image(f"{base}/notes.txt")
