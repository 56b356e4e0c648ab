"""Models built from the `meta.json` of a reference fixture.

A reference fixture is a folder recorded with MMDetection's own code: a
checkpoint, inputs, mmdet's outputs and a `meta.json` with the architecture
(`arch`) and post-processing (`test_cfg`). `rtmdet parity` runs on the one
shipped in `keras_rtmdet/resources`; the tests use those under
`tests/fixtures`.
"""

from keras_rtmdet.models.rtmdet.rtmdet import RTMDet
from keras_rtmdet.utils.coco_classes import COCO_CLASSES


def test_cfg_settings(test_cfg):
    """mmdet `test_cfg` → RTMDet post-processing keyword arguments."""
    return {
        "score_threshold": test_cfg["score_thr"],
        "nms_pre": test_cfg["nms_pre"],
        "iou_threshold": test_cfg["nms"]["iou_threshold"],
        "max_detections": test_cfg["max_per_img"],
        "min_bbox_size": test_cfg["min_bbox_size"],
    }


def model_from_fixture_meta(meta, **kwargs):
    """An `RTMDet` with the fixture's architecture and test_cfg (no weights loaded).

    `meta` is the fixture's parsed meta.json (`arch`, `test_cfg`); kwargs
    override the model's settings.
    """
    arch = meta["arch"]
    settings = dict(
        num_classes=arch["num_classes"],
        class_names=COCO_CLASSES if arch["num_classes"] == len(COCO_CLASSES) else None,
        image_size=(arch["input_size"], arch["input_size"]),
        **test_cfg_settings(meta["test_cfg"]),
    )
    settings.update(kwargs)
    return RTMDet.from_arch(
        arch["deepen_factor"], arch["widen_factor"], arch["num_csp_blocks"], arch["exp_on_reg"], **settings
    )
