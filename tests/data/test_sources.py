"""Dataset readers: COCO JSON (written here), tensorflow-datasets (mocked) and the synthetic shapes."""

import json

import cv2
import numpy as np
import pytest

from keras_rtmdet.data.coco_json import CocoJsonSource
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
