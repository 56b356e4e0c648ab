"""Entry point of the `rtmdet` command: an argparse dispatcher over the subcommands.

Each subcommand module provides `add_parser(subparsers)`, which registers
its arguments and sets `run(args) -> exit code` as the parser default.
Building the parsers imports neither Keras nor `keras_rtmdet` (so `--help`
answers at once): a command imports the library when it runs, or when an
option's value is checked by the library's own rule (`arg_types`).

`--verbose`, before or after the subcommand, shows what the libraries print;
by default `quiet.library_noise_hidden` keeps their start-up lines, info and
warnings out of the command's output.
"""

import argparse
import contextlib
import sys

from keras_rtmdet_cli import convert
from keras_rtmdet_cli import demo
from keras_rtmdet_cli import export
from keras_rtmdet_cli import parity
from keras_rtmdet_cli import predict
from keras_rtmdet_cli import quiet
from keras_rtmdet_cli import train
from keras_rtmdet_cli import val

SUBCOMMANDS = (predict, train, val, export, convert, demo, parity)
DISTRIBUTION = "keras-rtmdet"
VERBOSE_HELP = "show the libraries' own output (TensorFlow's log lines, warnings)"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rtmdet",
        description="RTMDet object detection with Keras 3: detect, train, evaluate, export, convert MMDetection checkpoints.",
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    for command_parser in subparsers.choices.values():
        # SUPPRESS: a subcommand without the flag leaves the one given before it as it was.
        command_parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def main(argv=None):
    """Run `rtmdet` with `argv` (default `sys.argv[1:]`); return the exit code.

    0: success; 1: some inputs failed, or the parity check found a mismatch; 2: bad
    usage, or a model/checkpoint that cannot be loaded. argparse's own usage
    errors raise `SystemExit(2)`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # Read before the full parse, whose option checks may already start the backend.
    with contextlib.nullcontext() if verbose_requested(argv) else quiet.library_noise_hidden():
        args = parser.parse_args(argv)
        return args.run(args)


def verbose_requested(argv):
    """Whether `--verbose` is among the arguments, wherever it stands."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--verbose", action="store_true")
    return early.parse_known_args(argv)[0].verbose


def installed_version():
    """The installed distribution's version, read without importing `keras_rtmdet` (which starts Keras)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        from keras_rtmdet.version import __version__

        return __version__


class VersionAction(argparse.Action):
    """`--version`, which reads the version only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        help = help or "show the version and exit"
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{DISTRIBUTION} {installed_version()}")
        parser.exit()


if __name__ == "__main__":
    raise SystemExit(main())
