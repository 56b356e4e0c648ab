"""CSPNeXt ImageNet-1k classifier presets: data only.

The RSB-A1 (600 epochs) checkpoints the RTMDet tiny/s configs start from
(`init_cfg=Pretrained`), under `cspnext_rsb_pretrain/` (reference §2.x).
`arch` holds `CSPNeXtClassifier.from_arch`'s arguments; `params` are the
published parameter counts (M, two decimals: mmdet's RTMDet README table),
`top1` / `top5` its ImageNet-1k val accuracy at 224². The tiny and s files
carry no config-style name; `sha256_prefix` is the hash suffix of each name.
[UNVERIFIED] the checkpoints themselves were not downloaded here.
"""

from keras_rtmdet.weights.download import official_checkpoint

_BASE_URL = "https://download.openmmlab.com/mmdetection/v3.0/rtmdet/cspnext_rsb_pretrain"


def _cls(size, deepen, widen, filename, params_m, flops_g, top1, top5):
    return {
        "description": f"CSPNeXt-{size} ImageNet-1k classifier (RSB-A1 recipe, 600 epochs), 224×224.",
        "task": "image_classification",
        "arch": {"deepen_factor": deepen, "widen_factor": widen, "num_classes": 1000},
        "class_names": None,
        "image_size": 224,
        **official_checkpoint(f"{_BASE_URL}/{filename}"),
        "params_m": params_m,
        "flops_g": flops_g,
        "top1": top1,
        "top5": top5,
        "license": "Apache-2.0",
        "source": "MMDetection 3.3.0, configs/rtmdet/classification",
    }


CSPNEXT_CLASSIFIER_PRESETS = {
    "cspnext_tiny_imagenet": _cls("tiny", 0.167, 0.375, "cspnext-tiny_imagenet_600e-3a2dd350.pth", 2.73, 0.34, 69.44, 89.45),
    "cspnext_s_imagenet": _cls("s", 0.33, 0.5, "cspnext-s_imagenet_600e-ea671761.pth", 4.89, 0.66, 74.41, 92.23),
    "cspnext_m_imagenet": _cls(
        "m", 0.67, 0.75, "cspnext-m_8xb256-rsb-a1-600e_in1k-ecb3bbd9.pth", 13.05, 1.93, 79.27, 94.79
    ),
    "cspnext_l_imagenet": _cls(
        "l", 1.0, 1.0, "cspnext-l_8xb256-rsb-a1-600e_in1k-6a760974.pth", 27.16, 4.19, 81.30, 95.62
    ),
    "cspnext_x_imagenet": _cls(
        "x", 1.33, 1.25, "cspnext-x_8xb256-rsb-a1-600e_in1k-b3f78edd.pth", 48.85, 7.76, 82.10, 95.69
    ),
}
