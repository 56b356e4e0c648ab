"""Data-parallel training on two replicas equals one device training on the whole batch.

Each backend's engine runs in a subprocess (the device count is fixed before a backend starts): JAX's
`DataParallel` and TensorFlow's `MirroredStrategy` on two virtual CPU devices, torch's DDP in two gloo
processes under torchrun. The suite's backend picks the engine, so each backend's pass checks its own.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "data_parallel_worker.py")

# Observed: losses within 3e-6 relative, updates within 3.3e-3 of each tensor's largest update (TF; JAX
# 1.3e-3, torch 1.0e-3, torch Ins 8.7e-4), float32 reduction order. With the box or mask normaliser or the
# BN statistics left per replica the updates differ by 3 to 17 times their size and the losses by ~1e-2.
LOSS_RTOL, UPDATE_TOL = 2e-5, 1e-2
# RTMDet-Ins adds the mask loss, whose normaliser (mask positives) is averaged by the same keras.ops code on
# every engine; it is checked in the torch pass, the quickest to run two more processes.
MODELS = ("det", "ins") if keras.backend.backend() == "torch" else ("det",)


def run_worker(*args, processes=1):
    backend = keras.backend.backend()
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = [sys.executable, WORKER, *args]
    if processes > 1:
        env["OMP_NUM_THREADS"] = "1"  # two processes on the CI's two cores
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        command = launcher + command[1:]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run this backend checks, from one launch of the worker (torch: the one-device reference first).

    OUT/<kind>-single.npz and OUT/<kind>-parallel.npz per model kind, and OUT/recipe (train_rtmdet's run).
    """
    out = tmp_path_factory.mktemp("data_parallel")
    models = ["--models", ",".join(MODELS)]
    if keras.backend.backend() == "torch":
        run_worker("single", str(out), *models)
        run_worker("parallel", str(out), *models, "--recipe", processes=2)
    else:
        run_worker("both", str(out), *models, "--recipe")
    return out


def update_errors(single, parallel):
    """{weight: max |Δ_single − Δ_parallel| / max |Δ_single|}, a float32 rounding step of the weight forgiven."""
    errors = {}
    for key in single.files:
        if not key.startswith("w:"):
            continue
        start = "init:" + key[2:]
        np.testing.assert_array_equal(single[start], parallel[start], err_msg=f"{key} starts differently")
        moved = single[key].astype("float64") - single[start]
        moved_parallel = parallel[key].astype("float64") - parallel[start]
        scale = np.abs(moved).max()
        if scale > 0:
            slack = 2 * np.spacing(np.abs(single[key]))
            errors[key[2:]] = float(np.maximum(np.abs(moved - moved_parallel) - slack, 0).max() / scale)
    return errors


@pytest.mark.parametrize("model", MODELS)
def test_two_replicas_give_the_losses_and_weights_of_one_device(runs, model):
    single, parallel = np.load(runs / f"{model}-single.npz"), np.load(runs / f"{model}-parallel.npz")
    assert int(single["replicas"]) == 1 and int(parallel["replicas"]) == 2
    names = ("log:loss", "log:loss_cls", "log:loss_bbox") + (("log:loss_mask",) if model == "ins" else ())
    for name in names:
        assert single[name].shape == (2,) and np.all(single[name] > 0.5), (name, single[name])
        np.testing.assert_allclose(parallel[name], single[name], rtol=LOSS_RTOL, err_msg=name)
    errors = update_errors(single, parallel)
    # Every trainable kernel moved, and the BN statistics (non-trainable, averaged from the batch) too.
    assert any(k.endswith("moving_mean") for k in errors) and any(k.endswith("moving_variance") for k in errors)
    assert len(errors) > 300
    worst = sorted(errors.items(), key=lambda item: -item[1])[:3]
    assert worst[0][1] <= UPDATE_TOL, worst


def test_train_rtmdet_data_parallel_keeps_one_ema_log_and_checkpoint(runs):
    """The whole recipe (Mosaic / MixUp stage, EMA, COCO evaluation, backups) under `DataParallel`; files written once.

    One epoch: what data parallelism changes (sharded stream, cross-replica losses, one writer) shows in
    one as in several; the stage switch and the epochs' sequence are the recipe's own tests.
    """
    processes = 2 if keras.backend.backend() == "torch" else 1
    run_dir = runs / "recipe"
    histories = [json.loads((run_dir / f"history-{rank}.json").read_text()) for rank in range(processes)]
    chief = histories[0]
    assert len(chief["loss"]) == 1 and np.all(np.isfinite(chief["loss"]))
    assert "val_AP" in chief and len(chief["val_AP"]) == 1
    for other in histories[1:]:
        # The other process trains (the same logged, cross-replica mean, losses) but does not evaluate.
        np.testing.assert_allclose(other["loss"], chief["loss"], rtol=1e-6)
        assert "val_AP" not in other
    log_rows = (run_dir / "train_log.csv").read_text().strip().splitlines()
    assert len(log_rows) == 1 + 1, log_rows  # one header, one row per epoch: a single writer
    assert len((run_dir / "results.csv").read_text().strip().splitlines()) == 1 + 1
    assert (run_dir / "best" / "model.weights.h5").is_file() and (run_dir / "last" / "model.weights.h5").is_file()
    # A finished run leaves no backup behind (the chief deletes it; the others never wrote one).
    assert not (run_dir / "backup").exists() and not (run_dir / "ema_backup.npz").exists()


def test_device_requests_are_checked():
    from keras_rtmdet.distribute import DataParallel

    if keras.backend.backend() == "torch":
        with pytest.raises(ValueError, match="torchrun"), DataParallel(devices=2):  # torch's replicas are processes
            pass
    else:
        with pytest.raises(ValueError, match="5 devices asked for, 1 available"), DataParallel(devices=5):
            pass
