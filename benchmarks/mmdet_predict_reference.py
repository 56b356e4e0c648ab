#!/usr/bin/env python
"""MMDetection 3.3's `inference_detector` on raw images: the reference `predict_benchmark.py` compares with.

Run it in the reference's virtual environment (`../shared/tools/reference/README.md`; with the prebuilt
mmcv wheel it installs in about 2 minutes), on the same machine. The model is the packaged RTMDet config
with random weights (as `dump_reference.py` builds it: SyncBN → BN, no pretrained download, the reference
test_cfg), on CPU; `inference_detector` runs the config's own test pipeline (cv2 resize, pad, normalise),
the forward and the post-processing, as MMDetection users call it. Median over `--iters` runs after
`--warmup`.

    ~/mmvenv/bin/python benchmarks/mmdet_predict_reference.py --models rtmdet_tiny,rtmdet_s --batch-sizes 1 \
        --json benchmarks/results/predict_cpu2_mmdet.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

DEFAULT_TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tools", "reference")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="rtmdet_tiny,rtmdet_s", help="names of the reference's MODEL_ZOO")
    p.add_argument("--batch-sizes", default="1")
    p.add_argument("--raw-size", default="480x640")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--tools", default=os.environ.get("RTMDET_REFERENCE_TOOLS", DEFAULT_TOOLS))
    p.add_argument("--json")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.tools))
    import numpy as np
    import oracle_common as oc
    import torch
    from mmdet.apis import inference_detector
    from mmdet.apis import init_detector

    height, width = (int(v) for v in args.raw_size.lower().split("x"))
    results = []
    for name in args.models.split(","):
        cfg, _ = oc.load_config(name)
        model = init_detector(cfg, None, device="cpu")
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            rng = np.random.default_rng(0)
            images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(batch)]
            run = (lambda: inference_detector(model, images[0])) if batch == 1 else (lambda: inference_detector(model, images))
            with torch.no_grad():
                for _ in range(args.warmup):
                    run()
                times = []
                for _ in range(args.iters):
                    start = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - start)
            row = {"model": name, "batch": batch, "median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times)}
            results.append(row)
            print(f"mmdet {name} b{batch}: inference_detector {row['median_ms']:.1f} ms (min {row['min_ms']:.1f})")
    report = {
        "tool": "mmdet.apis.inference_detector",
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "raw_size": [height, width],
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
