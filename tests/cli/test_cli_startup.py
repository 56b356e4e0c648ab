"""`rtmdet`'s start: `--help` and `--version` without the library, and the libraries kept quiet unless `--verbose`."""

import logging
import os
import subprocess
import sys
import warnings

import pytest

from keras_rtmdet.export.export import EXPORT_FORMATS
from keras_rtmdet.export.export import FORMAT_PRECISIONS
from keras_rtmdet.export.export import TENSORFLOW_FORMATS
from keras_rtmdet.version import __version__
from keras_rtmdet_cli import demo
from keras_rtmdet_cli import export
from keras_rtmdet_cli import quiet
from keras_rtmdet_cli.main import SUBCOMMANDS
from keras_rtmdet_cli.main import build_parser
from keras_rtmdet_cli.main import main

pytestmark = pytest.mark.backend_independent

COMMANDS = [module.__name__.rsplit(".", 1)[-1] for module in SUBCOMMANDS]
# Prints every help (the root's, each command's) and --version, then the heavy modules imported.
HELP_SCRIPT = """
import contextlib, io, sys
from keras_rtmdet_cli.main import main
for argv in [["--help"], ["--version"], *([name, "--help"] for name in sys.argv[1:])]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit) as exited:
        main(argv)
    assert exited is None, argv
print(sorted({name.split(".")[0] for name in sys.modules} & {"keras", "keras_rtmdet", "tensorflow", "torch", "jax"}))
"""


def test_help_and_version_import_neither_keras_nor_the_library():
    # A fresh interpreter: this one has imported both already.
    printed = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT, *COMMANDS], capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == "[]"


def test_version_is_the_library_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"keras-rtmdet {__version__}\n"


def test_export_formats_are_the_library_formats():
    assert export.EXPORT_FORMATS == EXPORT_FORMATS
    assert export.TENSORFLOW_FORMATS == TENSORFLOW_FORMATS
    args = build_parser().parse_args(["export", "--preset", "p", "--out", "m.xml", "--int8", "--calibration", "synthetic"])
    assert args.precision == "int8" and args.calibration == "synthetic" and args.calibration_images == 200
    for precision in {p for allowed in FORMAT_PRECISIONS.values() for p in allowed}:
        assert build_parser().parse_args(["export", "--preset", "p", "--out", "m", "--precision", precision])


@pytest.mark.parametrize(
    "argv, verbose",
    [
        (["val", "--preset", "p"], False),
        (["--verbose", "val", "--preset", "p"], True),
        (["val", "--preset", "p", "--verbose"], True),
        (["--verbose", "val", "--verbose", "--preset", "p"], True),
    ],
)
def test_verbose_before_or_after_the_command(argv, verbose):
    assert build_parser().parse_args(argv).verbose is verbose


def _library_output_settings(seen):
    """A stand-in for a command's `run` that records what the libraries would print under it."""

    def run(args):
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("In the future `np.object` will be defined as ...", FutureWarning)
        seen.update(
            environment={variable: os.environ.get(variable) for variable in quiet.QUIET_ENVIRONMENT},
            loggers={name: logging.getLogger(name).getEffectiveLevel() for name in quiet.LIBRARY_LOGGERS},
            warned=bool(caught),
        )
        return 0

    return run


def test_a_command_runs_with_the_libraries_quiet_and_verbose_leaves_them(monkeypatch):
    for variable in quiet.QUIET_ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    before = {name: logging.getLogger(name).level for name in quiet.LIBRARY_LOGGERS}
    seen = {}
    monkeypatch.setattr(demo, "run", _library_output_settings(seen))
    monkeypatch.setattr(quiet, "KNOWN_WARNINGS", ({"category": FutureWarning, "message": "In the future"},))

    assert main(["--verbose", "demo"]) == 0
    assert set(seen["environment"].values()) == {None} and seen["warned"]
    assert main(["demo"]) == 0
    assert seen == {
        "environment": quiet.QUIET_ENVIRONMENT,
        "loggers": dict.fromkeys(quiet.LIBRARY_LOGGERS, logging.ERROR),
        "warned": False,
    }
    assert {name: logging.getLogger(name).level for name in quiet.LIBRARY_LOGGERS} == before


def test_start_up_lines_are_dropped_and_the_rest_kept(capfd):
    with quiet.standard_error_filtered(quiet.START_UP_NOISE):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796491765.242893    2812 port.cc:153] oneDNN custom operations are on. You may\n")
        os.write(2, b"E0000 00:00:1796491940.735453    4109 util.cc:131] a real error\n")
    assert capfd.readouterr().err == "E0000 00:00:1796491940.735453    4109 util.cc:131] a real error\n"


def test_tensorflow_starting_during_the_parse_prints_only_the_usage_error(capsys):
    # `--batch-size 0` is refused by the library's own rule, whose import starts TensorFlow (the backend there).
    argv = ["val", "--preset", "p", "--batch-size", "0"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    usage_error = capsys.readouterr().err
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "keras_rtmdet_cli", *argv]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(env, KERAS_BACKEND="tensorflow"))
    assert result.returncode == 2 and result.stderr == usage_error
