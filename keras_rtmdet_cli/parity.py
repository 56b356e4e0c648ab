"""`rtmdet parity`: an offline numerical-parity check against MMDetection on the bundled mini fixture.

The fixture `det_mini_linear`, shipped with the package
(`keras_rtmdet/resources/det_mini_linear`), is a tiny RTMDet with RANDOM
weights, recorded with MMDetection 3.3.0: its checkpoint, two synthetic
160×160 BGR images and mmdet's own detections for them. The demo converts
the checkpoint, saves and reloads it as a preset, detects on the two images
with the fixture's test_cfg and matches the result against mmdet's. The
boxes mean nothing; only the arithmetic of the converter and of inference
is being checked. (`rtmdet demo` trains a real, if tiny, detector.)
"""

import importlib.resources
import json
import os
import zipfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

FIXTURE_NAME = "det_mini_linear"
# What the check reads of a fixture folder (a reference dump also has features.npz and head.npz).
FIXTURE_FILES = ("meta.json", "checkpoint.pth", "inputs.npz", "preds.npz")
HELP = "offline parity check: convert the bundled random-weight mini checkpoint, compare with mmdet"


def add_parser(subparsers):
    parser = subparsers.add_parser("parity", help=HELP, description=HELP)
    parser.add_argument("--out", default=os.path.join("runs", "parity"), help="output directory")
    parser.add_argument(
        "--fixture",
        help=f"fixture directory with {', '.join(FIXTURE_FILES)} (default: {FIXTURE_NAME}, shipped with the package)",
    )
    parser.set_defaults(run=run)


def default_fixture():
    """The folder of the fixture shipped with the package (`keras_rtmdet/resources/det_mini_linear`)."""
    folder = importlib.resources.files("keras_rtmdet.resources") / FIXTURE_NAME
    if not isinstance(folder, Path):
        # A zipped install: the converter and np.load need files on disk.
        raise FileNotFoundError(f"The bundled fixture {folder} is not on the file system: pass --fixture DIR.")
    return folder


def read_fixture(fixture):
    """(meta, raw BGR images, reference detections) of a fixture folder.

    Returns the parsed meta.json, inputs.npz's `raw_images` (B, H, W, 3) uint8
    and preds.npz's `img{i}_bboxes/scores/labels`. Raises FileNotFoundError or
    ValueError, naming the folder, when it is not a readable fixture.
    """
    import numpy as np

    from keras_rtmdet.models.reference_fixture import test_cfg_settings

    fixture = Path(fixture)
    if not fixture.is_dir():
        raise FileNotFoundError(f"Fixture directory not found: {fixture}")
    missing = [name for name in FIXTURE_FILES if not (fixture / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{fixture} is not a parity fixture: it has no {', '.join(missing)}.")
    try:
        meta = json.loads((fixture / "meta.json").read_text())
        test_cfg_settings(meta["test_cfg"])
        with np.load(fixture / "inputs.npz") as inputs:
            images = inputs["raw_images"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"raw_images is {images.dtype} {images.shape}, not (B, H, W, 3) uint8")
        keys = [f"img{i}_{key}" for i in range(len(images)) for key in ("bboxes", "scores", "labels")]
        with np.load(fixture / "preds.npz") as preds:
            reference = {key: preds[key] for key in keys}
    except (ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{fixture} is not a readable parity fixture: {type(error).__name__}: {error}") from error
    return meta, images, reference


def build_preset(fixture, meta, preset_dir):
    """Convert the fixture's checkpoint and save it as a preset; return the number of tensors converted."""
    from keras_rtmdet.models.reference_fixture import model_from_fixture_meta

    try:
        model = model_from_fixture_meta(meta)
    except (KeyError, TypeError) as error:
        raise ValueError(f"{fixture / 'meta.json'} has no usable `arch`: {type(error).__name__}: {error}") from error
    converted = model.load_checkpoint(fixture / "checkpoint.pth")
    model.save_to_preset(
        preset_dir,
        metadata={
            "preset": FIXTURE_NAME,
            "source_checkpoint": os.fspath(fixture / "checkpoint.pth"),
            "note": "random weights: a numerical-parity fixture, not a trained model",
        },
    )
    return converted


def compare_and_save(model, outputs, images_bgr, reference, out_dir):
    """Match each image's detections with mmdet's and write its annotated copy.

    Args:
        outputs: `model.predict` outputs for `images_bgr` (B, H, W, 3) uint8.
        reference: preds.npz's `img{i}_bboxes/scores/labels` arrays (`read_fixture`).

    Returns: (rich table, detections.json `images` entries, whether all match).
    """
    import numpy as np

    from keras_rtmdet.models.detections import detections_from_predictions
    from keras_rtmdet.utils.detection_matching import BOX_TOLERANCE_PX
    from keras_rtmdet.utils.detection_matching import SCORE_TOLERANCE
    from keras_rtmdet.utils.detection_matching import match_detections
    from keras_rtmdet_cli.detection_files import save_image_result

    title = f"Keras vs MMDetection (box ≤ {BOX_TOLERANCE_PX} px, score ≤ {SCORE_TOLERANCE:g})"
    table = Table(title=title)
    for column in ("image", "#ours", "#reference", "#matched", "max box Δ (px)", "max score Δ"):
        table.add_column(column, justify="left" if column == "image" else "right")
    images_rgb = [np.ascontiguousarray(image[..., ::-1]) for image in images_bgr]
    sources = [f"inputs.npz:raw_images[{i}]" for i in range(len(images_bgr))]
    found = detections_from_predictions(outputs, images_rgb, sources, model.class_names)
    results, all_match = [], True
    for i, detections in enumerate(found):
        ours = (detections.boxes, detections.scores, detections.labels)
        ref = tuple(reference[f"img{i}_{key}"] for key in ("bboxes", "scores", "labels"))
        result = match_detections(ours, ref)
        matched, box_delta, score_delta = result["matched"], result["max_box_delta"], result["max_score_delta"]
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
        results.append(save_image_result(detections, os.path.join(out_dir, f"{name}.jpg")))
    return table, results, all_match


def run(args):
    from keras_rtmdet import RTMDet
    from keras_rtmdet.models.reference_fixture import test_cfg_settings
    from keras_rtmdet_cli.detection_files import write_results

    out, err = Console(), Console(stderr=True)
    out.print(
        Panel(
            "Converts a tiny RTMDet checkpoint with [bold]RANDOM weights[/] (not a trained model) and "
            "checks that Keras reproduces MMDetection's own detections for it. The boxes and class "
            "names mean nothing: this is a numerical-parity demo of the converter and inference.",
            title="rtmdet parity",
        )
    )
    preset_dir = os.path.join(args.out, "preset")
    try:
        fixture = Path(args.fixture) if args.fixture else default_fixture()
        meta, images, reference = read_fixture(fixture)
        converted = build_preset(fixture, meta, preset_dir)
    except (ValueError, OSError, KeyError, ImportError) as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    # Detect with the reloaded preset, so the save/load round trip is checked too.
    model = RTMDet.from_preset(preset_dir)
    settings = test_cfg_settings(meta["test_cfg"])
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
