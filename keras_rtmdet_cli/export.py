"""`rtmdet export`: write a detector as a SavedModel, ONNX, LiteRT, OpenVINO, TF-TRT or TensorRT artefact.

The served graph takes raw uint8 images and does the preprocessing (and,
unless `--raw`, the NMS) itself. SavedModel, LiteRT and TF-TRT are traced by
TensorFlow: under another Keras backend the model's weights are exported
again by a `KERAS_BACKEND=tensorflow` subprocess (`keras_rtmdet.export`).
`--int8` quantizes the network after training on `--calibration` images
(ONNX Runtime, LiteRT, OpenVINO).
"""

import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from keras_rtmdet_cli.arg_types import positive_int
from keras_rtmdet_cli.arg_types import probability
from keras_rtmdet_cli.predict import add_model_arguments

# `keras_rtmdet.export.export.EXPORT_FORMATS`, written out so that `--help` needs no library
# (tests/cli/test_cli_help.py checks that the two lists are the same).
# Formats TensorFlow traces (`keras_rtmdet.export.export.TENSORFLOW_FORMATS`).
TENSORFLOW_FORMATS = ("saved_model", "tf_trt", "litert")
EXPORT_FORMATS = ("saved_model", "onnx", "litert", "openvino", "tf_trt", "tensorrt")
HELP = "export a detector for serving (SavedModel, ONNX, LiteRT, OpenVINO, TF-TRT, TensorRT) with preprocessing and NMS inside"
CALIBRATION_HELP = (
    "INT8 calibration images: an image folder or glob, 'synthetic' (the demo's shapes) or 'tfds:NAME[:SPLIT]'; "
    "a few hundred like the served ones"
)


def add_parser(subparsers):
    parser = subparsers.add_parser("export", help=HELP, description=HELP)
    add_model_arguments(parser)
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="saved_model", help="artefact (default saved_model)")
    parser.add_argument(
        "--out", required=True, help="SavedModel directory, or .onnx / .tflite / .xml (OpenVINO) / .engine file"
    )
    parser.add_argument("--raw", action="store_true", help="ONNX/TensorRT: decoded boxes and scores, NMS left to the server")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--input-size", type=positive_int, nargs=2, metavar=("H", "W"), help="served image size (default: the model's)")
    size.add_argument("--dynamic-size", action="store_true", help="serve images of any size (TensorFlow graphs, RTMDet)")
    parser.add_argument("--batch-size", type=positive_int, help="fixed batch size (default: any; 1 on torch's ONNX exporter)")
    parser.add_argument("--channel-order", choices=("rgb", "bgr"), default="rgb", help="of the served images")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="fp16: litert, openvino, tf_trt, tensorrt; int8: onnx, litert, openvino (with --calibration)",
    )
    precision.add_argument("--int8", action="store_const", const="int8", dest="precision", help="--precision int8")
    parser.add_argument("--calibration", metavar="SOURCE", help=CALIBRATION_HELP)
    parser.add_argument(
        "--calibration-images", type=positive_int, default=200, metavar="N", help="calibration images used (default 200)"
    )
    parser.add_argument("--opset", type=positive_int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--score-thr", type=probability, help="score threshold served (default: the model's)")
    parser.add_argument("--iou-thr", type=probability, help="NMS IoU threshold served (default: the model's)")
    parser.add_argument("--max-det", type=positive_int, help="detections per image served (default: the model's)")
    parser.set_defaults(run=run)


def run(args):
    import keras

    from keras_rtmdet.export.export import export
    from keras_rtmdet.export.metadata import metadata_path
    from keras_rtmdet_cli.predict import load_model

    out, err = Console(), Console(stderr=True)
    started = time.perf_counter()
    try:
        model = load_model(args.preset, args.checkpoint, args.image_size)
        settings = {"score_threshold": args.score_thr, "iou_threshold": args.iou_thr, "max_detections": args.max_det}
        model.set_postprocess(**{k: v for k, v in settings.items() if v is not None})
        path = export(
            model,
            args.out,
            format=args.format,
            nms=not args.raw,
            input_size=args.input_size,
            dynamic_size=args.dynamic_size,
            batch_size=args.batch_size,
            channel_order=args.channel_order,
            precision=args.precision,
            opset=args.opset,
            calibration=args.calibration,
            calibration_count=args.calibration_images,
            verbose=False,
        )
    except (ValueError, TypeError, OSError, ImportError, RuntimeError, NotImplementedError) as error:
        err.print(f"[red]error:[/] {escape(f'cannot export {args.preset}: {error}')}", highlight=False)
        return 2
    table = Table(title="Exported", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", f"{type(model).__name__} ({escape(args.preset)})")
    table.add_row("format", args.format + ("" if args.format != "onnx" else (" raw" if args.raw else " end-to-end")))
    table.add_row("precision", args.precision + (f" (calibrated on {escape(args.calibration)})" if args.calibration else ""))
    size = "any" if args.dynamic_size else "×".join(map(str, args.input_size or model.image_size))
    table.add_row("input", f"images ({args.batch_size or 'any'}, {size}, 3) uint8 {args.channel_order}")
    backend = keras.config.backend()
    traced = "tensorflow (subprocess)" if args.format in TENSORFLOW_FORMATS and backend != "tensorflow" else backend
    table.add_row("backend", f"{backend}; traced by {traced}")
    table.add_row("artefact", escape(path))
    table.add_row("metadata", escape(metadata_path(path, args.format)))
    table.add_row("time", f"{time.perf_counter() - started:.1f} s")
    out.print(table)
    return 0
