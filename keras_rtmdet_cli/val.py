"""`rtmdet val`: COCO metrics of a model on a validation set (pycocotools), DOTA metrics of a rotated one.

Prints the 12 COCO stats and the per-class table (AP, AP50, AP75, ground
truths, detections), of the boxes and, for models that output masks
(RTMDet-Ins), of the masks; writes them to `--out/metrics.json`: box stats as
`AP`, `AP50`, ..., `per_class_AP`, `per_class`, `pr_curves` (precision at 101
recall points per class), mask stats prefixed `segm_` (`segm_AP`, ...), and
the box `confusion_matrix` (MMDetection's counting: score ≥ 0.3, IoU ≥ 0.5);
and their figures, `precision_recall.png` and `confusion_matrix.png`.

A rotated model (RTMDet-R) is evaluated on `--dota IMAGE_DIR ANN_DIR` (class
names: the model's, or `--dota-classes`) or `--synthetic`, with
`evaluate_dota_model` (VOC-style area AP of rotated IoU, patches as they
are): the DOTA table (per class: AP@[.5:.95], AP50, AP75, ground truths,
detections, recall; then mmAP, mAP50, mAP75) and metrics.json with `mAP50`,
`mAP75`, `mmAP`, `mAP`, `mAP50` ... `mAP95`, `per_class_AP` (AP50),
`per_class`, `pr_curves` and the rotated-box `confusion_matrix` (same
counting with rotated IoU; ignored (difficult) objects are ignore regions),
with the same two figures.
"""

import argparse
import json
import os

from rich.console import Console
from rich.markup import escape

from keras_rtmdet_cli.arg_types import image_size
from keras_rtmdet_cli.arg_types import positive_int
from keras_rtmdet_cli.arg_types import probability
from keras_rtmdet_cli.data_args import add_data_arguments
from keras_rtmdet_cli.data_args import build_sources
from keras_rtmdet_cli.run_folders import add_output_arguments
from keras_rtmdet_cli.run_folders import output_folder

HELP = "evaluate a model with COCO metrics (DOTA metrics for a rotated model) on a validation set"
DEFAULT_OUT = os.path.join("runs", "val")
METRICS_FILE = "metrics.json"


def add_parser(subparsers):
    parser = subparsers.add_parser("val", help=HELP, description=HELP)
    parser.add_argument("--preset", required=True, help="preset name or directory (e.g. runs/train/best)")
    add_data_arguments(parser, train=False)
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (8)")
    parser.add_argument(
        "--score-thr", type=probability, help="score threshold in [0, 1] (default: the model's: 0.001; RTMDet-R 0.05)"
    )
    parser.add_argument(
        "--image-size",
        type=image_size,
        metavar="SIZE",
        help="network input size, SIZE or H,W, multiples of 32 (default: the preset's)",
    )
    add_output_arguments(parser, DEFAULT_OUT, "earlier metrics")
    parser.set_defaults(run=run)


def run(args):
    err = Console(stderr=True)
    try:
        from keras_rtmdet import DenseDetector

        model = DenseDetector.from_preset(
            args.preset, **({} if args.image_size is None else {"image_size": args.image_size})
        )
        rotated = model.variant.box_format == "xywha"
        if rotated and getattr(args, "dota", None) and not args.dota_classes and model.class_names:
            args.dota_classes = ",".join(model.class_names)  # DOTA txts name the model's classes
        _, source = build_sources(args, train=False, rotated=rotated)
        if source is None:
            raise ValueError("no validation data given.")
        if source.num_classes != model.head.num_classes:
            raise ValueError(
                f"the model predicts {model.head.num_classes} classes, the data has {source.num_classes}."
            )
        args.out = output_folder(args.out, DEFAULT_OUT, (METRICS_FILE,), args.exist_ok, "val")
    except (ValueError, OSError, ImportError, argparse.ArgumentTypeError) as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    from keras_rtmdet.evaluation.evaluation_plots import write_evaluation_figures
    from keras_rtmdet.evaluation.protocols import evaluate_model

    settings = {} if args.score_thr is None else {"score_threshold": args.score_thr}
    stats = evaluate_model(
        model, source, batch_size=args.batch_size,
        on_note=lambda note: err.print(f"[yellow]note:[/] {escape(note)}", highlight=False), **settings,
    )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, METRICS_FILE)
    with open(path, "w") as f:
        json.dump(stats, f, indent=2, default=float)
    figures = write_evaluation_figures(stats, args.out)
    Console().print(f"Wrote {escape(', '.join([path, *figures]))}.", highlight=False)
    return 0
