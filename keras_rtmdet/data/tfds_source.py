"""tensorflow-datasets detection datasets (`coco/2017` and any dataset with its feature spec)."""

import numpy as np

from keras_rtmdet.data.coco_ground_truth import coco_from_samples
from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.utils.coco_classes import COCO_CATEGORY_IDS
from keras_rtmdet.utils.coco_classes import COCO_CLASSES


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "Reading tensorflow-datasets needs `pip install tensorflow-datasets` (the `data` extra)."
        ) from error
    return tfds


def tfds_to_sample(example):
    """A tfds detection example → the package's sample dict, in tf.data.

    Expects the `coco/2017` spec: `image` (H, W, 3) uint8, `image/id`,
    `objects/bbox` (N, 4) normalised [ymin, xmin, ymax, xmax],
    `objects/label` (N,) and optionally `objects/is_crowd` (N,) bool. Crowd
    objects are dropped (not training targets).
    """
    import tensorflow as tf

    image = example["image"]
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    objects = example["objects"]
    yxyx = tf.reshape(tf.cast(objects["bbox"], tf.float32), (-1, 4))
    boxes = tf.stack([yxyx[:, 1] * size[1], yxyx[:, 0] * size[0], yxyx[:, 3] * size[1], yxyx[:, 2] * size[0]], -1)
    labels = tf.cast(objects["label"], tf.int32)
    keep = tf.logical_and(boxes[:, 2] - boxes[:, 0] >= 1.0, boxes[:, 3] - boxes[:, 1] >= 1.0)
    if "is_crowd" in objects:
        keep = tf.logical_and(keep, tf.logical_not(objects["is_crowd"]))
    image_id = tf.cast(example["image/id"], tf.int64) if "image/id" in example else tf.constant(-1, tf.int64)
    return {
        "image": image,
        "boxes": tf.boolean_mask(boxes, keep),
        "labels": tf.boolean_mask(labels, keep),
        "image_id": image_id,
    }


class TfdsSource(DetectionSource):
    """A split of a tensorflow-datasets detection dataset.

    For training, `training_dataset()` streams the split through tfds
    (decoding in parallel). For evaluation, the split's encoded images and
    annotations are read once into memory (≈ the split's file size: 0.8 GB
    for COCO val2017), which gives `load_image` by id and the `coco` ground
    truth. Labels are tfds' contiguous ones; for `coco/2017` they map back to
    the official category ids, for other datasets to `1..num_classes`.

    Args:
        name: tfds name, e.g. `"coco/2017"`.
        split: e.g. `"validation"`, `"train[:1%]"`.
        data_dir: tfds data directory (default: tfds'); the dataset must be
            prepared there (no download is attempted: `download=False`).
    """

    def __init__(self, name="coco/2017", split="validation", data_dir=None):
        super().__init__()
        tfds = _tfds()
        self.name, self.split, self.data_dir = name, split, data_dir
        self.builder = tfds.builder(name, data_dir=data_dir)
        label = self.builder.info.features["objects"]["label"]
        if name.split("/")[0] == "coco" and label.num_classes == len(COCO_CLASSES):
            self.category_ids, self.class_names = list(COCO_CATEGORY_IDS), list(COCO_CLASSES)
        else:
            self.category_ids, self.class_names = list(range(1, label.num_classes + 1)), list(label.names)
        self._encoded, self._annotations, self._coco = None, None, None

    def training_dataset(self, shuffle_files=True):
        """tf.data of sample dicts (decoded images), straight from tfds."""
        import tensorflow as tf

        ds = self.builder.as_dataset(split=self.split, shuffle_files=shuffle_files)
        return ds.map(tfds_to_sample, num_parallel_calls=tf.data.AUTOTUNE)

    def _read_split(self):
        if self._encoded is not None:
            return
        tfds = _tfds()
        ds = self.builder.as_dataset(split=self.split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False)
        self._encoded, self._annotations, sizes = {}, {}, {}
        import cv2

        for n, example in enumerate(tfds.as_numpy(ds)):
            image_id = int(example.get("image/id", n + 1))
            if image_id in self._encoded:
                raise ValueError(f"{self.name}[{self.split}]: image id {image_id} appears twice.")
            encoded = example["image"]
            image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped.append((image_id, "image cannot be decoded"))
                continue
            h, w = image.shape[:2]
            objects = example["objects"]
            yxyx = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
            boxes = np.stack([yxyx[:, 1] * w, yxyx[:, 0] * h, yxyx[:, 3] * w, yxyx[:, 2] * h], -1)
            crowd = np.asarray(objects.get("is_crowd", np.zeros(len(boxes), bool)), bool)
            self._encoded[image_id] = encoded
            sizes[image_id] = (h, w)
            self._annotations[image_id] = (boxes, np.asarray(objects["label"], np.int32), crowd)
        self._image_ids = sorted(self._encoded)
        self._sizes = sizes

    @property
    def image_ids(self):
        self._read_split()
        return self._image_ids

    def load_image(self, image_id):
        import cv2

        self._read_split()
        image = cv2.imdecode(np.frombuffer(self._encoded[image_id], np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def annotations(self, image_id, with_masks=None):
        if with_masks:
            raise ValueError(f"{self.name}: TfdsSource reads boxes only (no masks).")
        self._read_split()
        boxes, labels, crowd = self._annotations[image_id]
        keep = ~crowd & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        return {"boxes": boxes[keep], "labels": labels[keep]}

    @property
    def coco(self):
        """The split's ground truth (crowd objects included, as `iscrowd=1`)."""
        if self._coco is None:
            self._read_split()
            entries = []
            for image_id in self._image_ids:
                boxes, labels, crowd = self._annotations[image_id]
                entries.append((image_id, np.zeros((*self._sizes[image_id], 0)), boxes, labels, None, crowd))
            self._coco = coco_from_samples(entries, self.category_ids, self.class_names)
        return self._coco

