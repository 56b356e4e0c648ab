"""Reference dump of a small CSPNeXt ImageNet classifier, run with mmpretrain/mmdet themselves.

Builds mmpretrain's `ImageClassifier` exactly as `configs/rtmdet/classification/
cspnext-*_8xb256-rsb-a1-600e_in1k.py` (mmdet CSPNeXt with out_indices=(4,),
GlobalAveragePooling, LinearClsHead), shrunk to widen 0.125 and 10 classes,
with seeded random, well-conditioned weights (BN statistics calibrated on
the inputs and perturbed), and records what it computes on two synthetic
images through mmpretrain's own test transforms (ResizeEdge 236 bicubic,
CenterCrop 224) and ClsDataPreprocessor (RGB mean/std).

    $MMVENV/bin/python tools/dump_cspnext_classifier.py tests/fixtures/cls_mini

Needs the reference venv of ../shared/tools/reference (mmdet 3.3.0, mmcv 2.1.0)
plus `pip install --no-deps mmpretrain==1.2.0`.
"""

import json
import os
import sys

import numpy as np
import torch

ARCH = {"deepen_factor": 0.167, "widen_factor": 0.125, "num_classes": 10}
SEED = 0


def build():
    import mmdet.models  # noqa: F401  (registers mmdet.CSPNeXt)
    from mmpretrain.registry import MODELS

    channels = int(1024 * ARCH["widen_factor"])
    cfg = dict(
        type="ImageClassifier",
        backbone=dict(
            type="mmdet.CSPNeXt",
            arch="P5",
            out_indices=(4,),
            expand_ratio=0.5,
            deepen_factor=ARCH["deepen_factor"],
            widen_factor=ARCH["widen_factor"],
            channel_attention=True,
            norm_cfg=dict(type="BN"),
            act_cfg=dict(type="mmdet.SiLU"),
        ),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(type="LinearClsHead", num_classes=ARCH["num_classes"], in_channels=channels),
        data_preprocessor=dict(
            type="ClsDataPreprocessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True
        ),
    )
    return MODELS.build(cfg)


def randomize(model, calib, seed):
    """N(0, 1/fan_in) weights, N(0, 0.1²) biases, BN γ ~ U(0.3, 0.8), β ~ N(0.5, 0.3²); BN stats calibrated."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=g) / fan_in**0.5
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) * 0.5 + 0.3
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.3 + 0.5
            m.momentum = None  # cumulative average: the calibration batch's statistics
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model.backbone(calib)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            std = m.running_var.sqrt()
            m.running_mean += 0.2 * std * torch.randn(std.shape, generator=g)
            m.running_var *= torch.exp(0.2 * torch.randn(std.shape, generator=g))
            m.momentum = 0.1
    model.eval()


def main(out_dir):
    from mmpretrain.datasets.transforms import CenterCrop, ResizeEdge

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tools", "reference"))
    from oracle_common import synth_image

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.RandomState(SEED)
    raw_rgb = [synth_image(rng, 300, 400)[..., ::-1].copy(), synth_image(rng, 420, 260)[..., ::-1].copy()]
    resize = ResizeEdge(scale=236, edge="short", backend="pillow", interpolation="bicubic")
    crop = CenterCrop(crop_size=224)
    crops_bgr = [crop(resize({"img": image[..., ::-1].copy()}))["img"] for image in raw_rgb]

    torch.manual_seed(SEED)
    model = build()
    data = model.data_preprocessor({"inputs": [torch.from_numpy(c).permute(2, 0, 1).contiguous() for c in crops_bgr]})
    normalized = data["inputs"]
    randomize(model, normalized, SEED)
    with torch.no_grad():
        features = model.backbone(normalized)[-1]
        logits = model(normalized, mode="tensor")
        probs = torch.softmax(logits, -1)
    torch.save({"state_dict": model.state_dict(), "meta": {"arch": ARCH}}, os.path.join(out_dir, "checkpoint.pth"))
    np.savez_compressed(
        os.path.join(out_dir, "data.npz"),
        raw_rgb_0=raw_rgb[0],
        raw_rgb_1=raw_rgb[1],
        crop_bgr=np.stack(crops_bgr),
        normalized_rgb=normalized.numpy(),
        features=features.numpy(),
        logits=logits.numpy(),
        probs=probs.numpy(),
    )
    import mmdet
    import mmpretrain
    import PIL

    meta = {
        "arch": ARCH,
        "seed": SEED,
        "versions": {"mmdet": mmdet.__version__, "mmpretrain": mmpretrain.__version__, "torch": torch.__version__,
                     "pillow": PIL.__version__},
        "params": sum(p.numel() for p in model.parameters()),
        "pipeline": "ResizeEdge(236, short, pillow bicubic) -> CenterCrop(224) -> ClsDataPreprocessor(to_rgb)",
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
