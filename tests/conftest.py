import atexit
import collections
import os
import shutil
import tempfile

if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test` runs two pytest-xdist workers on two cores. A worker's own pool of two threads
    # would oversubscribe them, and OpenMP's spinning threads then wait on each other (an eager
    # torch training step of the overfit tests took 1.06 s against 0.16 s with one thread each).
    # One thread each, set before any backend starts.
    for _variable in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_variable, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
if os.environ.get("KERAS_BACKEND") == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # The tests build the same small models again and again (a fresh one per test,
    # per preset, per resumed run), and a new model's jitted train / predict step is
    # a new function to JAX, compiled again (~10-60 s on 2 CPU cores) although its
    # XLA program is the one compiled before. A compilation cache for this session
    # only (removed at exit) compiles each distinct program once: same executables,
    # same results, nothing carried over between runs. pytest-xdist's workers start
    # from this process' environment, so they share the one cache.
    _jax_cache = tempfile.mkdtemp(prefix="keras_rtmdet_jax_cache_")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache  # programs compiled in over 1 s (JAX's default)

import keras  # noqa: E402
import pytest  # noqa: E402

# The tiers (tests/README.md). Tests not chosen for a pass are deselected, never skipped: the
# summary counts them apart, and a skip keeps meaning "could not run here".
BACKEND_INDEPENDENT = "backend_independent"  # the result cannot depend on the Keras backend: one pass
BACKENDS = "backends"  # backends("jax", ...): a check of those backends' own code path only
SLOW = "slow"  # full-size or long: the default tier covers the same behaviour at small size
DESELECTED = pytest.StashKey[dict]()  # {reason: count} of this pass
# The modules that take longest in a pass (each 40-150 s of one worker on two CPU cores, JAX and TF
# passes, `--durations` of `make test`), longest first. `make test` hands whole modules to its two
# workers in collection order (`--dist loadfile --no-loadscope-reorder`); started first, these end
# while the short modules fill the other worker, instead of one of them running alone at the end.
LONGEST_MODULES = (
    "tests/distribute/test_data_parallel.py",
    "tests/cli/test_rotated_cli.py",
    "tests/training/test_rotated_training.py",
    "tests/training/test_ins_training.py",
    "tests/training/test_recipe_resume.py",
    "tests/cli/test_ins_cli.py",
    "tests/export/test_saved_model_export.py",
    "tests/cli/test_train_cli.py",
    "tests/export/test_onnx_export.py",
    "tests/export/test_rotated_export.py",
    "tests/export/test_litert_export.py",
    "tests/export/test_onnx_conversions.py",
    "tests/training/test_overfit.py",
    "tests/evaluation/test_coco_callback.py",
    "tests/training/test_train_step.py",
    "tests/training/test_resume.py",
)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the slow tier (full-size models)")
    parser.addoption(
        "--backend-independent",
        choices=("run", "deselect"),
        default="run",
        help="run or deselect the backend-independent tests (`make test` runs them in its first pass only)",
    )


def pytest_configure(config):
    keras.config.disable_traceback_filtering()
    if keras.config.backend() == "torch":
        import torch

        # TF32 convolutions on Ampere+ GPUs err by ~1e-3: parity needs full float32.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def _deselect_reason(item, config):
    if SLOW in item.keywords and not config.getoption("--run-slow"):
        return "slow tier"
    if BACKEND_INDEPENDENT in item.keywords and config.getoption("--backend-independent") == "deselect":
        return "backend-independent, run in the first pass"
    marker = item.get_closest_marker(BACKENDS)
    if marker is not None and keras.config.backend() not in marker.args:
        return f"{'/'.join(marker.args)} only"
    return None


def pytest_collection_modifyitems(config, items):
    kept, deselected, reasons = [], [], collections.Counter()
    for item in items:
        reason = _deselect_reason(item, config)
        (deselected if reason else kept).append(item)
        if reason:
            reasons[reason] += 1
    config.stash[DESELECTED] = dict(reasons)
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: tell the controller
        config.workeroutput["deselected"] = dict(reasons)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    kept.sort(key=_longest_first)
    items[:] = kept


def _longest_first(item):
    """The rank of the item's module in LONGEST_MODULES (the others after them, in collection order)."""
    module = item.nodeid.split("::")[0]
    return LONGEST_MODULES.index(module) if module in LONGEST_MODULES else len(LONGEST_MODULES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist's controller collects nothing itself: it takes the workers' (equal) deselections."""
    if "deselected" in getattr(node, "workeroutput", {}):
        node.config.stash[DESELECTED] = node.workeroutput["deselected"]


def pytest_terminal_summary(terminalreporter, config):
    reasons = config.stash.get(DESELECTED, {})
    detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    terminalreporter.write_line(f"deselected: {sum(reasons.values())}" + (f" ({detail})" if detail else ""))


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.config.backend()}"
