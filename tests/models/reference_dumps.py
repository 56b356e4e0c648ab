"""Full-size reference dumps, written by MMDetection / MMRotate themselves and cached outside the repository.

A dump is what `shared/tools/reference/dump_reference.py` records for one
official architecture at its own input size with random weights: the
checkpoint, a square batch, a letterboxed batch of two raw images (one 300×400
upscaled into the 640² canvas, as in issue 18), every stage's features, the
raw head outputs and the detections. One takes 30–90 s and 0.1–0.5 GB, so
they live in a cache (`RTMDET_REFERENCE_DUMPS`, default
`~/.cache/keras_rtmdet/reference_dumps`) and are made on first use with the
reference environment (`MMVENV`, default `~/mmvenv`; its README builds it in
about 2 minutes) and the reference tools (`RTMDET_REFERENCE_TOOLS`, default
`../shared/tools/reference` beside the checkout).
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("RTMDET_REFERENCE_DUMPS", Path.home() / ".cache" / "keras_rtmdet" / "reference_dumps"))
TOOLS = Path(os.environ.get("RTMDET_REFERENCE_TOOLS", REPO.parent / "shared" / "tools" / "reference"))
MMVENV = Path(os.environ.get("MMVENV", Path.home() / "mmvenv"))
PARTS = ("inputs.npz", "features.npz", "head.npz", "preds.npz", "meta.json", "checkpoint.pth")

DET = ["rtmdet_tiny", "rtmdet_s", "rtmdet_m", "rtmdet_l", "rtmdet_x"]
INS = ["rtmdet-ins_tiny", "rtmdet-ins_s", "rtmdet-ins_m", "rtmdet-ins_l", "rtmdet-ins_x"]
ROTATED = ["rtmdet-r_tiny", "rtmdet-r_s", "rtmdet-r_m", "rtmdet-r_l"]
ALL_MODELS = DET + INS + ROTATED
# The slow tier's default: the largest detector and one of each other kind.
DEFAULT_MODELS = ["rtmdet_x", "rtmdet-ins_s", "rtmdet-r_s"]


def selected_models():
    """`RTMDET_PARITY_MODELS` (comma-separated names, or `all`), else `DEFAULT_MODELS`."""
    names = os.environ.get("RTMDET_PARITY_MODELS", "")
    if not names:
        return DEFAULT_MODELS
    chosen = ALL_MODELS if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(ALL_MODELS))
    if unknown:
        raise ValueError(f"RTMDET_PARITY_MODELS: unknown models {unknown}; choose from {ALL_MODELS} or 'all'")
    return chosen


def dump_command(model, out):
    size = 1024 if model.startswith("rtmdet-r_") else 640
    # The letterboxed pair: 300×400 scaled ×1.6 (issue 18's failing case) and a tall image scaled down.
    upscaled = f"{size * 15 // 32}x{size * 20 // 32}"
    tall = f"{round(size * 1.08)}x{round(size * 0.605)}"
    script = TOOLS / "dump_reference.py"
    return [str(MMVENV / "bin" / "python"), str(script), model, "--no-extra", "--pipe-sizes", f"{upscaled},{tall}"] + [
        "--seed",
        "0",
        "--threads",
        "2",
        "--out",
        str(out),
    ]


def _complete(folder, command):
    stamp = folder / "keras_rtmdet_dump.json"
    if not all((folder / part).is_file() for part in PARTS) or not stamp.is_file():
        return False
    return json.loads(stamp.read_text())["args"] == command[2:-1]


def reference_dump(model):
    """The cached dump folder of `model`, made first if missing; skips (with the reason) where it cannot be made."""
    folder = CACHE / model
    if _complete(folder, dump_command(model, folder)):
        return folder
    missing = [str(p) for p in (MMVENV / "bin" / "python", TOOLS / "dump_reference.py") if not p.exists()]
    if missing:
        # A real "could not run here": the reference implementation is absent, and the default tier checks the
        # same arithmetic on the committed mini fixtures; the reason is printed with -rs.
        pytest.skip(
            f"no cached reference dump in {folder} and cannot make one: missing {', '.join(missing)} "
            "(build the reference venv with shared/tools/reference/install.sh; set MMVENV / RTMDET_REFERENCE_TOOLS)"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=f".{model}-") as scratch:
        target = Path(scratch) / model
        command = dump_command(model, target)
        result = subprocess.run(command, capture_output=True, text=True, cwd=TOOLS.parent.parent)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        (target / "keras_rtmdet_dump.json").write_text(json.dumps({"args": command[2:-1]}))
        if folder.exists():
            shutil.rmtree(folder)
        target.rename(folder)
    return folder


def report_table():
    """The worst errors of every `keras_report_<backend>.json` in the cache, one line per model and backend."""
    lines = [
        f"{'model':16s} {'backend':10s} {'worst dense (rel.)':>20s}  {'worst array':22s} {'box px':>8s} "
        f"{'score':>8s} {'matched':>11s}  masks (logits, flipped)"
    ]
    for path in sorted(CACHE.glob("*/keras_report_*.json")):
        report = json.loads(path.read_text())
        detections = report["detections"].values()
        matched = sum(d["matched"] for d in detections)
        total = sum(d["detections"] for d in detections)
        box = max(d["max_box_delta"] for d in detections)
        score = max(d["max_score_delta"] for d in detections)
        masks = [(d["mask_logits"], d["mask_flip_fraction"]) for d in detections if "mask_logits" in d]
        mask_text = f"{max(m[0] for m in masks):.1e}, {max(m[1] for m in masks):.1e}" if masks else ""
        name, worst = report["worst_dense"]
        lines.append(
            f"{report['model']:16s} {report['backend']:10s} {worst:20.2e}  {name:22s} {box:8.1e} {score:8.1e} "
            f"{matched:5d}/{total:<5d}  {mask_text}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report_table())
