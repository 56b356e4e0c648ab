"""`rtmdet demo`: train a small RTMDet on generated shapes, on the CPU, offline, and show what it learnt.

No download: the data are `SyntheticShapesSource` images (squares, discs and
triangles of random colours on textured backgrounds). The demo runs the full
training recipe (Mosaic/MixUp stage, then the light stage, AdamW +
flat-cosine, EMA, COCO evaluation every few epochs), then writes to `--out`:
`results.csv`, `results.png` (loss and mAP curves), `val_predictions/`
(validation images, ground truth beside the model's boxes) and the trained
model as the preset `best/` (use it with `rtmdet predict` / `rtmdet val`).

The model is RTMDet-tiny's layout with the exponential box head of m/l/x
(`exp_on_reg`), which learns faster from scratch, at 160² by default. The
schedule is the paper's, shortened (`TASK_SCHEDULES`): 44 epochs of 16
steps, the last half of them the light stage (the paper: 20 of 300), the
learning rate 0.003 at batch 16 (the paper: 0.004 at batch 256), 50 warm-up
steps. With the paper's proportion (a light stage of 1-3 epochs) the model
stayed near box AP 0.24; a light half reaches 0.6-0.7 (README "Two commands"
gives the runs).

`--task ins` trains an RTMDet-Ins of the tiny layout instead (its box head
is the Ins one, ReLU distances), on the shapes' masks, for 20 epochs (10
light), reports box and mask AP and draws the masks too.

`--task rot` trains an RTMDet-R of the tiny layout (with `exp_on_reg`, as
det) on `SyntheticRotatedSource` images (ships, ellipses and arrows at
random angles) with the rotated recipe (keep-ratio resize, h/v/diagonal
flips, random rotation; one stage, 20 epochs), reports DOTA mAP50 / mAP75 /
mmAP on the validation images and draws the rotated boxes (output:
runs/demo_rot).
"""

import os
import time

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from keras_rtmdet_cli.run_folders import next_free_folder

HELP = (
    "offline demo: train a small RTMDet (RTMDet-Ins, RTMDet-R) on generated shapes on the CPU, evaluate it, "
    "draw its detections"
)
OUT_DIRS = {"det": "demo", "ins": "demo_ins", "rot": "demo_rot"}
# Objects drawn per generated image at most. Without Mosaic/MixUp (rot) the training targets need
# no more slots, and the rotated assigner's cost grows with them; det/ins mosaics hold more.
MAX_OBJECTS = 5
DEMO_ROTATED_CANDIDATES = 300
# (epochs, light-stage epochs, AdamW learning rate at batch 16) per task: short schedules for two CPU
# cores (an Ins step costs about twice a det one); rot has one stage. det at 0.004 dipped mid-run
# (box AP 0.53 → 0.16) in one of three runs; 0.003 did not.
TASK_SCHEDULES = {"det": (44, 22, 0.003), "ins": (20, 10, 0.004), "rot": (20, None, 0.004)}


def add_parser(subparsers):
    parser = subparsers.add_parser("demo", help=HELP, description=HELP)
    parser.add_argument(
        "--task",
        choices=tuple(OUT_DIRS),
        default="det",
        help="det: boxes (default); ins: boxes and masks (RTMDet-Ins); rot: rotated boxes (RTMDet-R)",
    )
    parser.add_argument(
        "--out", help="output directory (default runs/demo, runs/demo_ins or runs/demo_rot, or the first free of "
        "runs/demo2, ...)"
    )
    parser.add_argument("--images", type=int, default=256, help="training images (256)")
    parser.add_argument("--epochs", type=int, help="epochs (det 44, ins and rot 20)")
    parser.add_argument(
        "--stage2-epochs",
        type=int,
        help="the last epochs without Mosaic/MixUp (default: half of --epochs; det and ins only)",
    )
    parser.add_argument("--image-size", type=int, default=160, help="image side (160)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch (16)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate at this batch (det 0.003, ins and rot 0.004)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    parser.set_defaults(run=run)


def build_demo_model(num_classes, class_names, image_size, seed, task="det"):
    """The task's variant at its tiny size, with `exp_on_reg` where the head has the option (not RTMDet-Ins)."""
    import keras

    from keras_rtmdet.models.detector_variant import detector_class

    keras.utils.set_random_seed(seed)
    detector = detector_class(task)
    arch = dict(detector.presets[detector.variant.preset_for_size("tiny")]["arch"], num_classes=num_classes)
    settings = dict(class_names=class_names, image_size=(image_size, image_size))
    if "exp_on_reg" in arch:
        arch["exp_on_reg"] = True
    if detector.variant.sliding_windows:
        # At most a few objects per image: a few hundred NMS candidates, not DOTA's 2000 (a 2000² rotated-IoU
        # matrix per image is most of the evaluation time on a CPU).
        settings.update(max_candidates=DEMO_ROTATED_CANDIDATES, max_detections=100)
    return detector.from_arch(**arch, **settings)


def demo_sources(task, num_images, side, seed):
    """(train, val) generated sources: `num_images` and max(8, num_images/8) images of 3/4·side to side."""
    sizes = ((side * 3 // 4, side), (side * 3 // 4, side))
    if task == "rot":
        from keras_rtmdet.data.synthetic_rotated import SyntheticRotatedSource

        source_class, common = SyntheticRotatedSource, dict(image_size=sizes, num_classes=3, max_objects=MAX_OBJECTS)
    else:
        from keras_rtmdet.data.synthetic import SyntheticShapesSource

        source_class = SyntheticShapesSource
        common = dict(image_size=sizes, num_classes=3, max_objects=MAX_OBJECTS, with_masks=task == "ins")
    return source_class(num_images, seed=seed, **common), source_class(max(8, num_images // 8), seed=seed + 1, **common)


def final_report(model, val):
    """The closing line's metrics: DOTA mAP50 / mAP75 / mmAP for rot, COCO box (and mask) AP otherwise."""
    from keras_rtmdet.evaluation.protocols import evaluate_model

    stats = evaluate_model(model, val, batch_size=16, verbose=0)
    if model.variant.evaluation == "dota":
        return f"[bold]Final mAP50 {stats['mAP50']:.3f}[/] (mAP75 {stats['mAP75']:.3f}, mmAP {stats['mmAP']:.3f})"
    masks = f", [bold]mask AP {stats['segm_AP']:.3f}[/] (AP50 {stats['segm_AP50']:.3f})" if "segm_AP" in stats else ""
    return f"[bold]Final box AP {stats['AP']:.3f}[/] (AP50 {stats['AP50']:.3f}){masks}"


def demo_schedule(task, epochs=None, stage2_epochs=None):
    """(epochs, light-stage epochs) of the demo: the task's `TASK_SCHEDULES`, or half of `epochs` light."""
    default_epochs, default_stage2, _ = TASK_SCHEDULES[task]
    if default_stage2 is None:
        if stage2_epochs is not None:
            raise ValueError(f"--stage2-epochs: --task {task} trains in one stage.")
        return epochs or default_epochs, None
    if epochs is None:
        epochs, stage2 = default_epochs, default_stage2
    else:
        stage2 = epochs // 2
    stage2 = stage2 if stage2_epochs is None else stage2_epochs
    if not 0 <= stage2 <= epochs:
        raise ValueError(f"--stage2-epochs must be in [0, --epochs={epochs}], got {stage2}.")
    return epochs, stage2


def run(args):
    out, err = Console(), Console(stderr=True)
    sizes = (args.images, args.epochs or 1, args.image_size, args.batch_size)
    if min(sizes) < 1 or (args.lr is not None and not args.lr > 0):
        err.print("[red]error:[/] --images, --epochs, --image-size, --batch-size and --lr must be positive.")
        return 2
    try:
        epochs, stage2_epochs = demo_schedule(args.task, args.epochs, args.stage2_epochs)
    except ValueError as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    from keras_rtmdet_cli.train import finish_run
    from keras_rtmdet.training.train_recipe import train_rtmdet

    out_dir = args.out or next_free_folder(os.path.join("runs", OUT_DIRS[args.task]))
    side = args.image_size
    train, val = demo_sources(args.task, args.images, side, args.seed)
    model = build_demo_model(train.num_classes, list(train.class_names), side, args.seed, args.task)
    metric = "DOTA mAP (rotated IoU)" if args.task == "rot" else "pycocotools"
    out.print(
        Panel(
            f"Training a {model.count_params():,}-parameter {model.variant.display_name} on {len(train)} generated images of "
            f"{', '.join(train.class_names)} ({side}² , {epochs} epochs, batch {args.batch_size}); "
            f"validation on {len(val)} other images with {metric}. Output: {escape(out_dir)}",
            title="rtmdet demo",
        )
    )
    start = time.time()
    try:
        train_rtmdet(
            model,
            train,
            out_dir,
            epochs=epochs,
            stage2_epochs=stage2_epochs,
            batch_size=args.batch_size,
            val_source=val,
            model_size="tiny",
            image_size=side,
            max_boxes=MAX_OBJECTS if args.task == "rot" else 100,
            warmup_steps=50,
            base_learning_rate=TASK_SCHEDULES[args.task][2] if args.lr is None else args.lr,
            base_batch_size=args.batch_size,
            val_every=max(1, epochs // 4),
            seed=args.seed,
            verbose=2,
        )
    except (ValueError, OSError) as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    minutes = (time.time() - start) / 60
    report = final_report(model, val)
    finish_run(model, val, out_dir, 6, out)
    out.print(f"{report} on the validation images after {minutes:.1f} min of training.", highlight=False)
    return 0
