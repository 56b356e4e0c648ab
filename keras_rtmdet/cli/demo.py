"""`rtmdet demo`: an offline numerical-parity demo on the bundled mini fixture.

The fixture `tests/fixtures/det_mini_linear` is a tiny RTMDet with RANDOM
weights, recorded with MMDetection 3.3.0: its checkpoint, two synthetic
160×160 BGR images and mmdet's own detections for them. The demo converts
the checkpoint, saves and reloads it as a preset, detects on the two images
with the fixture's test_cfg and matches the result against mmdet's. The
boxes mean nothing; only the arithmetic of the converter and of inference
is being checked.
"""

import json
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from keras_rtmdet.cli.predict import image_detections
from keras_rtmdet.cli.predict import save_image_result
from keras_rtmdet.cli.predict import write_results

FIXTURE_NAME = "det_mini_linear"
# The fixtures' README tolerances for final detections.
BOX_TOLERANCE_PX = 0.02
SCORE_TOLERANCE = 2e-4
HELP = "offline parity demo: convert the bundled random-weight mini checkpoint, compare with mmdet"


def add_parser(subparsers):
    parser = subparsers.add_parser("demo", help=HELP, description=HELP)
    parser.add_argument("--out", default=os.path.join("runs", "demo"), help="output directory")
    parser.add_argument(
        "--fixture", help=f"fixture directory (default: tests/fixtures/{FIXTURE_NAME} of the source checkout)"
    )
    parser.set_defaults(run=run)


def find_fixture(name=FIXTURE_NAME):
    """`tests/fixtures/<name>` in the first directory above the installed package that has it."""
    import keras_rtmdet

    start = Path(keras_rtmdet.__file__).resolve().parent
    for directory in (start, *start.parents):
        candidate = directory / "tests" / "fixtures" / name
        if (candidate / "checkpoint.pth").is_file():
            return candidate
    raise FileNotFoundError(
        f"Cannot find tests/fixtures/{name} above {start}: the demo needs a source checkout of "
        "keras_rtmdet (the fixtures are not part of the wheel), or pass --fixture DIR."
    )


def match_detections(ours, reference, box_tol=BOX_TOLERANCE_PX, score_tol=SCORE_TOLERANCE):
    """Match two detection sets regardless of order.

    Args:
        ours, reference: (boxes (K, 4), scores (K,), labels (K,)) each.

    A pair matches when the labels are equal, every box coordinate is within
    `box_tol` px and the scores within `score_tol`. Reference detections are
    taken in descending score order, each matched greedily to the closest
    free detection of ours; near-equal scores may be ordered differently by
    the two implementations, hence no positional comparison.

    Returns: (number matched, max box Δ, max score Δ) over the matched pairs.
    """
    boxes, scores, labels = (np.asarray(a) for a in ours)
    ref_boxes, ref_scores, ref_labels = (np.asarray(a) for a in reference)
    if len(boxes) == 0 or len(ref_boxes) == 0:
        return 0, 0.0, 0.0
    box_delta = np.abs(boxes[:, None, :].astype(np.float64) - ref_boxes[None].astype(np.float64)).max(-1)
    score_delta = np.abs(scores[:, None].astype(np.float64) - ref_scores[None].astype(np.float64))
    ok = (labels[:, None] == ref_labels[None]) & (box_delta <= box_tol) & (score_delta <= score_tol)
    free = np.ones(len(boxes), bool)
    matched, max_box, max_score = 0, 0.0, 0.0
    for j in np.argsort(-ref_scores, kind="stable"):
        candidates = np.flatnonzero(ok[:, j] & free)
        if candidates.size == 0:
            continue
        i = candidates[np.argmin(box_delta[candidates, j])]
        free[i] = False
        matched += 1
        max_box = max(max_box, float(box_delta[i, j]))
        max_score = max(max_score, float(score_delta[i, j]))
    return matched, max_box, max_score


def build_preset(fixture, preset_dir):
    """Convert the fixture's checkpoint and save it as a preset; return (tensors converted, meta)."""
    from keras_rtmdet import RTMDet
    from keras_rtmdet.utils.coco_classes import COCO_CLASSES

    meta = json.loads((fixture / "meta.json").read_text())
    arch = meta["arch"]
    model = RTMDet.from_arch(
        arch["deepen_factor"],
        arch["widen_factor"],
        arch["num_csp_blocks"],
        arch["exp_on_reg"],
        num_classes=arch["num_classes"],
        class_names=COCO_CLASSES if arch["num_classes"] == len(COCO_CLASSES) else None,
        image_size=(arch["input_size"], arch["input_size"]),
    )
    converted = model.load_checkpoint(fixture / "checkpoint.pth")
    model.save_to_preset(
        preset_dir,
        metadata={
            "preset": FIXTURE_NAME,
            "source_checkpoint": os.fspath(fixture / "checkpoint.pth"),
            "note": "random weights: a numerical-parity fixture, not a trained model",
        },
    )
    return converted, meta


def compare_and_save(model, outputs, images_bgr, reference, out_dir):
    """Match each image's detections with mmdet's and write its annotated copy.

    Args:
        outputs: `model.predict` outputs for `images_bgr` (B, H, W, 3) uint8.
        reference: preds.npz, with `img{i}_bboxes/scores/labels`.

    Returns: (rich table, detections.json `images` entries, whether all match).
    """
    title = f"Keras vs MMDetection (box ≤ {BOX_TOLERANCE_PX} px, score ≤ {SCORE_TOLERANCE:g})"
    table = Table(title=title)
    for column in ("image", "#ours", "#reference", "#matched", "max box Δ (px)", "max score Δ"):
        table.add_column(column, justify="left" if column == "image" else "right")
    results, all_match = [], True
    for i, image_bgr in enumerate(images_bgr):
        ours = image_detections(outputs, i)
        ref = tuple(reference[f"img{i}_{key}"] for key in ("bboxes", "scores", "labels"))
        matched, box_delta, score_delta = match_detections(ours, ref)
        ok = matched == len(ours[0]) == len(ref[0])
        all_match = all_match and ok
        name = f"img{i}"
        colour = "green" if ok else "red"
        table.add_row(
            name,
            str(len(ours[0])),
            str(len(ref[0])),
            f"[{colour}]{matched}[/]",
            f"{box_delta:.2e}",
            f"{score_delta:.2e}",
        )
        image_rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        path = os.path.join(out_dir, f"{name}.jpg")
        source = f"inputs.npz:raw_images[{i}]"
        results.append(save_image_result(image_rgb, ours, model.class_names, path, source))
    return table, results, all_match


def run(args):
    out, err = Console(), Console(stderr=True)
    out.print(
        Panel(
            "Converts a tiny RTMDet checkpoint with [bold]RANDOM weights[/] (not a trained model) and "
            "checks that Keras reproduces MMDetection's own detections for it. The boxes and class "
            "names mean nothing: this is a numerical-parity demo of the converter and inference.",
            title="rtmdet demo",
        )
    )
    preset_dir = os.path.join(args.out, "preset")
    try:
        fixture = Path(args.fixture) if args.fixture else find_fixture()
        converted, meta = build_preset(fixture, preset_dir)
        images = np.load(fixture / "inputs.npz")["raw_images"]
        reference = np.load(fixture / "preds.npz")
    except (ValueError, OSError, KeyError, ImportError) as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    from keras_rtmdet import RTMDet

    # Detect with the reloaded preset, so the save/load round trip is checked too.
    model = RTMDet.from_preset(preset_dir)
    test_cfg = meta["test_cfg"]
    settings = {
        "score_threshold": test_cfg["score_thr"],
        "iou_threshold": test_cfg["nms"]["iou_threshold"],
        "max_detections": test_cfg["max_per_img"],
    }
    outputs = model.predict(images, channel_order="bgr", verbose=0, **settings)
    out.print(
        f"Converted {converted} tensors from {escape(os.fspath(fixture / 'checkpoint.pth'))} and "
        f"reloaded them from the preset {escape(preset_dir)} ({model.count_params():,} parameters).",
        highlight=False,
    )
    table, results, all_match = compare_and_save(model, outputs, images, reference, args.out)
    json_path = write_results(args.out, f"{FIXTURE_NAME} (random weights)", settings, results, [])
    out.print(table)
    written = f"Wrote the annotated images, {json_path} and the preset {preset_dir}."
    out.print(escape(written), highlight=False)
    if all_match:
        out.print("[green]PASS[/]: every detection matches MMDetection's (random weights: parity only).")
        return 0
    err.print("[red]FAIL[/]: some detections differ from MMDetection's (see the table).")
    return 1
