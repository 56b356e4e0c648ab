"""What every dataset reader offers: images by id, their annotations, and the COCO ground truth.

A *sample* (one image with its objects) is a dict, in numpy (readers) or in
tf.data (pipelines), with these keys:

* `"image"`: (H, W, 3) uint8, RGB.
* `"boxes"`: (N, 4) float32, xyxy in the image's pixels.
* `"labels"`: (N,) int32, contiguous class indices in [0, num_classes).
* `"image_id"`: int64 scalar, the id in `coco` (for evaluation).
* `"masks"` (only when the reader was asked for masks): (N, H, W) uint8 0/1.

N may be 0 (an image without objects). Crowd annotations (`iscrowd=1`) are not
training targets, as in the reference (mmdet moves them to `ignored_instances`,
which RTMDet never uses); `coco` keeps them, so COCOeval treats them as ignore
regions.
"""

import threading
import warnings

import numpy as np

_SKIP_LOCK = threading.Lock()


class DetectionSource:
    """Base class of the readers (COCO JSON, tensorflow-datasets, synthetic).

    Subclasses set, in `__init__`:

    * `coco`: a `pycocotools.coco.COCO` with the ground truth (original
      category ids, crowd annotations included),
    * `image_ids`: list of the usable image ids, in a fixed order,
    * `category_ids`: list, `category_ids[label]` is the COCO category id of
      contiguous label `label`,
    * `class_names`: list of names, one per label,
    * `skipped`: list of `(file or id, reason)` for images left out (at
      construction, and by `source_dataset` for images that fail to decode),
    * optionally `on_corrupt` (`"raise"` or `"skip"`: what `source_dataset`
      does with an image that cannot be read or decoded, see
      `unreadable_image`), `dropped` (`{reason: objects not used as
      targets}`), `clipped` (targets partly outside their image, or None if
      not known) and `left_out_empty` (images left out for having no object),

    and implement `load_image(image_id)` and `annotations(image_id)`.
    """

    coco = None
    image_ids = ()
    category_ids = ()
    class_names = ()
    with_masks = False
    on_corrupt = "raise"
    clipped = None

    def __init__(self):
        self.skipped = []
        self.dropped = {}
        self.left_out_empty = 0
        self.skipped_while_decoding = 0

    def __len__(self):
        return len(self.image_ids)

    @property
    def num_classes(self):
        return len(self.category_ids)

    def load_image(self, image_id):
        """(H, W, 3) uint8 RGB; raises `ValueError` naming the file if it cannot be read."""
        raise NotImplementedError

    def annotations(self, image_id, with_masks=None):
        """`{"boxes": (N, 4) float32 xyxy px, "labels": (N,) int32}` (+ `"masks"` (N, H, W) uint8).

        `with_masks` overrides the source's `with_masks` for this call.
        """
        raise NotImplementedError

    def sample(self, image_id, with_masks=None):
        """The full numpy sample dict of one image (see the module docstring); `with_masks` as in `annotations`."""
        sample = {"image": self.load_image(image_id), "image_id": np.int64(image_id)}
        sample.update(self.annotations(image_id, with_masks=with_masks))
        return sample

    def label_of(self, category_id):
        return self.category_ids.index(category_id)

    def object_counts(self):
        """(objects per image, in `image_ids` order, (I,) int; objects per label (num_classes,) int).

        Reads every image's annotations; readers that parse up front answer from their arrays.
        """
        labels = [np.asarray(self.annotations(i, with_masks=False)["labels"]).reshape(-1) for i in self.image_ids]
        per_image = np.array([len(v) for v in labels], np.int64)
        every = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
        return per_image, np.bincount(every, minlength=self.num_classes)


def unreadable_image(source, name, reason):
    """Apply `source.on_corrupt` to an image that could not be read or decoded while streaming.

    `"raise"` (the default for sources without the attribute): `ValueError` naming `name`. `"skip"`: the
    first time `name` is met, record it in `source.skipped` and warn with the running count of such
    images; the caller leaves the sample out.
    """
    if getattr(source, "on_corrupt", "raise") != "skip":
        raise ValueError(f"Image {name} cannot be decoded: {reason} (on_corrupt='skip' would leave it out).")
    with _SKIP_LOCK:
        if any(entry[0] == name for entry in source.skipped):
            return
        source.skipped.append((name, "cannot be decoded"))
        source.skipped_while_decoding = getattr(source, "skipped_while_decoding", 0) + 1
        count = source.skipped_while_decoding
    warnings.warn(
        f"Skipped image {name}: cannot be decoded ({reason}); {count} image(s) skipped while decoding so far.",
        stacklevel=2,
    )
