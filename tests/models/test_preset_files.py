"""Preset files: weights without optimizer state, saves that never leave a half-written preset, load errors naming the file."""

import json
import os
import shutil
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from keras_rtmdet import RTMDet
from keras_rtmdet.models import preset_loading
from keras_rtmdet.models.preset_loading import CONFIG_FILE
from keras_rtmdet.models.preset_loading import METADATA_FILE
from keras_rtmdet.models.preset_loading import WEIGHTS_FILE
from keras_rtmdet.models.preset_loading import PresetError
from keras_rtmdet.models.preset_loading import save_weights_without_optimizer
from keras_rtmdet.weights.download import preset_cache_dir
from tests.test_case import SIZE
from tests.test_case import TINY_ARCH
from tests.test_case import tiny_model
from tests.test_case import to_numpy



@pytest.fixture(scope="module")
def compiled():
    """The tiny model, compiled (`DenseDetector.compile` creates AdamW's slots at once), weights moved
    off their initial values so that a fresh tiny model does not hold them already."""
    model = tiny_model()
    for variable in model.weights:
        variable.assign(to_numpy(variable) + 0.5)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    assert model.optimizer.variables
    return model


@pytest.fixture(scope="module")
def saved(compiled, tmp_path_factory):
    folder = tmp_path_factory.mktemp("preset") / "tiny"
    compiled.save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def other_weights(compiled, tmp_path_factory):
    """A weights file of another architecture: the tiny model with 5 classes."""
    path = tmp_path_factory.mktemp("other") / "five.weights.h5"
    save_weights_without_optimizer(compiled.with_classes(5), str(path))
    return path


def preset_copy(saved, folder):
    shutil.copytree(saved, folder)
    return folder


def file_bytes(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def assert_same_weights(model, reference):
    for variable, expected in zip(model.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(variable), to_numpy(expected), err_msg=variable.path)


# --- saving ---


def test_preset_weights_leave_the_optimizer_out(compiled, saved, tmp_path):
    full = tmp_path / "full.weights.h5"
    compiled.save_weights(str(full))
    with h5py.File(saved / WEIGHTS_FILE, "r") as preset, h5py.File(full, "r") as everything:
        assert "optimizer" in everything and "optimizer" not in preset
        assert set(preset) == set(everything) - {"optimizer"}
    # AdamW keeps two slots per trainable weight: the preset is about a third of `save_weights`' file.
    assert os.path.getsize(saved / WEIGHTS_FILE) < 0.5 * os.path.getsize(full)
    metadata = json.loads((saved / METADATA_FILE).read_text())
    assert metadata["weights_sha256"] == preset_loading.sha256_of(saved / WEIGHTS_FILE)
    assert not [name for name in os.listdir(saved) if name.startswith(".partial")]


def test_preset_loads_into_a_compiled_model(compiled, saved):
    """Into a fresh model: the task tests (models/test_rtmdet_task.py) and the cache test below."""
    target = tiny_model()
    target.compile(optimizer=keras.optimizers.AdamW(1e-3))
    slots = [to_numpy(v).copy() for v in target.optimizer.variables]
    with warnings.catch_warnings():
        # Keras notes that the file has no optimizer state to load; the model's weights do load.
        warnings.simplefilter("ignore")
        target.load_weights(str(saved / WEIGHTS_FILE))
    assert_same_weights(target, compiled)
    for variable, before in zip(target.optimizer.variables, slots, strict=True):
        np.testing.assert_array_equal(to_numpy(variable), before)


def _poison(model, indices):
    """Put a NaN into `model.weights[i]` for each i; return the values to restore."""
    originals = []
    for i in indices:
        variable = model.weights[i]
        originals.append(to_numpy(variable).copy())
        value = originals[-1].copy()
        value.flat[0] = np.nan
        variable.assign(value)
    return originals


@pytest.mark.parametrize("indices", [[3], [7, 2]], ids=["one", "two"])
def test_non_finite_weights_are_refused_and_nothing_is_written(compiled, saved, tmp_path, indices):
    folder = preset_copy(saved, tmp_path / "preset")
    before = file_bytes(folder)
    originals = _poison(compiled, indices)
    try:
        first = compiled.weights[min(indices)].path
        for target in (folder, tmp_path / "new"):
            with pytest.raises(ValueError, match=f"variable {first} holds NaN or infinite values") as error:
                compiled.save_to_preset(target)
            assert isinstance(error.value, PresetError) and "Nothing was written" in str(error.value)
    finally:
        for i, value in zip(indices, originals):
            compiled.weights[i].assign(value)
    assert file_bytes(folder) == before
    assert not (tmp_path / "new").exists()


def test_a_failed_save_leaves_the_existing_preset_intact(compiled, saved, tmp_path, monkeypatch):
    folder = preset_copy(saved, tmp_path / "preset")
    before = file_bytes(folder)
    write_json = preset_loading._write_json

    def disk_full_at_the_metadata(path, value):
        if path.endswith(METADATA_FILE):
            raise OSError("No space left on device")
        write_json(path, value)

    monkeypatch.setattr(preset_loading, "_write_json", disk_full_at_the_metadata)
    with pytest.raises(OSError, match="No space left"):
        compiled.save_to_preset(folder)
    assert file_bytes(folder) == before


# --- loading ---


def _drop_hash(folder):
    metadata = json.loads((folder / METADATA_FILE).read_text())
    del metadata["weights_sha256"]
    (folder / METADATA_FILE).write_text(json.dumps(metadata))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncate_weights(folder):
    _truncate(folder / WEIGHTS_FILE)


def _truncate_weights_without_hash(folder):
    _drop_hash(folder)
    _truncate(folder / WEIGHTS_FILE)


def _garbage_weights_without_hash(folder):
    _drop_hash(folder)
    (folder / WEIGHTS_FILE).write_bytes(b"not an HDF5 file at all")


def _config_text(text):
    return lambda folder: (folder / CONFIG_FILE).write_text(text)


def _truncate_metadata(folder):
    _truncate(folder / METADATA_FILE)


def _other_architecture(other_weights):
    def corrupt(folder):
        _drop_hash(folder)
        shutil.copyfile(other_weights, folder / WEIGHTS_FILE)

    return corrupt


LOAD_ERRORS = [
    ("truncated weights", _truncate_weights, WEIGHTS_FILE, ["does not match its metadata.json", "expected"]),
    ("truncated, no hash", _truncate_weights_without_hash, WEIGHTS_FILE, ["cannot be read", "truncated or corrupt"]),
    ("not HDF5, no hash", _garbage_weights_without_hash, WEIGHTS_FILE, ["cannot be read", "truncated or corrupt"]),
    ("config not JSON", _config_text('{"class_name": '), CONFIG_FILE, ["is not valid JSON", "line 1 column"]),
    ("config a list", _config_text("[1, 2]"), CONFIG_FILE, ["must hold a JSON object", "list"]),
    ("config not a model", _config_text('{"a": 1}'), CONFIG_FILE, ["is not a serialized model", "class_name"]),
    ("metadata not JSON", _truncate_metadata, METADATA_FILE, ["is not valid JSON"]),
    ("other architecture", None, WEIGHTS_FILE, ["does not fit the RTMDet of its config.json"]),
]


def _corruption(row_corrupt, other_weights):
    return _other_architecture(other_weights) if row_corrupt is None else row_corrupt


@pytest.mark.parametrize(
    "corrupt, bad_file, words", [row[1:] for row in LOAD_ERRORS], ids=[row[0] for row in LOAD_ERRORS]
)
def test_a_damaged_preset_directory_is_named(saved, other_weights, tmp_path, corrupt, bad_file, words):
    folder = preset_copy(saved, tmp_path / "preset")
    _corruption(corrupt, other_weights)(folder)
    with pytest.raises(PresetError) as error:
        RTMDet.from_preset(str(folder))
    message = str(error.value)
    assert str(folder / bad_file) in message
    for word in words:
        assert word in message


@pytest.fixture
def cached_builtin(saved, tmp_path, monkeypatch):
    """A built-in preset whose cache folder holds the saved tiny preset; its checkpoint is never fetched."""
    monkeypatch.setenv("KERAS_RTMDET_HOME", str(tmp_path / "home"))
    spec = dict(RTMDet.presets["rtmdet_tiny_coco"])
    spec.update(arch=dict(TINY_ARCH, exp_on_reg=False, num_classes=3), image_size=(SIZE, SIZE), class_names=None)
    spec.update(checkpoint_url="file:///nonexistent/never-fetched.pth", checkpoint_filename="never.pth")
    monkeypatch.setitem(RTMDet.presets, "cached_tiny", spec)
    folder = preset_copy(saved, Path(preset_cache_dir("cached_tiny")))
    return "cached_tiny", folder


@pytest.mark.parametrize(
    "corrupt, bad_file, words", [row[1:] for row in LOAD_ERRORS], ids=[row[0] for row in LOAD_ERRORS]
)
def test_a_damaged_cached_preset_says_to_delete_its_folder(cached_builtin, other_weights, corrupt, bad_file, words):
    name, folder = cached_builtin
    _corruption(corrupt, other_weights)(folder)
    with pytest.raises(PresetError) as error:
        RTMDet.from_preset(name)
    message = str(error.value)
    assert str(folder / bad_file) in message and f"delete the folder {folder}" in message
    for word in words:
        assert word in message


def test_metadata_without_a_hash_and_an_intact_cache_still_load(compiled, saved, cached_builtin, tmp_path):
    folder = preset_copy(saved, tmp_path / "preset")
    _drop_hash(folder)
    assert_same_weights(RTMDet.from_preset(str(folder)), compiled)
    assert_same_weights(RTMDet.from_preset(cached_builtin[0]), compiled)
