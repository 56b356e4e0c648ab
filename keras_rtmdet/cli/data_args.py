"""Dataset options shared by `rtmdet train` and `rtmdet val`, and the sources they build."""

import argparse


def add_data_arguments(parser, train=True):
    group = parser.add_argument_group(
        "data (one of: COCO JSON files, a tensorflow-datasets name, or --synthetic)"
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
        "--synthetic",
        type=int,
        metavar="N",
        help="generated shapes dataset with N training images (and N/4 for validation), no files needed",
    )
    group.add_argument("--synthetic-size", type=int, default=192, help="synthetic image side (default 192)")
    group.add_argument("--synthetic-classes", type=int, default=3, help="synthetic classes, 1-6 (default 3)")
    group.add_argument(
        "--on-corrupt",
        choices=("skip", "raise"),
        default="skip",
        help="missing/corrupt image files: report and skip (default) or stop",
    )


def _check_choice(args, train):
    chosen = [
        name
        for name, given in (
            ("COCO JSON", getattr(args, "train_ann", None) or args.val_ann),
            ("--tfds", args.tfds),
            ("--synthetic", args.synthetic),
        )
        if given
    ]
    if len(chosen) != 1:
        what = "none" if not chosen else " and ".join(chosen)
        raise argparse.ArgumentTypeError(f"give exactly one data source (COCO JSON, --tfds or --synthetic), got {what}.")
    if chosen == ["COCO JSON"]:
        pairs = [("--val-ann", "--val-images")] + ([("--train-ann", "--train-images")] if train else [])
        for ann, images in pairs:
            a, i = getattr(args, ann[2:].replace("-", "_")), getattr(args, images[2:].replace("-", "_"))
            if bool(a) != bool(i):
                raise argparse.ArgumentTypeError(f"{ann} and {images} go together.")
        if train and not args.train_ann:
            raise argparse.ArgumentTypeError("training needs --train-ann and --train-images.")


def build_sources(args, train=True):
    """`(train_source or None, val_source or None)` from parsed arguments; errors name the bad option."""
    _check_choice(args, train)
    if args.synthetic:
        from keras_rtmdet.data.synthetic import SyntheticShapesSource

        side = args.synthetic_size
        size = ((side * 3 // 4, side), (side * 3 // 4, side))
        common = dict(image_size=size, num_classes=args.synthetic_classes)
        val = SyntheticShapesSource(max(4, args.synthetic // 4), seed=1, **common)
        return (SyntheticShapesSource(args.synthetic, seed=0, **common) if train else None), val
    if args.tfds:
        from keras_rtmdet.data.tfds_source import TfdsSource

        val = TfdsSource(args.tfds, args.val_split, args.tfds_data_dir) if args.val_split else None
        tr = TfdsSource(args.tfds, args.train_split, args.tfds_data_dir) if train else None
        return tr, val
    from keras_rtmdet.data.coco_json import CocoJsonSource

    val = CocoJsonSource(args.val_ann, args.val_images, on_corrupt=args.on_corrupt) if args.val_ann else None
    tr = None
    if train:
        tr = CocoJsonSource(
            args.train_ann, args.train_images, filter_empty=True, min_size=32, on_corrupt=args.on_corrupt
        )
    return tr, val
