"""`rtmdet train`: train or fine-tune RTMDet (RTMDet-Ins `--task ins`, RTMDet-R `--task rot`) with the reference recipe.

An RTMDet-Ins trains on the data's instance masks (COCO JSON polygons / RLE,
or the synthetic shapes' masks) and is evaluated with box and mask AP. An
RTMDet-R trains on rotated boxes (`--dota IMAGE_DIR ANN_DIR`, e.g. a split's
images/ and annfiles/, or `--synthetic`) with MMRotate's 36e recipe (1024²,
batch 8, lr 0.004/16 at batch 8, 36 epochs, evaluated every 12) and is
evaluated with DOTA mAP (results.csv: mAP50, mAP75, mmAP, AP50 per class).

Prints a report of the data first (images, instances per class, objects
dropped or clipped and why). Writes to `--out` (default `runs/train`, or
`runs/train2`, ... when taken; a folder holding a finished run only with
`--exist-ok`): `args.json` (to resume), `results.csv` (COCO stats) and
`train_log.csv` (per-epoch losses), `best/` and `last/` presets (EMA
weights), `results.png` (loss and mAP curves), `val_predictions/` (a few
validation images with the final model's boxes, and masks, drawn) and, until
the run ends, `backup/`. Ctrl-C stops after the current step and saves;
`--resume --out DIR` continues from there exactly as the uninterrupted run.
"""

import argparse
import json
import os
import shutil

from rich.console import Console
from rich.markup import escape

from keras_rtmdet_cli.arg_types import multiple_of_32
from keras_rtmdet_cli.arg_types import non_negative_int
from keras_rtmdet_cli.arg_types import positive_int
from keras_rtmdet_cli.data_args import add_data_arguments
from keras_rtmdet_cli.data_args import build_sources
from keras_rtmdet_cli.run_folders import add_output_arguments

HELP = (
    "train an RTMDet detector, RTMDet-Ins instance segmenter or RTMDet-R rotated detector "
    "(COCO JSON, tensorflow-datasets, DOTA or synthetic data)"
)
ARGS_FILE = "args.json"
DEFAULT_OUT = os.path.join("runs", "train")
# What a run writes (`--exist-ok` removes them before a new run starts in the same folder).
RUN_FILES = (ARGS_FILE, "results.csv", "train_log.csv", "results.png", "best", "last", "val_predictions")
SIZES = ("tiny", "s", "m", "l", "x")
# The variants' task names (`DetectorVariant.task`), listed here so that `--help` builds no model.
TASKS = ("det", "ins", "rot")


def add_parser(subparsers):
    parser = subparsers.add_parser("train", help=HELP, description=HELP)
    add_data_arguments(parser, train=True)
    model = parser.add_argument_group("model")
    model.add_argument("--preset", help="start from a preset's weights (name or directory); head resized to the data")
    model.add_argument(
        "--task",
        choices=TASKS,
        help="det: RTMDet boxes; ins: RTMDet-Ins boxes and masks; rot: RTMDet-R rotated boxes "
        "(default det; with --preset, the preset's)",
    )
    model.add_argument("--size", choices=SIZES, default="s", help="architecture when not --preset (default s)")
    model.add_argument(
        "--backbone-preset",
        help="with --size: start the backbone from a CSPNeXt ImageNet preset (e.g. cspnext_s_imagenet), "
        "as the reference trains tiny and s; neck and head start fresh",
    )
    model.add_argument("--image-size", type=multiple_of_32, help="training/eval image side (default 640; rot 1024)")
    run = parser.add_argument_group("run")
    run.add_argument("--epochs", type=positive_int, help="epochs (default 300; rot 36)")
    run.add_argument("--batch-size", type=positive_int, help="global batch (default 32; rot 8)")
    run.add_argument("--stage2-epochs", type=non_negative_int, help="final epochs without Mosaic/MixUp (default 20/300 of the run)")
    run.add_argument(
        "--lr",
        type=float,
        help="learning rate at the recipe's batch, scaled linearly to --batch-size (default 0.004 at batch 256; "
        "rot 0.004/16 at batch 8)",
    )
    run.add_argument("--warmup-steps", type=non_negative_int, default=1000, help="linear warm-up steps (1000)")
    run.add_argument("--val-every", type=positive_int, help="evaluate every N epochs, and at the end (default 10; rot 12)")
    run.add_argument("--max-boxes", type=positive_int, default=100, help="objects kept per training image (100)")
    run.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    run.add_argument(
        "--devices",
        type=device_count,
        help="data-parallel over N local GPUs, or 'all' (JAX, TensorFlow; --batch-size is the global batch). "
        "PyTorch: launch with `torchrun --nproc-per-node N -m keras_rtmdet_cli train ...` instead",
    )
    add_output_arguments(run, DEFAULT_OUT, "a finished run (its files are replaced)")
    run.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    run.add_argument("--num-val-images", type=non_negative_int, default=4, help="validation images drawn at the end (4)")
    parser.set_defaults(run=run_command)


def device_count(value):
    """`--devices`: "all" or a positive count."""
    if value == "all":
        return value
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"--devices takes a positive count or 'all', not {value!r}")
    return count


def data_parallel_block(args):
    """`DataParallel` for `--devices` or under torchrun, else a no-op block."""
    import contextlib

    from keras_rtmdet.distribute import DataParallel

    devices = getattr(args, "devices", None)
    if devices is None and "WORLD_SIZE" not in os.environ:
        return contextlib.nullcontext()
    return DataParallel(devices=None if devices == "all" else devices)


def _saved_args(out):
    path = os.path.join(out, ARGS_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"--resume: {out} has no {ARGS_FILE}, so there is no run to resume there.")
    with open(path) as f:
        return json.load(f)


def resolve_task(args):
    """The task to train: the preset's (a differing `--task` is refused), else `--task`, else det."""
    from keras_rtmdet.models.detector_variant import preset_variant

    variant = preset_variant(args.preset) if args.preset else None
    if variant is None:
        return args.task or "det"
    if args.task not in (None, variant.task):
        raise ValueError(
            f"--task {args.task}, but --preset {args.preset} is an {variant.display_name} ({variant.task}) model."
        )
    return variant.task


def fill_run_defaults(args, task):
    """Set the run options left unset to the task's recipe (`DetectorVariant.run_defaults`)."""
    from keras_rtmdet.models.detector_variant import detector_class

    for key, value in detector_class(task).variant.run_defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def build_model(args, num_classes, class_names, task="det"):
    """The model to train: `--preset`'s, else a fresh `--size` one of the task's variant."""
    import keras

    from keras_rtmdet.models.detector_variant import detector_class

    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)
    detector = detector_class(task)
    if args.preset and getattr(args, "backbone_preset", None):
        raise ValueError("--backbone-preset starts a fresh --size model; it cannot be combined with --preset.")
    if args.preset:
        model = detector.from_preset(args.preset, num_classes=num_classes, class_names=class_names, image_size=size)
        if model.variant.task != task:
            variant = model.variant
            raise ValueError(f"--task {task}, but --preset {args.preset} is an {variant.display_name} ({variant.task}) model.")
        return model
    arch = dict(detector.presets[detector.variant.preset_for_size(args.size)]["arch"], num_classes=num_classes)
    model = detector.from_arch(**arch, class_names=class_names, image_size=size)
    if getattr(args, "backbone_preset", None):
        model.load_backbone_preset(args.backbone_preset)
    return model


def draw_validation_images(model, source, out_dir, count):
    """Write the first `count` validation images as ground truth beside the model's detections (score ≥ 0.3,
    masks included), at least 320 pixels high; return the paths."""
    from keras_rtmdet.utils.comparison_drawing import draw_ground_truth_and_prediction
    from keras_rtmdet.utils.image_io import write_image

    os.makedirs(out_dir, exist_ok=True)
    ids = list(source.image_ids)[:count]
    images = [source.load_image(i) for i in ids]
    paths = []
    for image_id, image, found in zip(ids, images, model.detect_images(images, verbose=0, score_threshold=0.3)):
        prediction = {"boxes": found.boxes, "scores": found.scores, "labels": found.labels, "masks": found.masks}
        picture = draw_ground_truth_and_prediction(image, source.annotations(image_id), prediction, model.class_names)
        paths.append(os.path.join(out_dir, f"{image_id}.jpg"))
        write_image(paths[-1], picture)
    return paths


def run_command(args):
    from keras_rtmdet.models.non_finite_loss import NonFiniteLossError

    out, err = Console(), Console(stderr=True)
    try:
        args = _run_arguments(args)
        task = resolve_task(args)
        fill_run_defaults(args, task)
        parallel = data_parallel_block(args)
        with parallel:
            return _train(args, task, out, err)
    except (ValueError, OSError, ImportError, argparse.ArgumentTypeError) as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    except NonFiniteLossError as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        err.print(f"{escape(args.out)} keeps the run as it was at the last epoch end (backup/, best/, last/).")
        return 1
    except KeyboardInterrupt as interrupt:
        err.print(_interrupted_line(interrupt, args.out), highlight=False)
        return 130


def _interrupted_line(interrupt, out):
    """The one line Ctrl-C prints: where training stopped and the command that continues it."""
    from keras_rtmdet.training.run_checkpoint import BACKUP_DIR

    if out is None or not os.path.isdir(os.path.join(out, BACKUP_DIR)):
        return "Interrupted before training started."
    where = f" after epoch {interrupt.epoch + 1}, step {interrupt.step + 1}" if hasattr(interrupt, "epoch") else ""
    return f"Interrupted{where}; continue with: rtmdet train --resume --out {escape(out)}"


def _run_arguments(args):
    """The run's arguments: a resumed run's saved ones, else these with the run folder settled (see `--out`)."""
    from keras_rtmdet.training.run_checkpoint import BACKUP_DIR
    from keras_rtmdet_cli.run_folders import next_free_folder

    interrupted = args.out is not None and os.path.isdir(os.path.join(args.out, BACKUP_DIR))
    if args.resume:
        if args.out is None:
            raise ValueError("--resume needs the run's folder: rtmdet train --resume --out DIR.")
        saved = _saved_args(args.out)
        return argparse.Namespace(**{**saved, "resume": True, "out": args.out, "run": args.run})
    if interrupted:
        raise ValueError(f"{args.out} holds an interrupted run: pass --resume to continue it, or another --out.")
    if args.out is None:
        args.out = next_free_folder(DEFAULT_OUT)
        return args
    finished = [name for name in RUN_FILES if os.path.exists(os.path.join(args.out, name))]
    if finished and not args.exist_ok:
        raise ValueError(
            f"{args.out} holds a finished run ({', '.join(finished)}): pass --exist-ok to replace it, or another --out."
        )
    for name in finished:
        path = os.path.join(args.out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return args


def _train(args, task, out, err):
    """Build the sources and model and train, inside the `--devices` block; only the chief writes and prints."""
    from keras_rtmdet.distribute import is_chief
    from keras_rtmdet.training.train_recipe import train_rtmdet

    from keras_rtmdet.models.detector_variant import detector_class

    rotated = detector_class(task).variant.box_format == "xywha"
    train_source, val_source = build_sources(args, train=True, rotated=rotated)
    model = build_model(args, train_source.num_classes, list(train_source.class_names), task)
    chief = is_chief()
    os.makedirs(args.out, exist_ok=True)
    if chief and not args.resume:
        with open(os.path.join(args.out, ARGS_FILE), "w") as f:
            json.dump({k: v for k, v in vars(args).items() if k != "run"}, f, indent=2)

    size = args.size if not args.preset else _preset_size(args.preset)
    name = model.variant.display_name
    if chief:
        print_dataset_reports(out, train_source, val_source)
        out.print(
            f"Training {name}-{size} ({model.count_params():,} parameters, {train_source.num_classes} classes) on "
            f"{len(train_source)} images at {args.image_size}², batch {args.batch_size}, {args.epochs} epochs"
            f"{_replicas_note()} → {escape(args.out)}",
            highlight=False,
        )
    train_rtmdet(
        model,
        train_source,
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        val_source=val_source,
        model_size=size,
        image_size=args.image_size,
        stage2_epochs=args.stage2_epochs,
        max_boxes=args.max_boxes,
        val_every=args.val_every,
        base_learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
    )
    if chief:
        finish_run(model, val_source, args.out, args.num_val_images, out)
    return 0


def print_dataset_reports(console, train_source, val_source):
    """The label scan of the training (and validation) data, before training starts."""
    from keras_rtmdet.data.dataset_report import dataset_report
    from keras_rtmdet_cli.dataset_table import dataset_report_table

    for role, source in (("Training", train_source), ("Validation", val_source)):
        if source is not None:
            report = dataset_report(source)
            console.print(dataset_report_table(report, title=f"{role} data: {escape(report.name)}"))


def _replicas_note():
    from keras_rtmdet.distribute.replicas import data_parallel_size

    replicas = data_parallel_size()
    return f" on {replicas} data-parallel replicas" if replicas > 1 else ""


def finish_run(model, val_source, out_dir, num_val_images, console):
    """The end-of-run artefacts: `results.png` and drawn validation images."""
    from keras_rtmdet.evaluation.results_plot import plot_results
    from keras_rtmdet.training.train_recipe import TRAIN_LOG

    written = []
    results = os.path.join(out_dir, "results.csv")
    if os.path.isfile(results):
        log = os.path.join(out_dir, TRAIN_LOG)
        plot_results(results, os.path.join(out_dir, "results.png"), log if os.path.isfile(log) else None)
        written.append("results.png")
    if val_source is not None and num_val_images > 0:
        draw_validation_images(model, val_source, os.path.join(out_dir, "val_predictions"), num_val_images)
        written.append("val_predictions/")
    console.print(f"Wrote {', '.join(written) or 'the run files'} in {escape(out_dir)}.", highlight=False)


def _preset_size(preset):
    for size in SIZES:
        if f"_{size}_" in os.path.basename(os.path.normpath(preset)) + "_":
            return size
    return "s"
