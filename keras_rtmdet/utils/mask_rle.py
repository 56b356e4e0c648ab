"""Binary masks as COCO run-length encodings (pycocotools, an optional dependency)."""

import numpy as np


def encode_mask(mask):
    """(H, W) bool / 0-1 mask → COCO compressed RLE `{"size": [H, W], "counts": str}` (JSON-friendly).

    Raises: ImportError naming pycocotools when it is not installed.
    """
    try:
        from pycocotools import mask as mask_util
    except ImportError as error:
        raise ImportError(
            "Encoding masks as COCO RLE needs pycocotools, an optional dependency: pip install pycocotools "
            "(or keras-rtmdet[data])."
        ) from error
    rle = mask_util.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle
