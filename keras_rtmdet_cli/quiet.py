"""What `rtmdet` keeps quiet of the libraries under it, unless `--verbose`.

- TensorFlow's C++ log lines below errors: `TF_CPP_MIN_LOG_LEVEL=2`, set before TensorFlow starts and
  inherited by the subprocesses a command starts (export's TensorFlow one); likewise `TORCH_LOGS`, and
  OpenCV's `OPENCV_LOG_LEVEL` and `OPENCV_FFMPEG_LOGLEVEL`.
- TensorFlow's start-up lines: absl's "All log messages before absl::InitializeLog() ..." preamble and
  oneDNN's notice, which TensorFlow 2.21 prints whatever `TF_CPP_MIN_LOG_LEVEL` says, once per native
  library (so twice). They are dropped from what the first import of `tensorflow` writes to the
  process' standard error, whoever imports it: Keras with the TensorFlow backend, or, under torch and
  JAX, Keras' saving and tf.data halfway through a command.
- Warnings of the libraries' Python loggers (`LIBRARY_LOGGERS`: TensorFlow, absl, the ONNX exporters)
  and the library-internal Python warnings in `KNOWN_WARNINGS`. Errors still show.
"""

import contextlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings

# The two lines TensorFlow's import prints at any TF_CPP_MIN_LOG_LEVEL, each once per native library:
# `WARNING: All log messages before absl::InitializeLog() is called are written to STDERR` and
# `I0000 00:00:1796491765.242893    2812 port.cc:153] oneDNN custom operations are on. You may see ...`.
START_UP_NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations"
)
# Read by the libraries when they start: TensorFlow's C++ log lines below errors; torch's logger of its ONNX
# exporter ("torchvision is not installed. Skipping torchvision::nms"), which torch resets on import, at errors;
# OpenCV's warnings and its FFmpeg's messages below fatal ("can't open camera by index", "moov atom not found"),
# which repeat what `rtmdet predict` says of a video it cannot open.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TORCH_LOGS": "-onnx",
    "OPENCV_LOG_LEVEL": "ERROR",
    "OPENCV_FFMPEG_LOGLEVEL": "8",
}
# Python loggers at errors for the command (those of libraries started already included): tf2onnx's
# optimizer logs the traceback of each pass it skips, onnx_ir (JAX's ONNX export) each untyped value.
LIBRARY_LOGGERS = ("tensorflow", "absl", "torch.onnx", "tf2onnx", "onnx_ir")
# Warnings raised inside the libraries about the libraries (seen with Keras 3.15 and torch 2.13).
KNOWN_WARNINGS = (
    # tf2onnx's NumPy 2 patch in Keras' ONNX export: "In the future `np.object` will be defined as ...".
    {"category": FutureWarning, "module": r"keras\.src\.export\.tf2onnx_lib"},
    # torch.export's own pytree code during torch's ONNX export.
    {"category": FutureWarning, "message": r"`isinstance\(treespec, LeafSpec\)` is deprecated"},
)


@contextlib.contextmanager
def library_noise_hidden():
    """Run a command with the libraries' noise hidden; warning filters and logger levels are restored after.

    The environment variables stay set: the libraries read them once, when they start (in this process or
    in a subprocess the command starts).
    """
    for variable, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(variable, value)
    loggers = {name: logging.getLogger(name) for name in LIBRARY_LOGGERS}
    levels = {name: logger.level for name, logger in loggers.items()}
    start_up = _QuietTensorFlowStart()
    with warnings.catch_warnings():
        for known in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", **known)
        for logger in loggers.values():
            logger.setLevel(logging.ERROR)
        sys.meta_path.insert(0, start_up)
        try:
            yield
        finally:
            sys.meta_path.remove(start_up)
            for name, logger in loggers.items():
                logger.setLevel(levels[name])


class _QuietTensorFlowStart:
    """An import finder that has `tensorflow`'s module run with its start-up lines dropped.

    Every look-up of `tensorflow` passes here, mere checks (`importlib.util.find_spec`) included, so
    each spec found is given the filter, and the one that is loaded uses it.
    """

    def __init__(self):
        self.looking = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.looking:
            return None
        self.looking = True
        try:
            spec = importlib.util.find_spec(name)  # by the finders after this one
        finally:
            self.looking = False
        if spec is not None and spec.loader is not None:
            run_module = spec.loader.exec_module

            def exec_module(module):
                with standard_error_filtered(START_UP_NOISE):
                    run_module(module)

            spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def standard_error_filtered(noise):
    """Hold what the block writes to file descriptor 2 (native code included), then write it back but the
    lines that `noise` matches at their start."""
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no standard error to filter (sys.stderr None, fd 2 closed)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(original, 2)
            os.close(original)
            held.seek(0)
            kept = b"".join(line for line in held if not noise.match(line))
            while kept:
                kept = kept[os.write(2, kept) :]
