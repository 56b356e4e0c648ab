"""RTMDet-R presets: data only (see `rtmdet_presets` for the fields).

MMRotate 1.x `configs/rotated_rtmdet` checkpoints, DOTA-v1.0, 1024² patches.
`exp_on_reg` follows MMRotate (tiny/s linear, m/l exponential; MMYOLO's own
checkpoints would be linear at every size). `params` are the trainable
parameters; `mmap` / `map50` / `map75` the published DOTA test-server
numbers (tiny's map50: README 75.36, metafile 75.60). "rr": RandomRotate
training on the single-scale split; "_ms": multi-scale split (its test
numbers need the multi-scale test split too); COCO pretrain: initialised
from `rtmdet_l_coco`. [UNVERIFIED] the checkpoints themselves were not
downloaded here.
"""

from keras_rtmdet.utils.dota_classes import DOTA_CLASSES
from keras_rtmdet.weights.download import official_checkpoint

_BASE_URL = "https://download.openmmlab.com/mmrotate/v1.0/rotated_rtmdet"

_SCALING = {
    "tiny": (0.167, 0.375, 1, False, 4877544, 20.45),
    "s": (0.33, 0.5, 1, False, 8862156, 37.62),
    "m": (0.67, 0.75, 2, True, 24672132, 99.76),
    "l": (1.0, 1.0, 3, True, 52266460, 204.21),
}


def _rot(size, config, stem, mmap, map50, map75, training):
    deepen, widen, neck_blocks, exp_on_reg, params, flops = _SCALING[size]
    return {
        "description": f"RTMDet-R-{size} rotated detector trained on DOTA-v1.0 (15 classes), {training}, 1024×1024.",
        "task": "rotated_detection",
        "arch": {
            "deepen_factor": deepen,
            "widen_factor": widen,
            "neck_num_csp_blocks": neck_blocks,
            "exp_on_reg": exp_on_reg,
            "num_classes": 15,
        },
        "class_names": DOTA_CLASSES,
        "image_size": (1024, 1024),
        **official_checkpoint(f"{_BASE_URL}/{config}/{config}-{stem}.pth"),
        "params": params,
        "flops_g": flops,
        "mmap": mmap,
        "map50": map50,
        "map75": map75,
        "license": "Apache-2.0",
        "source": "MMRotate 1.0.0rc1, configs/rotated_rtmdet",
    }


RTMDET_ROTATED_PRESETS = {
    "rtmdet_r_tiny_dota": _rot("tiny", "rotated_rtmdet_tiny-3x-dota", "9d821076", 47.37, 75.36, 50.64, "RR"),
    "rtmdet_r_tiny_dota_ms": _rot("tiny", "rotated_rtmdet_tiny-3x-dota_ms", "f12286ff", 53.59, 79.82, 58.87, "MS+RR"),
    "rtmdet_r_s_dota": _rot("s", "rotated_rtmdet_s-3x-dota", "11f6ccf5", 48.16, 76.93, 50.59, "RR"),
    "rtmdet_r_s_dota_ms": _rot("s", "rotated_rtmdet_s-3x-dota_ms", "20ead048", 54.43, 79.98, 60.07, "MS+RR"),
    "rtmdet_r_m_dota": _rot("m", "rotated_rtmdet_m-3x-dota", "beeadda6", 50.56, 78.24, 54.47, "RR"),
    "rtmdet_r_m_dota_ms": _rot("m", "rotated_rtmdet_m-3x-dota_ms", "c71eb375", 55.00, 80.26, 61.26, "MS+RR"),
    "rtmdet_r_l_dota": _rot("l", "rotated_rtmdet_l-3x-dota", "23992372", 51.01, 78.85, 55.21, "RR"),
    "rtmdet_r_l_dota_ms": _rot("l", "rotated_rtmdet_l-3x-dota_ms", "2738da34", 55.52, 80.54, 61.47, "MS+RR"),
    "rtmdet_r_l_coco_pretrain_dota_ms": _rot(
        "l", "rotated_rtmdet_l-coco_pretrain-3x-dota_ms", "06d248a2", 56.74, 81.33, 63.45, "COCO pretrain, MS+RR"
    ),
    "rtmdet_r_l_100e_aug_dota": _rot(
        "l", "rotated_rtmdet_l-100e-aug-dota", "bc59fd88", 54.59, 80.16, 61.16, "100e Mosaic+MixUp+RR"
    ),
}
