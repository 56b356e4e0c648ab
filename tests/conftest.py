import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
if os.environ.get("KERAS_BACKEND") == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # The tests build the same small models again and again (a fresh one per test,
    # per preset, per resumed run), and a new model's jitted train / predict step is
    # a new function to JAX, compiled again (~10-60 s on 2 CPU cores) although its
    # XLA program is the one compiled before. A compilation cache for this session
    # only (removed at exit) compiles each distinct program once: same executables,
    # same results, nothing carried over between runs.
    _jax_cache = tempfile.mkdtemp(prefix="keras_rtmdet_jax_cache_")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache  # programs compiled in over 1 s (JAX's default)

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run full-size model tests")


def pytest_configure(config):
    keras.config.disable_traceback_filtering()
    if keras.config.backend() == "torch":
        import torch

        # TF32 convolutions on Ampere+ GPUs err by ~1e-3: parity needs full float32.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="full-size test: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.config.backend()}"
