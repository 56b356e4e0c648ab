"""Dataset options shared by `rtmdet train` and `rtmdet val`, and the sources they build.

Rotated models (RTMDet-R) read DOTA folders (`--dota IMAGE_DIR ANN_DIR`) or
the synthetic rotated shapes (`--synthetic` with `rotated=True`); the others
COCO JSON, tensorflow-datasets or the synthetic shapes.
"""

import argparse

from keras_rtmdet_cli.arg_types import positive_int


def add_data_arguments(parser, train=True):
    group = parser.add_argument_group(
        "data (one of: COCO JSON files, a tensorflow-datasets name, DOTA folders (rotated models), or --synthetic)"
    )
    if train:
        group.add_argument("--train-ann", metavar="JSON", help="COCO annotation file of the training set")
        group.add_argument("--train-images", metavar="DIR", help="image folder of the training set")
    group.add_argument("--val-ann", metavar="JSON", help="COCO annotation file of the validation set")
    group.add_argument("--val-images", metavar="DIR", help="image folder of the validation set")
    group.add_argument("--tfds", metavar="NAME", help="tensorflow-datasets name, e.g. coco/2017 (prepared locally)")
    if train:
        group.add_argument("--train-split", default="train", help="tfds training split (default train)")
    group.add_argument("--val-split", default="validation", help="tfds validation split (default validation)")
    group.add_argument("--tfds-data-dir", metavar="DIR", help="tfds data directory")
    group.add_argument(
        "--dota",
        nargs=2,
        metavar=("IMAGE_DIR", "ANN_DIR"),
        help="DOTA-format images and annotation txts (e.g. a split's images/ and annfiles/), for rotated "
        "models: the " + ("training set (images without objects are left out)" if train else "evaluated set"),
    )
    if train:
        group.add_argument(
            "--val-dota", nargs=2, metavar=("IMAGE_DIR", "ANN_DIR"), help="DOTA-format validation set (with --dota)"
        )
    group.add_argument(
        "--dota-classes",
        metavar="NAMES",
        help="comma-separated class names of the --dota annotations, in label order (default: the 15 of DOTA-v1.0)",
    )
    group.add_argument(
        "--synthetic",
        type=positive_int,
        metavar="N",
        help="generated shapes dataset with N training images (and N/4 for validation), no files needed; "
        "elongated shapes at random angles with rotated boxes for rotated models",
    )
    group.add_argument("--synthetic-size", type=positive_int, default=192, help="synthetic image side (default 192)")
    group.add_argument(
        "--synthetic-classes", type=int, default=3, help="synthetic classes, 1-6 (rotated: 1-4) (default 3)"
    )
    group.add_argument(
        "--on-corrupt",
        choices=("skip", "raise"),
        default="skip",
        help="missing/corrupt image files: report and skip (default) or stop",
    )


def _check_choice(args, train, rotated):
    dota = getattr(args, "dota", None) or getattr(args, "val_dota", None)
    chosen = [
        name
        for name, given in (
            ("COCO JSON", getattr(args, "train_ann", None) or args.val_ann),
            ("--tfds", args.tfds),
            ("--dota", dota),
            ("--synthetic", args.synthetic),
        )
        if given
    ]
    if len(chosen) != 1:
        what = "none" if not chosen else " and ".join(chosen)
        raise argparse.ArgumentTypeError(
            f"give exactly one data source (COCO JSON, --tfds, --dota or --synthetic), got {what}."
        )
    if rotated and chosen[0] in ("COCO JSON", "--tfds"):
        raise argparse.ArgumentTypeError(
            f"a rotated model (RTMDet-R) needs rotated boxes: give --dota or --synthetic, not {chosen[0]}."
        )
    if not rotated and chosen == ["--dota"]:
        raise argparse.ArgumentTypeError("--dota data have rotated boxes: use --task rot or a rotated (RTMDet-R) preset.")
    if train and chosen == ["--dota"] and not getattr(args, "dota", None):
        raise argparse.ArgumentTypeError("training needs --dota IMAGE_DIR ANN_DIR (--val-dota is the validation set).")
    if chosen == ["COCO JSON"]:
        pairs = [("--val-ann", "--val-images")] + ([("--train-ann", "--train-images")] if train else [])
        for ann, images in pairs:
            a, i = getattr(args, ann[2:].replace("-", "_")), getattr(args, images[2:].replace("-", "_"))
            if bool(a) != bool(i):
                raise argparse.ArgumentTypeError(f"{ann} and {images} go together.")
        if train and not args.train_ann:
            raise argparse.ArgumentTypeError("training needs --train-ann and --train-images.")


def build_sources(args, train=True, rotated=False):
    """`(train_source or None, val_source or None)` from parsed arguments; errors name the bad option.

    `rotated`: sources with (N, 5) rotated boxes, for an RTMDet-R.
    """
    _check_choice(args, train, rotated)
    if rotated:
        return _rotated_sources(args, train)
    if args.synthetic:
        from keras_rtmdet.data.synthetic import SyntheticShapesSource

        return _synthetic_sources(SyntheticShapesSource, args, train)
    if args.tfds:
        from keras_rtmdet.data.tfds_source import TfdsSource

        common = dict(data_dir=args.tfds_data_dir, on_corrupt=args.on_corrupt)
        val = TfdsSource(args.tfds, args.val_split, **common) if args.val_split else None
        tr = TfdsSource(args.tfds, args.train_split, **common) if train else None
        return tr, val
    from keras_rtmdet.data.coco_json import CocoJsonSource

    val = CocoJsonSource(args.val_ann, args.val_images, on_corrupt=args.on_corrupt) if args.val_ann else None
    tr = None
    if train:
        tr = CocoJsonSource(
            args.train_ann, args.train_images, filter_empty=True, min_size=32, on_corrupt=args.on_corrupt
        )
    return tr, val


def _synthetic_sources(source_class, args, train):
    """`--synthetic N` images (seed 0) for training and N/4 (at least 4, seed 1) for validation."""
    side = args.synthetic_size
    size = ((side * 3 // 4, side), (side * 3 // 4, side))
    common = dict(image_size=size, num_classes=args.synthetic_classes)
    val = source_class(max(4, args.synthetic // 4), seed=1, **common)
    return (source_class(args.synthetic, seed=0, **common) if train else None), val


def _rotated_sources(args, train):
    if args.synthetic:
        from keras_rtmdet.data.synthetic_rotated import SyntheticRotatedSource

        return _synthetic_sources(SyntheticRotatedSource, args, train)
    from keras_rtmdet.data.dota import DOTA_CLASSES
    from keras_rtmdet.data.dota import DotaSource

    names = DOTA_CLASSES
    if args.dota_classes:
        names = [name.strip() for name in args.dota_classes.split(",")]
        if not all(names) or len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"--dota-classes needs distinct, non-empty names, got {args.dota_classes!r}.")
    common = dict(class_names=names, on_corrupt=args.on_corrupt)
    if not train:
        return None, DotaSource(*args.dota, **common)
    val = DotaSource(*args.val_dota, **common) if args.val_dota else None
    return DotaSource(*args.dota, filter_empty=True, **common), val
