"""RTMDet presets: data only.

`arch` holds the constructor arguments of `RTMDet.from_arch`; the rest
describes the official MMDetection 3.x checkpoint the weights come from
(`sha256_prefix` is the 8-hex suffix of its filename, the first digits of
the file's sha256) and its published COCO val2017 numbers (640², single
scale; box AP after mmdet PR #9494's test_cfg).
"""

from keras_rtmdet.utils.coco_classes import COCO_CLASSES
from keras_rtmdet.weights.download import official_checkpoint

_BASE_URL = "https://download.openmmlab.com/mmdetection/v3.0/rtmdet"


def _det(size, deepen, widen, neck_blocks, exp_on_reg, stem, params, flops, box_ap):
    config = f"rtmdet_{size}_8xb32-300e_coco"
    return {
        "description": f"RTMDet-{size} object detector trained on COCO 2017 (80 classes), 640×640.",
        "task": "detection",
        "arch": {
            "deepen_factor": deepen,
            "widen_factor": widen,
            "neck_num_csp_blocks": neck_blocks,
            "exp_on_reg": exp_on_reg,
            "num_classes": 80,
        },
        "class_names": COCO_CLASSES,
        "image_size": (640, 640),
        **official_checkpoint(f"{_BASE_URL}/{config}/{config}_{stem}.pth"),
        "params": params,
        "flops_g": flops,
        "box_ap": box_ap,
        "license": "Apache-2.0",
        "source": "MMDetection 3.3.0, configs/rtmdet",
    }


RTMDET_PRESETS = {
    "rtmdet_tiny_coco": _det("tiny", 0.167, 0.375, 1, False, "20220902_112414-78e30dcc", 4896168, 8.1, 41.1),
    "rtmdet_s_coco": _det("s", 0.33, 0.5, 1, False, "20220905_161602-387a891e", 8886924, 14.8, 44.6),
    "rtmdet_m_coco": _det("m", 0.67, 0.75, 2, True, "20220719_112220-229f527c", 24709188, 39.27, 49.4),
    "rtmdet_l_coco": _det("l", 1.0, 1.0, 3, True, "20220719_112030-5a0be7c4", 52315804, 80.23, 51.5),
    "rtmdet_x_coco": _det("x", 1.33, 1.25, 4, True, "20220715_230555-cc79b9ae", 94855572, 141.67, 52.8),
}
