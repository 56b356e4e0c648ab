"""tensorflow-datasets detection datasets (`coco/2017` and any dataset with its feature spec)."""

import numpy as np

from keras_rtmdet.data.coco_ground_truth import coco_from_samples
from keras_rtmdet.data.detection_source import DetectionSource
from keras_rtmdet.data.detection_source import unreadable_image
from keras_rtmdet.utils.coco_classes import COCO_CATEGORY_IDS
from keras_rtmdet.utils.coco_classes import COCO_CLASSES
from keras_rtmdet.utils.target_checks import OUTSIDE_MARGIN
from keras_rtmdet.utils.target_checks import OUTSIDE_MIN_MARGIN
from keras_rtmdet.utils.target_checks import TargetError
from keras_rtmdet.utils.target_checks import check_targets


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "Reading tensorflow-datasets needs `pip install tensorflow-datasets` (the `data` extra)."
        ) from error
    return tfds


def check_example_targets(boxes, labels, crowd, image_size, name, num_classes):
    """The target rules (`keras_rtmdet.utils.target_checks`) on one tfds example; `TargetError` naming `name`.

    Args: boxes (N, 4) xyxy pixels, labels (N,), crowd (N,) bool (crowd objects: only their
    coordinates are checked), image_size (height, width), name (str or bytes) the split and image id.
    """
    name = name.decode() if isinstance(name, bytes) else str(name)
    boxes, labels, crowd = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels), np.asarray(crowd, bool)
    bad = np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))
    if bad.size:
        raise TargetError(f"{name}, object {bad[0]}: non-finite box coordinates {boxes[bad[0]].tolist()}.")
    targets = np.where(crowd, -1, labels)

    def where(index):
        return name if index is None else f"{name}, object {index}"

    # tfds boxes are normalised by the spec and scaled here: the scale rule does not apply.
    check_targets(boxes, targets, num_classes, image_size, where, check_scale=False)


def _checked_in_stream(tf, boxes, labels, crowd, size, name, num_classes):
    """`boxes` (N, 4) after the target rules: screened in the graph, a problem named on the host.

    The screen mirrors `instance_problems` (non-finite coordinates, labels outside [0, num_classes),
    boxes far outside the image), so a stream of good examples never leaves the graph; an example it
    flags goes to `check_example_targets`, which raises the `TargetError`.
    """
    targets = tf.logical_not(crowd)
    margin_w = tf.maximum(OUTSIDE_MARGIN * (boxes[:, 2] - boxes[:, 0]), OUTSIDE_MIN_MARGIN)
    margin_h = tf.maximum(OUTSIDE_MARGIN * (boxes[:, 3] - boxes[:, 1]), OUTSIDE_MIN_MARGIN)
    outside = (
        (boxes[:, 2] < -margin_w)
        | (boxes[:, 3] < -margin_h)
        | (boxes[:, 0] > size[1] + margin_w)
        | (boxes[:, 1] > size[0] + margin_h)
    )
    bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(boxes))) | tf.reduce_any(
        targets & ((labels < 0) | (labels >= num_classes) | outside)
    )

    def host_check():
        def check(b, lab, c, s, n):
            check_example_targets(b, lab, c, s, n, num_classes)
            return b

        return tf.numpy_function(check, [boxes, labels, crowd, size, name], tf.float32, stateful=True)

    checked = tf.cond(bad, host_check, lambda: boxes)
    checked.set_shape(boxes.shape)
    return checked


def tfds_to_sample(example, num_classes=None, name=None):
    """A tfds detection example → the package's sample dict, in tf.data.

    Expects the `coco/2017` spec: `image` (H, W, 3) uint8, `image/id`,
    `objects/bbox` (N, 4) normalised [ymin, xmin, ymax, xmax],
    `objects/label` (N,) and optionally `objects/is_crowd` (N,) bool. Crowd
    objects are dropped (not training targets).

    With `num_classes`, the targets are checked in the stream (`_checked_in_stream`): a bad one
    (before crowd objects and boxes under 1 px are dropped) stops it with a `TargetError` naming
    `name` (a string tensor, e.g. the split and image id).
    """
    import tensorflow as tf

    image = example["image"]
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    objects = example["objects"]
    yxyx = tf.reshape(tf.cast(objects["bbox"], tf.float32), (-1, 4))
    boxes = tf.stack([yxyx[:, 1] * size[1], yxyx[:, 0] * size[0], yxyx[:, 3] * size[1], yxyx[:, 2] * size[0]], -1)
    labels = tf.cast(objects["label"], tf.int32)
    crowd = objects["is_crowd"] if "is_crowd" in objects else tf.zeros_like(labels, tf.bool)
    if num_classes is not None:
        name = tf.constant("a tfds example") if name is None else name
        boxes = _checked_in_stream(tf, boxes, labels, crowd, size, name, num_classes)
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

    Checks: the targets are checked in the training stream, in the graph
    (`tfds_to_sample` with `num_classes`: a bad example stops training with a
    `TargetError` naming the split and image id), and on the host when the
    split is read for evaluation (`check_example_targets`). An image that
    cannot be decoded follows `on_corrupt` in both (for training: decoded by
    `decode_or_skip` as tfds itself would, `tf.image.decode_image`; for
    evaluation: by OpenCV, which reads a JPEG with a corrupt middle with
    warnings only).

    Args:
        name: tfds name, e.g. `"coco/2017"`.
        split: e.g. `"validation"`, `"train[:1%]"`.
        data_dir: tfds data directory (default: tfds'); the dataset must be
            prepared there (no download is attempted: `download=False`).
        on_corrupt: `"skip"` (default: warn, list in `skipped`, leave the
            example out) or `"raise"` (an error naming the image id) for
            images that cannot be decoded.
    """

    def __init__(self, name="coco/2017", split="validation", data_dir=None, on_corrupt="skip"):
        super().__init__()
        if on_corrupt not in ("skip", "raise"):
            raise ValueError(f"on_corrupt must be 'skip' or 'raise', got {on_corrupt!r}.")
        self.on_corrupt = on_corrupt
        tfds = _tfds()
        self.name, self.split, self.data_dir = name, split, data_dir
        self.builder = tfds.builder(name, data_dir=data_dir)
        label = self.builder.info.features["objects"]["label"]
        if name.split("/")[0] == "coco" and label.num_classes == len(COCO_CLASSES):
            self.category_ids, self.class_names = list(COCO_CATEGORY_IDS), list(COCO_CLASSES)
        else:
            self.category_ids, self.class_names = list(range(1, label.num_classes + 1)), list(label.names)
        self._encoded, self._annotations, self._coco = None, None, None

    @property
    def num_examples(self):
        """Examples in the split, from tfds' metadata (no read); None if tfds cannot say."""
        try:
            return int(self.builder.info.splits[self.split].num_examples)
        except (KeyError, ValueError, TypeError, AttributeError):
            return None

    def training_dataset(self, shuffle_files=True):
        """tf.data of sample dicts, streamed from tfds; images decoded here, in parallel, following `on_corrupt`.

        tfds hands the encoded bytes (`SkipDecoding`); `decode_or_skip` decodes them with tfds' own
        `tf.image.decode_image` (the same pixels as tfds' decoding), and an example whose image fails
        is raised on or left out, by name. Targets are checked in the stream (see the class).
        """
        import tensorflow as tf

        from keras_rtmdet.data.source_dataset import decode_or_skip
        from keras_rtmdet.data.source_dataset import skip_unreadable

        tfds = _tfds()
        ds = self.builder.as_dataset(
            split=self.split, shuffle_files=shuffle_files, decoders={"image": tfds.decode.SkipDecoding()}
        )
        prefix = f"{self.name}[{self.split}] image id "

        def decode(data):
            return tf.image.decode_image(data, channels=3, expand_animations=False)

        def sample(example):
            image_id = tf.cast(example.get("image/id", -1), tf.int64)
            name = tf.strings.join([prefix, tf.strings.as_string(image_id)])
            image = decode_or_skip(tf, self, name, example["image"], tf.identity, decode)
            return tfds_to_sample({**example, "image": image}, num_classes=self.num_classes, name=name)

        return skip_unreadable(tf, ds.map(sample, num_parallel_calls=tf.data.AUTOTUNE))

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
            name = f"{self.name}[{self.split}] image id {image_id}"
            image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                unreadable_image(self, name, "OpenCV cannot decode it")
                continue
            h, w = image.shape[:2]
            objects = example["objects"]
            yxyx = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
            boxes = np.stack([yxyx[:, 1] * w, yxyx[:, 0] * h, yxyx[:, 3] * w, yxyx[:, 2] * h], -1)
            crowd = np.asarray(objects.get("is_crowd", np.zeros(len(boxes), bool)), bool)
            check_example_targets(boxes, objects["label"], crowd, (h, w), name, self.num_classes)
            self._encoded[image_id] = encoded
            sizes[image_id] = (h, w)
            self._annotations[image_id] = (boxes, np.asarray(objects["label"], np.int32), crowd)
        self._image_ids = sorted(self._encoded)
        self._sizes = sizes
        self._count_drops()

    def _keep(self, image_id):
        """Which objects of an image are targets (not crowd, at least 1 px wide and high)."""
        boxes, _, crowd = self._annotations[image_id]
        return ~crowd & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)

    def _count_drops(self):
        crowd = sum(int(self._annotations[i][2].sum()) for i in self._image_ids)
        small = sum(int((~self._keep(i) & ~self._annotations[i][2]).sum()) for i in self._image_ids)
        self.dropped = {reason: count for reason, count in (("crowd", crowd), ("width or height < 1 px", small)) if count}

    def object_counts(self):
        """As `DetectionSource.object_counts` once the split was read (evaluation); None while it is only streamed."""
        if self._encoded is None:
            return None
        labels = [self._annotations[i][1][self._keep(i)] for i in self._image_ids]
        every = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
        return np.array([len(v) for v in labels], np.int64), np.bincount(every, minlength=self.num_classes)

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
        boxes, labels, _ = self._annotations[image_id]
        keep = self._keep(image_id)
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

