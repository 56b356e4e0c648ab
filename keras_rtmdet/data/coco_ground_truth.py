"""An in-memory pycocotools ground truth for sources that have no COCO JSON (synthetic, tfds)."""

import numpy as np


def coco_from_samples(samples, category_ids, class_names):
    """A pycocotools `COCO` from `(image_id, image, boxes xyxy, labels, masks or None[, crowd flags])` tuples.

    Only `image.shape[:2]` is read from `image`.
    """
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    images, annotations = [], []
    for image_id, image, boxes, labels, masks, *crowd in samples:
        crowd = crowd[0] if crowd else np.zeros(len(boxes), bool)
        images.append({"id": int(image_id), "height": int(image.shape[0]), "width": int(image.shape[1])})
        for j, (box, label) in enumerate(zip(boxes, labels)):
            x1, y1, x2, y2 = (float(v) for v in box)
            ann = {
                "id": len(annotations) + 1,
                "image_id": int(image_id),
                "category_id": int(category_ids[int(label)]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(crowd[j]),
            }
            if masks is not None and len(masks):
                rle = mask_utils.encode(np.asfortranarray(masks[j].astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                ann["segmentation"], ann["area"] = rle, float(masks[j].sum())
            annotations.append(ann)
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": int(c), "name": n} for c, n in zip(category_ids, class_names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
