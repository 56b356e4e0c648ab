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

import numpy as np


class DetectionSource:
    """Base class of the readers (COCO JSON, tensorflow-datasets, synthetic).

    Subclasses set, in `__init__`:

    * `coco`: a `pycocotools.coco.COCO` with the ground truth (original
      category ids, crowd annotations included),
    * `image_ids`: list of the usable image ids, in a fixed order,
    * `category_ids`: list, `category_ids[label]` is the COCO category id of
      contiguous label `label`,
    * `class_names`: list of names, one per label,
    * `skipped`: list of `(file or id, reason)` for images left out,

    and implement `load_image(image_id)` and `annotations(image_id)`.
    """

    coco = None
    image_ids = ()
    category_ids = ()
    class_names = ()
    with_masks = False

    def __init__(self):
        self.skipped = []

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
