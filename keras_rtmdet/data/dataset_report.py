"""What a reader found in its files, as a label scan reports it.

Images, backgrounds, objects per class, and what was left out and why.

`dataset_report(source)` reads the counts the readers keep as they parse
(no pass over the images): a COCO JSON answers from its parsed arrays, other
readers from their annotations. A tensorflow-datasets split that is streamed
for training has not been read: its image count comes from the split's
metadata, its objects are unknown (None).
"""

import collections
import dataclasses

import numpy as np

# Examples of skipped files a report keeps (the counts are complete).
SKIPPED_EXAMPLES = 5


@dataclasses.dataclass
class DatasetReport:
    """Counts of one dataset as the training or evaluation sees it.

    Attributes:
        name: the dataset (annotation file, folder or tfds split).
        images: images in use (`len(source.image_ids)`); None if unknown.
        empty_images: images in use without any target (backgrounds); None if unknown.
        instances: `{class name: targets}` in label order, over the images in use; None if unknown.
        dropped: `{reason: objects}` of the annotations that are not targets (crowd, ignore flag,
            width or height < 1 px, area <= 0, outside the image, ...).
        clipped: targets partly outside their image (the transforms clip them); None if unknown.
        skipped: `{reason: images}` left out (missing, empty, truncated, smaller than the minimum
            size, cannot be decoded).
        skipped_examples: the first few `(file or id, reason)` of them.
        left_out_empty: images left out for having no target (`filter_empty`).
        notes: anything the counts cannot say.
    """

    name: str
    images: int | None
    empty_images: int | None
    instances: dict | None
    dropped: dict
    clipped: int | None
    skipped: dict
    skipped_examples: list
    left_out_empty: int = 0
    notes: list = dataclasses.field(default_factory=list)

    @property
    def objects(self):
        """Targets over the images in use, or None if unknown."""
        return None if self.instances is None else sum(self.instances.values())

    @property
    def skipped_images(self):
        return sum(self.skipped.values())


def _source_name(source):
    for attribute in ("annotation_file", "image_dir"):
        if getattr(source, attribute, None):
            return str(getattr(source, attribute))
    if getattr(source, "name", None) and getattr(source, "split", None):
        return f"{source.name}[{source.split}]"
    return type(source).__name__


def _skipped(source):
    entries = list(getattr(source, "skipped", []))
    counts = collections.Counter(str(reason) for _, reason in entries)
    return dict(counts.most_common()), [(str(name), str(reason)) for name, reason in entries[:SKIPPED_EXAMPLES]]


def dataset_report(source):
    """A `DatasetReport` of a `DetectionSource`, from the counts its reader kept while parsing.

    Cost: a COCO JSON source answers from its parsed arrays (under a second for COCO train2017); other
    readers read each image's annotations once (synthetic sources draw their images); a streamed
    tensorflow-datasets split is not read at all.
    """
    counts = source.object_counts()
    skipped, examples = _skipped(source)
    name = _source_name(source)
    common = dict(
        name=name,
        dropped=dict(getattr(source, "dropped", {})),
        clipped=getattr(source, "clipped", None),
        skipped=skipped,
        skipped_examples=examples,
        left_out_empty=int(getattr(source, "left_out_empty", 0)),
    )
    if counts is None:
        notes = ["objects are counted only as the split streams (not read before training)"]
        return DatasetReport(
            images=getattr(source, "num_examples", None), empty_images=None, instances=None, notes=notes, **common
        )
    per_image, per_class = counts
    names = list(source.class_names)
    instances = {names[label] if label < len(names) else str(label): int(n) for label, n in enumerate(per_class)}
    return DatasetReport(
        images=int(len(per_image)), empty_images=int(np.count_nonzero(np.asarray(per_image) == 0)), instances=instances,
        **common,
    )
