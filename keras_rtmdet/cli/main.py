"""Entry point of the `rtmdet` command: an argparse dispatcher over the subcommands.

Each subcommand module provides `add_parser(subparsers)`, which registers
its arguments and sets `run(args) -> exit code` as the parser default.
"""

import argparse
import os

# TensorFlow's C++ start-up chatter drowns the tool's own output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_rtmdet.cli import convert  # noqa: E402
from keras_rtmdet.cli import demo  # noqa: E402
from keras_rtmdet.cli import export  # noqa: E402
from keras_rtmdet.cli import parity  # noqa: E402
from keras_rtmdet.cli import predict  # noqa: E402
from keras_rtmdet.cli import train  # noqa: E402
from keras_rtmdet.cli import val  # noqa: E402
from keras_rtmdet.version import __version__  # noqa: E402

SUBCOMMANDS = (predict, train, val, export, convert, demo, parity)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rtmdet",
        description="RTMDet object detection with Keras 3: detect, train, evaluate, export, convert MMDetection checkpoints.",
    )
    parser.add_argument("--version", action="version", version=f"keras-rtmdet {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    """Run `rtmdet` with `argv` (default `sys.argv[1:]`); return the exit code.

    0: success; 1: some inputs failed, or the parity check found a mismatch; 2: bad
    usage, or a model/checkpoint that cannot be loaded. argparse's own usage
    errors raise `SystemExit(2)`.
    """
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
