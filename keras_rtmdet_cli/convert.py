"""`rtmdet convert`: turn an MMDetection checkpoint into a Keras preset directory.

The architecture comes from a built-in preset (`--preset rtmdet_s_coco`) or
from explicit scaling factors (`--arch 0.167,0.125,1,false --image-size
160`). The result loads with `RTMDet.from_preset(DIR)` or
`rtmdet predict --preset DIR`.
"""

import argparse
import os
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from keras_rtmdet_cli.arg_types import image_size
from keras_rtmdet_cli.arg_types import positive_int

HELP = "convert an MMDetection .pth checkpoint into a Keras preset directory"
_TRUE, _FALSE = ("true", "1", "yes", "y"), ("false", "0", "no", "n")


def parse_arch(text):
    """`"deepen,widen,neck_blocks,exp_on_reg"` → the keyword arguments of `RTMDet.from_arch`."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(
            f"expected deepen,widen,neck_blocks,exp_on_reg (e.g. 0.167,0.125,1,false), got {text!r}"
        )
    try:
        arch = {
            "deepen_factor": float(parts[0]),
            "widen_factor": float(parts[1]),
            "neck_num_csp_blocks": int(parts[2]),
        }
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"deepen and widen must be numbers and neck_blocks an integer: {text!r}"
        ) from None
    if parts[3].lower() not in _TRUE + _FALSE:
        raise argparse.ArgumentTypeError(f"exp_on_reg must be true or false, got {parts[3]!r}")
    arch["exp_on_reg"] = parts[3].lower() in _TRUE
    if arch["deepen_factor"] <= 0 or arch["widen_factor"] <= 0 or arch["neck_num_csp_blocks"] < 1:
        raise argparse.ArgumentTypeError(f"the factors must be positive and neck_blocks at least 1: {text!r}")
    return arch


def add_parser(subparsers):
    parser = subparsers.add_parser("convert", help=HELP, description=HELP)
    parser.add_argument("checkpoint", metavar="CKPT", help="MMDetection .pth checkpoint")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="built-in preset whose architecture the checkpoint has")
    source.add_argument(
        "--arch",
        type=parse_arch,
        metavar="D,W,N,E",
        help="deepen_factor,widen_factor,neck_num_csp_blocks,exp_on_reg, e.g. 0.167,0.125,1,false",
    )
    parser.add_argument(
        "--image-size", type=image_size, metavar="SIZE", help="input size for --arch, SIZE or H,W (default 640)"
    )
    parser.add_argument(
        "--num-classes", type=positive_int, default=80, help="classes of the head for --arch (default 80)"
    )
    parser.add_argument("--out", required=True, help="preset directory to write")
    parser.set_defaults(run=run, parser=parser)


def build_model(args):
    """The empty (fresh-weights) model the checkpoint is loaded into, and the preset metadata."""
    from keras_rtmdet import DenseDetector
    from keras_rtmdet import RTMDet
    from keras_rtmdet.utils.coco_classes import COCO_CLASSES

    source = os.path.abspath(args.checkpoint)
    if args.preset is not None:
        model = DenseDetector.from_preset(args.preset, load_weights=False)
        return model, {"preset": args.preset, "source_checkpoint": source}
    class_names = COCO_CLASSES if args.num_classes == len(COCO_CLASSES) else None
    model = RTMDet.from_arch(
        **args.arch,
        num_classes=args.num_classes,
        class_names=class_names,
        image_size=args.image_size or (640, 640),
    )
    return model, {"arch": dict(args.arch, num_classes=args.num_classes), "source_checkpoint": source}


def run(args):
    out, err = Console(), Console(stderr=True)
    if args.preset is not None and (args.image_size is not None or args.num_classes != 80):
        args.parser.error("--image-size and --num-classes go with --arch; a --preset fixes them")
    started = time.perf_counter()
    try:
        model, metadata = build_model(args)
        converted = model.load_checkpoint(args.checkpoint)
        model.save_to_preset(args.out, metadata=metadata)
    except (ValueError, OSError, ImportError) as error:
        message = f"cannot convert {args.checkpoint}: {error}"
        err.print(f"[red]error:[/] {escape(message)}", highlight=False)
        return 2
    table = Table(title="Converted", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("checkpoint", escape(args.checkpoint))
    table.add_row("architecture", escape(args.preset or _arch_text(args.arch)))
    table.add_row("input size", "×".join(map(str, model.image_size)))
    table.add_row("classes", str(model.num_classes))
    table.add_row("parameters", f"{model.count_params():,}")
    table.add_row("tensors converted", str(converted))
    table.add_row("preset directory", escape(args.out))
    table.add_row("time", f"{time.perf_counter() - started:.1f} s")
    out.print(table)
    return 0


def _arch_text(arch):
    return (
        f"deepen {arch['deepen_factor']}, widen {arch['widen_factor']}, "
        f"neck blocks {arch['neck_num_csp_blocks']}, exp_on_reg {arch['exp_on_reg']}"
    )
