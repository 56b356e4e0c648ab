"""RTMDet-Ins presets: data only (see `rtmdet_presets` for the fields).

The architectures scale like the detection presets; the Ins head has no
`exp_on_reg`. `params` are the trainable parameters (reference §1.8, equal
to the README's), `box_ap` / `mask_ap` the published COCO val2017 numbers.
The x checkpoint was trained with 8×16 images, hence its config name.
[UNVERIFIED] the checkpoints themselves were not downloaded in this session.
"""

from keras_rtmdet.utils.coco_classes import COCO_CLASSES
from keras_rtmdet.weights.download import official_checkpoint

_BASE_URL = "https://download.openmmlab.com/mmdetection/v3.0/rtmdet"


def _ins(size, deepen, widen, neck_blocks, batch, stem, params, flops, box_ap, mask_ap):
    config = f"rtmdet-ins_{size}_{batch}-300e_coco"
    return {
        "description": f"RTMDet-Ins-{size} instance segmentation trained on COCO 2017 (80 classes), 640×640.",
        "task": "instance_segmentation",
        "arch": {
            "deepen_factor": deepen,
            "widen_factor": widen,
            "neck_num_csp_blocks": neck_blocks,
            "num_classes": 80,
        },
        "class_names": COCO_CLASSES,
        "image_size": (640, 640),
        **official_checkpoint(f"{_BASE_URL}/{config}/{config}_{stem}.pth"),
        "params": params,
        "flops_g": flops,
        "box_ap": box_ap,
        "mask_ap": mask_ap,
        "license": "Apache-2.0",
        "source": "MMDetection 3.3.0, configs/rtmdet",
    }


RTMDET_INS_PRESETS = {
    "rtmdet_ins_tiny_coco": _ins(
        "tiny", 0.167, 0.375, 1, "8xb32", "20221130_151727-ec670f7e", 5638187, 11.8, 40.5, 35.4
    ),
    "rtmdet_ins_s_coco": _ins("s", 0.33, 0.5, 1, "8xb32", "20221121_212604-fdc5d7ec", 10183311, 21.5, 44.0, 38.7),
    "rtmdet_ins_m_coco": _ins("m", 0.67, 0.75, 2, "8xb32", "20221123_001039-6eba602e", 27575111, 54.13, 48.8, 42.1),
    "rtmdet_ins_l_coco": _ins("l", 1.0, 1.0, 3, "8xb32", "20221124_103237-78d1d652", 57365663, 106.56, 51.2, 43.7),
    "rtmdet_ins_x_coco": _ins("x", 1.33, 1.25, 4, "8xb16", "20221124_111313-33d4595b", 102703767, 182.7, 52.4, 44.6),
}
