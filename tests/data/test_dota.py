"""DOTA reader, polygon ↔ rbox conversion and the MMRotate-style image split, on tiny files."""

import math

import cv2
import keras
import numpy as np
import pytest

from keras_rtmdet.data import DOTA_CLASSES
from keras_rtmdet.data import DotaSource
from keras_rtmdet.data import parse_patch_name
from keras_rtmdet.data import patch_windows
from keras_rtmdet.data import polygons_to_rboxes
from keras_rtmdet.data import rboxes_to_polygons
from keras_rtmdet.data import split_annotations
from keras_rtmdet.data import split_dota
from keras_rtmdet.data.dota_split import polygon_window_iof
from keras_rtmdet.ops.rotated_boxes import rbox_corners

PLANE = "10 10 50 10 50 30 10 30 plane 0"
SHIP = "60 40 80 40 80 70 60 70 ship 1"


def write_image(path, height=80, width=100, value=(30, 90, 200)):
    image = np.zeros((height, width, 3), np.uint8)
    image[...] = value
    image[5:15, 5:25] = (250, 10, 10)
    cv2.imwrite(str(path), image[..., ::-1])  # RGB → BGR for cv2
    return image


def write_dota(tmp_path, lines_a=(PLANE, SHIP), lines_b=()):
    images, anns = tmp_path / "images", tmp_path / "labelTxt"
    images.mkdir()
    anns.mkdir()
    write_image(images / "P0001.png")
    write_image(images / "P0002.jpg")
    write_image(images / "P0003.png")  # no annotation file: no objects
    (anns / "P0001.txt").write_text("imagesource:GoogleEarth\ngsd:0.146343590398\n" + "\n".join(lines_a) + "\n")
    (anns / "P0002.txt").write_text("imagesource:GoogleEarth\ngsd:null\n" + "\n".join(lines_b))
    return images, anns


@pytest.mark.backend_independent
def test_reader_parses_headers_difficulty_and_missing_files(tmp_path):
    images, anns = write_dota(tmp_path)
    source = DotaSource(images, anns)
    assert source.image_names == ["P0001", "P0002", "P0003"] and source.image_ids == [0, 1, 2]
    assert source.coco is None and source.num_classes == 15 and source.class_names == list(DOTA_CLASSES)
    ann = source.annotations(0)
    np.testing.assert_array_equal(ann["labels"], [0, 6])
    np.testing.assert_array_equal(ann["difficult"], [0, 1])
    np.testing.assert_allclose(ann["polygons"][0], [10, 10, 50, 10, 50, 30, 10, 30])
    # The 40×20 plane rectangle is (30, 20, 40, 20, 0); the 20×30 ship turns to w=30, h=20 at −π/2.
    np.testing.assert_allclose(ann["boxes"], [[30, 20, 40, 20, 0], [70, 55, 30, 20, -math.pi / 2]], atol=1e-4)
    assert ann["boxes"].dtype == np.float32 and ann["labels"].dtype == np.int32
    assert source.annotations(1)["boxes"].shape == (0, 5) and source.annotations(2)["polygons"].shape == (0, 8)
    image = source.sample(0)["image"]
    assert image.shape == (80, 100, 3) and tuple(image[50, 50]) == (30, 90, 200)  # RGB out
    assert DotaSource(images, anns, filter_empty=True).image_ids == [0]
    assert DotaSource(images).image_ids == [0, 1, 2]  # test set: no annotations at all
    with pytest.raises(ValueError, match="no masks"):
        source.annotations(0, with_masks=True)


@pytest.mark.backend_independent
def test_reader_errors_name_the_file_and_line(tmp_path):
    images, anns = write_dota(tmp_path, lines_b=(PLANE, "1 2 3 4 5 6 7 8 airplane 0"))
    with pytest.raises(ValueError, match=r"P0002.txt, line 4: unknown class 'airplane'"):
        DotaSource(images, anns)
    (anns / "P0002.txt").write_text("1 2 3 4 5 6 7 x plane 0\n")
    with pytest.raises(ValueError, match=r"P0002.txt, line 1: .*could not convert"):
        DotaSource(images, anns)
    (anns / "P0002.txt").write_text("1 2 3 plane\n")
    with pytest.raises(ValueError, match=r"P0002.txt, line 1: expected 8 coordinates"):
        DotaSource(images, anns)
    # Other class lists (DOTA-v2 names) are accepted when given.
    (anns / "P0002.txt").write_text("1 2 3 4 5 6 7 8 airport 0\n")
    assert DotaSource(images, anns, class_names=DOTA_CLASSES + ("airport",)).annotations(1)["labels"].tolist() == [15]


@pytest.mark.backend_independent
def test_corrupt_and_missing_images_raise_or_skip(tmp_path):
    images, anns = write_dota(tmp_path)
    data = (images / "P0001.png").read_bytes()
    (images / "P0001.png").write_bytes(data[: len(data) // 2])
    (anns / "P0009.txt").write_text(PLANE + "\n")
    with pytest.raises(ValueError, match=r"P0009.txt: no image file"):
        DotaSource(images, anns)
    (anns / "P0009.txt").unlink()
    with pytest.raises(ValueError, match=r"P0001.png: truncated"):
        DotaSource(images, anns)
    with pytest.warns(UserWarning, match=r"Skipped 1 file\(s\).*P0001.png: truncated"):
        source = DotaSource(images, anns, on_corrupt="skip")
    assert source.image_names == ["P0002", "P0003"]
    (images / "P0002.jpg").write_bytes(b"")
    (images / "P0003.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="No usable images"):
        DotaSource(images, anns, on_corrupt="skip", filter_empty=True)


def _same_corners(a, b, atol):
    """Whether two (4, 2) corner lists are the same rectangle, whatever the start and direction."""
    for candidate in (b, b[::-1]):
        for shift in range(4):
            if np.abs(np.roll(candidate, shift, axis=0) - a).max() <= atol:
                return True
    return False


def test_polygon_rbox_round_trip_and_le90():
    rng = np.random.default_rng(0)
    boxes = np.stack(
        [
            rng.uniform(50, 900, 40),
            rng.uniform(50, 900, 40),
            rng.uniform(3, 80, 40),
            rng.uniform(3, 80, 40),
            rng.uniform(-4, 4, 40),
        ],
        1,
    ).astype(np.float32)
    polygons = rboxes_to_polygons(boxes)
    corners = keras.ops.convert_to_numpy(rbox_corners(keras.ops.convert_to_tensor(boxes)))
    np.testing.assert_allclose(polygons.reshape(-1, 4, 2), corners, atol=1e-3)
    back = polygons_to_rboxes(polygons)
    assert (back[:, 2] >= back[:, 3]).all() and (back[:, 4] >= -math.pi / 2).all() and (back[:, 4] < math.pi / 2).all()
    back_corners = keras.ops.convert_to_numpy(rbox_corners(keras.ops.convert_to_tensor(back)))
    assert all(_same_corners(p, q, 1e-3) for p, q in zip(polygons.reshape(-1, 4, 2), back_corners))
    np.testing.assert_allclose(back[:, 2] * back[:, 3], boxes[:, 2] * boxes[:, 3], rtol=1e-4)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        polygons_to_rboxes(np.zeros((3, 6)))


@pytest.mark.backend_independent
def test_windows_follow_img_split():
    windows = patch_windows(3000, 2000, 1024, 200)
    xs, ys = sorted(set(windows[:, 0].tolist())), sorted(set(windows[:, 1].tolist()))
    assert xs == [0, 824, 1648, 1976] and ys == [0, 824, 976] and len(windows) == 12
    assert windows[:, 2].max() == 3000 and windows[:, 3].max() == 2000  # last windows flush with the border
    assert ((windows[:, 2] - windows[:, 0]) == 1024).all()
    assert windows[:3, 0].tolist() == [0, 0, 0]  # x-major order
    # Smaller than a window: one window reaching past the border, kept as the best despite 0.46 < 0.6.
    assert patch_windows(600, 800, 1024, 200).tolist() == [[0, 0, 1024, 1024]]
    # 1024 × 700: in-image fraction 0.68 > 0.6 passes.
    assert patch_windows(1024, 700).tolist() == [[0, 0, 1024, 1024]]
    # MS: all scales thresholded together; for a 500-px image only the 682 window (0.54) is the best.
    assert patch_windows(500, 500, [2048, 1024, 682], [1000, 500, 333]).tolist() == [[0, 0, 682, 682]]
    assert len(patch_windows(1500, 1500, [2048, 1024, 682], [1000, 500, 333])) == 0 + 4 + 16
    with pytest.raises(ValueError, match="gap"):
        patch_windows(100, 100, 64, 64)


@pytest.mark.backend_independent
def test_iof_rule_and_difficulty_two():
    window = (0, 0, 100, 100)
    polygons = np.array(
        [
            [10, 10, 40, 10, 40, 40, 10, 40],  # inside: iof 1
            [80, 10, 105, 10, 105, 30, 80, 30],  # 20 of 25 px wide inside: iof 0.8
            [90, 50, 110, 50, 110, 60, 90, 60],  # half inside: dropped
            [150, 150, 160, 150, 160, 160, 150, 160],  # outside
        ],
        np.float32,
    )
    np.testing.assert_allclose(polygon_window_iof(polygons, [window])[:, 0], [1, 0.8, 0.5, 0], atol=1e-12)
    indices, shifted, truncated = split_annotations(polygons, (50, 0, 150, 100))
    assert indices.tolist() == [1, 2] and truncated.tolist() == [False, False]
    np.testing.assert_allclose(shifted[0], [30, 10, 55, 10, 55, 30, 30, 30])  # translated, not clipped
    indices, _, truncated = split_annotations(polygons, window)
    assert indices.tolist() == [0, 1] and truncated.tolist() == [False, True]
    # A non-convex arrow-head (area 300) with 100 px² beyond x = 20: clipping stays exact.
    arrow = np.array([[0, 0, 40, 10, 0, 20, 10, 10]], np.float32)
    np.testing.assert_allclose(polygon_window_iof(arrow, [(0, 0, 20, 20)]), [[200 / 300]], atol=1e-12)


@pytest.mark.backend_independent
def test_split_dota_writes_mmrotate_patches(tmp_path):
    src, anns, out = tmp_path / "src", tmp_path / "ann", tmp_path / "out"
    src.mkdir()
    anns.mkdir()
    image = write_image(src / "P0001.png", 200, 300)
    write_image(src / "P0002.png", 80, 100)
    (anns / "P0001.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.1\n110 10 140 10 140 30 110 30 plane 1\n105 50 135 50 135 60 105 60 ship 0\n"
    )
    names = split_dota(src, anns, out, patch_size=128, gap=28, verbose=False)
    # x windows 0, 100, 172 (pulled back to 300); y windows 0, 72.
    assert names == sorted(f"P0001__128__{x}___{y}" for x in (0, 100, 172) for y in (0, 72)) + ["P0002__128__0___0"]
    source = DotaSource(out / "images", out / "annfiles")
    by_name = {n: i for i, n in enumerate(source.image_names)}
    np.testing.assert_array_equal(source.load_image(by_name["P0001__128__100___72"]), image[72:200, 100:228])
    small = source.load_image(by_name["P0002__128__0___0"])
    assert small.shape == (128, 128, 3) and tuple(small[100, 100]) == (124, 116, 104)  # BGR (104, 116, 124) padding
    first = source.annotations(by_name["P0001__128__0___0"])
    # Plane: 18 of 30 px inside → dropped (0.6 < 0.7); ship: 23 of 30 → kept, truncated: difficulty 2.
    np.testing.assert_array_equal(first["labels"], [6])
    np.testing.assert_array_equal(first["difficult"], [2])
    second = source.annotations(by_name["P0001__128__100___0"])
    np.testing.assert_array_equal(second["labels"], [0, 6])
    np.testing.assert_array_equal(second["difficult"], [1, 0])  # fully inside: the original difficulty
    np.testing.assert_allclose(second["polygons"][0], [10, 10, 40, 10, 40, 30, 10, 30])
    # MS: rates 0.5 and 1 give native windows 256 (gap 56) and 128 (gap 28).
    ms = split_dota(src, None, tmp_path / "ms", rates=(0.5, 1.0), patch_size=128, gap=28, verbose=False)
    assert "P0001__256__0___0" in ms and "P0001__256__44___0" in ms and "P0001__128__172___72" in ms
    assert (tmp_path / "ms" / "annfiles" / "P0001__256__0___0.txt").read_text() == ""


@pytest.mark.backend_independent
def test_patch_names_round_trip():
    assert parse_patch_name("P0003__1024__0___824") == ("P0003", 1024, 0, 824)
    assert parse_patch_name("/data/images/P0003__682__341___0.png") == ("P0003", 682, 341, 0)
    assert parse_patch_name("P0003__0.5__0___412") == ("P0003", 0.5, 0, 412)  # DOTA_devkit rate
    assert parse_patch_name("my__image__1024__8___9") == ("my__image", 1024, 8, 9)
    with pytest.raises(ValueError, match="not a patch name"):
        parse_patch_name("P0003_1024_0_824")


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "line, problem",
    [
        ("nan 10 50 10 50 30 10 30 plane 0", r"line 4: non-finite polygon coordinates \[nan, 10.0"),
        ("10 10 inf 10 50 30 10 30 plane 0", "line 4: non-finite polygon coordinates"),
        ("310 10 350 10 350 30 310 30 plane 0", r"line 4: box \[330.0, 20.0, 40.0, 20.0, 0.0\] lies far outside the 80x100"),
    ],
)
def test_bad_targets_name_the_annotation_file_and_line(tmp_path, line, problem):
    images, anns = write_dota(tmp_path, lines_b=(SHIP, line))
    with pytest.raises(ValueError, match=rf"P0002.txt, {problem}"):
        DotaSource(images, anns)


@pytest.mark.backend_independent
def test_normalised_polygons_and_the_report(tmp_path):
    from keras_rtmdet.data.dataset_report import dataset_report

    normalised = "0.1 0.1 0.5 0.1 0.5 0.3 0.1 0.3 plane 0"
    images, anns = write_dota(tmp_path, lines_a=(normalised,), lines_b=(normalised,))
    with pytest.raises(ValueError, match=r"P0001.txt \(image P0001.png\): every box of the file .* normalised"):
        DotaSource(images, anns)
    (anns / "P0001.txt").write_text("\n".join((PLANE, SHIP, "90 60 110 60 110 70 90 70 ship 0")) + "\n")
    (anns / "P0002.txt").write_text("")
    report = dataset_report(DotaSource(images, anns, filter_empty=True))
    assert (report.images, report.empty_images, report.left_out_empty) == (1, 0, 2)
    assert report.instances["plane"] == 1 and report.instances["ship"] == 2 and report.clipped == 1
    assert report.dropped == {} and report.skipped == {}


def corrupt_png_middle(path):
    """Noise over 50 bytes in the middle of a PNG: its IDAT checksum fails, its signature and IEND stay intact."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 50] = np.random.default_rng(0).integers(0, 256, 50, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.backend_independent
def test_image_corrupt_in_the_middle_is_skipped_or_raised_while_streaming(tmp_path):
    import tensorflow as tf

    from keras_rtmdet.data.coco_json import check_image_file
    from keras_rtmdet.data.source_dataset import source_dataset

    images, anns = write_dota(tmp_path)
    noise = np.random.default_rng(1).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    cv2.imwrite(str(images / "P0001.png"), noise)
    corrupt_png_middle(images / "P0001.png")
    assert check_image_file(str(images / "P0001.png")) is None  # the construction check passes it
    with pytest.raises(tf.errors.OpError, match=r"Image .*P0001.png cannot be decoded: .*corrupt"):
        list(source_dataset(DotaSource(images, anns), shuffle=False))  # on_corrupt="raise", DotaSource's default
    source = DotaSource(images, anns, on_corrupt="skip")
    with pytest.warns(UserWarning, match=r"Skipped image .*P0001.png: cannot be decoded .*; 1 image\(s\) skipped"):
        streamed = list(source_dataset(source, shuffle=True, seed=2))
    assert sorted(int(s["image_id"]) for s in streamed) == [1, 2]
    assert source.skipped == [(str(images / "P0001.png"), "cannot be decoded")]
