"""Dataset readers: COCO JSON (written here), tensorflow-datasets (mocked) and the synthetic shapes."""

import json

import cv2
import numpy as np
import pytest

from keras_rtmdet.data.coco_json import CocoJsonSource
from keras_rtmdet.data.coco_json import check_image_file
from keras_rtmdet.data.dataset_report import dataset_report
from keras_rtmdet.data.source_dataset import source_dataset
from keras_rtmdet.data.synthetic import SyntheticShapesSource

pytestmark = pytest.mark.backend_independent

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 12, "name": "bird"}]


def write_coco(tmp_path, corrupt=False, missing=False):
    """Three 48×64 images; image 1: a dog (polygon) and a crowd cat; image 2: a bird; image 3: nothing."""
    images = []
    for i in (1, 2, 3):
        image = np.full((48, 64, 3), 90, np.uint8)
        image[10:30, 8:40] = (200, 30, 30)
        name = f"img{i}.jpg" if i != 2 else "img2.png"
        cv2.imwrite(str(tmp_path / name), image)
        images.append({"id": i, "file_name": name, "height": 48, "width": 64})
    if corrupt:
        data = (tmp_path / "img1.jpg").read_bytes()
        (tmp_path / "img1.jpg").write_bytes(data[: len(data) // 2])
    if missing:
        (tmp_path / "img2.png").unlink()
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [8, 10, 32, 20], "area": 640, "iscrowd": 0,
         "segmentation": [[8, 10, 40, 10, 40, 30, 8, 30]]},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 1,
         "segmentation": {"counts": [0, 100], "size": [48, 64]}},
        {"id": 3, "image_id": 2, "category_id": 12, "bbox": [50, 40, 20, 20], "area": 400, "iscrowd": 0,
         "segmentation": [[50, 40, 64, 40, 64, 48, 50, 48]]},
        {"id": 4, "image_id": 2, "category_id": 12, "bbox": [5, 5, 0.5, 10], "area": 5, "iscrowd": 0,
         "segmentation": [[5, 5, 5.5, 5, 5.5, 15]]},
    ]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def test_coco_json_parsing_follows_mmdet(tmp_path):
    source = CocoJsonSource(write_coco(tmp_path), tmp_path, with_masks=True)
    assert source.image_ids == [1, 2, 3] and source.skipped == []
    assert source.category_ids == [3, 7, 12] and source.class_names == ["cat", "dog", "bird"]
    one = source.sample(1)
    # The crowd cat is not a target; the dog becomes label 1 in xyxy pixels.
    np.testing.assert_array_equal(one["labels"], [1])
    np.testing.assert_allclose(one["boxes"], [[8, 10, 40, 30]])
    assert one["masks"].shape == (1, 48, 64) and one["masks"][0, 15, 20] == 1 and one["masks"][0, 5, 5] == 0
    # Written by cv2 as BGR (200, 30, 30), read back as RGB; JPEG moves a level or two.
    np.testing.assert_allclose(one["image"][20, 20], (30, 30, 200), atol=3)
    two = source.annotations(2)  # the 0.5-px-wide box is dropped; the bird past the border is kept, unclipped
    np.testing.assert_array_equal(two["labels"], [2])
    np.testing.assert_allclose(two["boxes"], [[50, 40, 70, 60]])
    assert source.annotations(3)["boxes"].shape == (0, 4)
    assert source.label_of(12) == 2
    # The ground truth for COCOeval keeps the crowd annotation.
    assert len(source.coco.getAnnIds(imgIds=[1])) == 2
    assert CocoJsonSource(write_coco(tmp_path), tmp_path, filter_empty=True).image_ids == [1, 2]


def test_corrupt_and_missing_images_are_named(tmp_path):
    path = write_coco(tmp_path, corrupt=True, missing=True)
    with pytest.warns(UserWarning, match=r"Skipped 2 image\(s\).*img1.jpg: truncated.*img2.png: no such file"):
        source = CocoJsonSource(path, tmp_path)
    assert source.image_ids == [3]
    with pytest.raises(ValueError, match=r"img1.jpg \(id 1\): truncated"):
        CocoJsonSource(path, tmp_path, on_corrupt="raise")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoJsonSource(tmp_path / "nope.json", tmp_path)
    (tmp_path / "bad.json").write_text("{\"images\": 3}")
    with pytest.raises(ValueError, match="not a COCO annotation file"):
        CocoJsonSource(tmp_path / "bad.json", tmp_path)


@pytest.mark.parametrize("with_masks", [False, True])
def test_tf_data_decoding_equals_the_numpy_reader(tmp_path, with_masks):
    source = CocoJsonSource(write_coco(tmp_path), tmp_path, with_masks=with_masks)
    seen = {}
    for sample in source_dataset(source, shuffle=True, seed=3):
        seen[int(sample["image_id"])] = {k: v.numpy() for k, v in sample.items()}
    assert sorted(seen) == [1, 2, 3]
    for image_id, got in seen.items():
        want = source.sample(image_id)
        assert sorted(got) == sorted(want)
        for key in want:
            # JPEG (image 1) and PNG alike: TF in the graph decodes the same pixels as OpenCV.
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.parametrize("kind", ["coco_json", "synthetic"])
def test_source_dataset_with_masks_overrides_the_source(tmp_path, kind):
    if kind == "coco_json":
        source = CocoJsonSource(write_coco(tmp_path), tmp_path, with_masks=False)
    else:
        source = SyntheticShapesSource(3, image_size=(40, 50), with_masks=False, seed=2)
    with_masks = {int(s["image_id"]): s for s in source_dataset(source, shuffle=False, with_masks=True)}
    for image_id, sample in with_masks.items():
        want = source.annotations(image_id, with_masks=True)["masks"]
        np.testing.assert_array_equal(sample["masks"].numpy(), want)
    source.with_masks = True
    assert "masks" not in source_dataset(source, shuffle=False, with_masks=False).element_spec
    assert "masks" in source_dataset(source, shuffle=False).element_spec  # None: the source's setting


def test_synthetic_shapes_boxes_are_the_masks_extent_and_reproducible():
    source = SyntheticShapesSource(8, image_size=((60, 90), (70, 100)), num_classes=4, max_objects=5, with_masks=True, seed=4)
    counts = []
    for image_id in source.image_ids:
        sample = source.sample(image_id)
        assert sample["image"].dtype == np.uint8 and sample["image"].shape[2] == 3
        assert 60 <= sample["image"].shape[0] <= 90 and 70 <= sample["image"].shape[1] <= 100
        assert sample["labels"].max(initial=0) < 4
        for box, mask in zip(sample["boxes"], sample["masks"]):
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        counts.append(len(sample["labels"]))
    assert 0 in counts and max(counts) > 1  # empty images and crowded ones both occur
    again = SyntheticShapesSource(8, image_size=((60, 90), (70, 100)), num_classes=4, max_objects=5, seed=4)
    np.testing.assert_array_equal(again.load_image(5), source.load_image(5))
    assert len(source.coco.getAnnIds()) == sum(counts)
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticShapesSource(2, num_classes=9).sample(1)


def test_tfds_coco_spec(tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from keras_rtmdet.data.tfds_source import TfdsSource

    rng = np.random.default_rng(0)
    examples = []
    for i in range(3):
        n = i + 1
        examples.append(
            {
                "image": rng.integers(0, 255, (40, 50, 3), dtype=np.uint8),
                "image/id": np.int64(100 + i),
                "objects": {
                    "bbox": np.tile(np.array([[0.25, 0.2, 0.75, 0.6]], np.float32), (n, 1)),
                    "label": np.arange(n, dtype=np.int64),
                    "is_crowd": np.array([False] * (n - 1) + [i == 2]),
                },
            }
        )

    def as_dataset(self, split=None, decoders=None, **kwargs):
        # tfds' own mock generator breaks on Sequence features (tensorflow/datasets#4125, #3633).
        def encoded(example):
            image = tf.io.encode_png(example["image"]) if decoders else example["image"]
            return {**example, "image": image}

        ds = tf.data.Dataset.from_generator(
            lambda: iter(examples),
            output_signature={
                "image": tf.TensorSpec((None, None, 3), tf.uint8),
                "image/id": tf.TensorSpec((), tf.int64),
                "objects": {
                    "bbox": tf.TensorSpec((None, 4), tf.float32),
                    "label": tf.TensorSpec((None,), tf.int64),
                    "is_crowd": tf.TensorSpec((None,), tf.bool),
                },
            },
        )
        return ds.map(encoded)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset, policy=tfds.testing.MockPolicy.USE_CODE):
        source = TfdsSource("coco/2017", "validation")
        assert source.image_ids == [100, 101, 102]
        assert source.num_classes == 80 and source.category_ids[:3] == [1, 2, 3] and source.class_names[0] == "person"
        np.testing.assert_allclose(source.annotations(101)["boxes"], [[10, 10, 30, 30]] * 2)
        assert source.annotations(102)["labels"].tolist() == [0, 1]  # the crowd object is left out
        np.testing.assert_array_equal(source.load_image(100), examples[0]["image"])
        assert len(source.coco.getAnnIds(imgIds=[102])) == 3 and source.coco.anns[6]["iscrowd"] == 1
        streamed = [s for s in source_dataset(source, shuffle=False)]
        assert [len(s["labels"]) for s in streamed] == [1, 2, 2]
        np.testing.assert_allclose(streamed[1]["boxes"].numpy(), [[10, 10, 30, 30]] * 2)


def corrupt_middle(path, seed=0):
    """Noise over 300 bytes in the middle of an image file; its header and end marker stay intact."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 300] = np.random.default_rng(seed).integers(0, 256, 300, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def noisy_jpeg(path):
    """A 48x64 JPEG of noise: several kB of entropy-coded data to corrupt."""
    cv2.imwrite(str(path), np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8))


def test_jpeg_corrupt_in_the_middle_is_skipped_or_raised_while_streaming(tmp_path):
    import tensorflow as tf

    path = write_coco(tmp_path)
    jpeg = tmp_path / "img1.jpg"
    noisy_jpeg(jpeg)
    corrupt_middle(jpeg)
    assert check_image_file(str(jpeg)) is None  # the construction check passes it
    source = CocoJsonSource(path, tmp_path, with_masks=True)
    skipped = r"Skipped image .*img1.jpg: cannot be decoded \(jpeg::Uncompress failed.*\); 1 image\(s\) skipped while decoding"
    with pytest.warns(UserWarning, match=skipped):
        ids = [int(s["image_id"]) for s in source_dataset(source, shuffle=True, seed=1)]
    assert sorted(ids) == [2, 3] and source.skipped == [(str(jpeg), "cannot be decoded")]
    # The next epoch leaves it out again, reported once.
    assert [int(s["image_id"]) for s in source_dataset(source, shuffle=False, with_masks=False)] == [2, 3]
    assert len(source.skipped) == 1 and dataset_report(source).skipped == {"cannot be decoded": 1}
    strict = CocoJsonSource(path, tmp_path, on_corrupt="raise")
    with pytest.raises(tf.errors.OpError, match=r"Image .*img1.jpg cannot be decoded: jpeg::Uncompress failed"):
        list(source_dataset(strict, shuffle=False))


def test_stream_without_corrupt_images_keeps_the_seeded_order(tmp_path):
    import tensorflow as tf

    source = CocoJsonSource(write_coco(tmp_path), tmp_path)
    ids = tf.data.Dataset.from_tensor_slices(np.array([1, 2, 3], np.int64))
    for seed in (5, 6, 7):
        want = [int(i) for i in ids.shuffle(3, seed=seed, reshuffle_each_iteration=True)]
        assert [int(s["image_id"]) for s in source_dataset(source, shuffle=True, seed=seed)] == want


def test_dataset_report_counts_and_table(tmp_path):
    from rich.console import Console

    from keras_rtmdet_cli.dataset_table import dataset_report_table

    path = write_coco(tmp_path)
    data = json.loads(path.read_text())
    for image_id, height in ((4, 48), (5, 20)):
        cv2.imwrite(str(tmp_path / f"img{image_id}.jpg"), np.full((height, 64, 3), 90, np.uint8))
        data["images"].append({"id": image_id, "file_name": f"img{image_id}.jpg", "height": height, "width": 64})
    (tmp_path / "img4.jpg").write_bytes((tmp_path / "img4.jpg").read_bytes()[:100])
    box = {"bbox": [5, 5, 10, 10], "area": 100, "iscrowd": 0, "category_id": 3}
    data["annotations"] += [
        {**box, "id": 10, "image_id": 3, "area": 0},
        {**box, "id": 11, "image_id": 3, "bbox": [66, 5, 4, 4]},  # just past the right border: no part inside
        {**box, "id": 12, "image_id": 3, "ignore": 1},
        {**box, "id": 13, "image_id": 5},  # of an image left out: not counted
    ]
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"Skipped 2 image\(s\)"):
        report = dataset_report(CocoJsonSource(path, tmp_path, min_size=32))
    assert (report.images, report.empty_images, report.objects, report.left_out_empty) == (3, 1, 2, 0)
    assert report.instances == {"cat": 0, "dog": 1, "bird": 1}
    reasons = ("crowd", "ignore flag", "width or height < 1 px", "area <= 0", "outside the image")
    assert report.dropped == dict.fromkeys(reasons, 1)
    assert report.clipped == 1  # the bird past the right border, kept
    assert report.skipped == {"truncated file (no end marker)": 1, "smaller than 32 px": 1}
    console = Console(record=True, width=150)
    console.print(dataset_report_table(report, title="train"))
    text = console.export_text()
    for words in ("3 (1 without objects)", "2 (truncated file (no end marker): 1", "img4.jpg", "5 (crowd: 1 ·",
                  "2 in 2 of 3 classes", "1 partly outside", "dog  1"):
        assert words in text, (words, text)
    with pytest.warns(UserWarning):
        filtered = dataset_report(CocoJsonSource(path, tmp_path, min_size=32, filter_empty=True))
    assert (filtered.images, filtered.empty_images, filtered.left_out_empty) == (2, 0, 1)
    console = Console(record=True, width=150)
    console.print(dataset_report_table(filtered))
    assert "1 without objects (not trained on)" in console.export_text()


def mock_tfds_split(examples):
    """`as_dataset` for `tfds.testing.mock_data` over encoded examples (`image` bytes, as `SkipDecoding` gives)."""
    import tensorflow as tf

    def as_dataset(self, split=None, decoders=None, **kwargs):
        assert decoders is not None  # the images are decoded by the package, not by tfds
        return tf.data.Dataset.from_generator(
            lambda: iter(examples),
            output_signature={
                "image": tf.TensorSpec((), tf.string),
                "image/id": tf.TensorSpec((), tf.int64),
                "objects": {
                    "bbox": tf.TensorSpec((None, 4), tf.float32),
                    "label": tf.TensorSpec((None,), tf.int64),
                    "is_crowd": tf.TensorSpec((None,), tf.bool),
                },
            },
        )

    return as_dataset


def tfds_example(image_id, encoded, bbox=(0.25, 0.2, 0.75, 0.6)):
    objects = {"bbox": np.array([bbox], np.float32), "label": np.array([3]), "is_crowd": np.array([False])}
    return {"image": encoded, "image/id": np.int64(image_id), "objects": objects}


def test_tfds_stream_skips_or_raises_on_a_corrupt_image(tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from keras_rtmdet.data.tfds_source import TfdsSource

    noisy_jpeg(tmp_path / "bad.jpg")
    corrupt_middle(tmp_path / "bad.jpg")
    good = cv2.imencode(".png", np.full((40, 50, 3), 70, np.uint8))[1].tobytes()
    examples = [tfds_example(100, good), tfds_example(101, (tmp_path / "bad.jpg").read_bytes()), tfds_example(102, good)]
    with tfds.testing.mock_data(as_dataset_fn=mock_tfds_split(examples), policy=tfds.testing.MockPolicy.USE_CODE):
        source = TfdsSource("coco/2017", "train")
        with pytest.warns(UserWarning, match=r"Skipped image coco/2017\[train\] image id 101: cannot be decoded"):
            streamed = list(source_dataset(source, shuffle=False))
        assert [int(s["image_id"]) for s in streamed] == [100, 102]
        np.testing.assert_array_equal(streamed[0]["image"].numpy(), np.full((40, 50, 3), 70, np.uint8))
        assert source.skipped == [("coco/2017[train] image id 101", "cannot be decoded")]
        strict = TfdsSource("coco/2017", "train", on_corrupt="raise")
        with pytest.raises(tf.errors.OpError, match=r"Image coco/2017\[train\] image id 101 cannot be decoded"):
            list(source_dataset(strict, shuffle=False))
        assert dataset_report(strict).instances is None  # a streamed split is not read before training


@pytest.mark.parametrize("bbox, problem", [((0.2, np.nan, 0.7, 0.6), "non-finite"), ((0.2, 5.0, 0.7, 6.0), "far outside")])
def test_tfds_targets_are_checked_in_the_stream_and_when_read(bbox, problem):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from keras_rtmdet.data.tfds_source import TfdsSource
    from keras_rtmdet.utils.target_checks import TargetError

    good = cv2.imencode(".png", np.full((40, 50, 3), 70, np.uint8))[1].tobytes()
    examples = [tfds_example(100, good), tfds_example(101, good, bbox)]
    with tfds.testing.mock_data(as_dataset_fn=mock_tfds_split(examples), policy=tfds.testing.MockPolicy.USE_CODE):
        source = TfdsSource("coco/2017", "validation")
        with pytest.raises(tf.errors.OpError, match=rf"TargetError: coco/2017\[validation\] image id 101, object 0: .*{problem}"):
            list(source_dataset(source, shuffle=False))
        with pytest.raises(TargetError, match=rf"coco/2017\[validation\] image id 101, object 0: .*{problem}"):
            source.image_ids
