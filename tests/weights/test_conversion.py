"""Checkpoint reading, conversion errors, download cache and built-in presets."""

import os
import sys
import types

import numpy as np
import pytest
import torch

from keras_rtmdet import RTMDet
from keras_rtmdet.weights import download
from keras_rtmdet.weights.checkpoint import CheckpointError
from keras_rtmdet.weights.checkpoint import read_checkpoint
from keras_rtmdet.weights.mmdet_converter import load_mmdet_state_dict
from keras_rtmdet.weights.mmdet_converter import weight_map
from tests.test_case import FIXTURES
from tests.test_case import TINY_ARCH
from tests.test_case import tiny_model
from tests.test_case import to_numpy

CHECKPOINT = os.path.join(FIXTURES, "det_mini_linear", "checkpoint.pth")
def mini_model(**kwargs):
    """The `det_mini_linear` checkpoint's architecture."""
    return tiny_model(num_classes=80, image_size=(160, 160), **kwargs)


def image_batch(seed=0, size=160):
    return np.random.default_rng(seed).uniform(0, 255, (1, size, size, 3)).astype("float32")


def test_every_keras_weight_maps_to_a_distinct_checkpoint_key():
    model = mini_model()
    keys = [key for _, key in weight_map(model)]
    assert len(keys) == len(set(keys)) == len(model.weights)
    state = read_checkpoint(CHECKPOINT)
    aliases = model.aliased_checkpoint_keys()
    assert set(keys) | set(aliases) == set(state)


def test_conversion_sets_every_weight():
    model = mini_model()
    before = [to_numpy(v).copy() for v in model.weights]
    assert model.load_checkpoint(CHECKPOINT) == len(model.weights)
    state = read_checkpoint(CHECKPOINT)
    after = [to_numpy(v) for v in model.weights]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after) if a.size > 1)
    assert np.array_equal(
        to_numpy(model.backbone.get_layer("stem-0").conv.kernel),
        state["backbone.stem.0.conv.weight"].transpose(2, 3, 1, 0),
    )


def _assert_untouched(model, snapshot):
    for variable, value in zip(model.weights, snapshot):
        np.testing.assert_array_equal(to_numpy(variable), value)


def test_wrong_architecture_names_the_first_bad_key_and_changes_nothing():
    model = RTMDet.from_arch(0.167, 0.25, 1, False, image_size=(160, 160))
    snapshot = [to_numpy(v).copy() for v in model.weights]
    with pytest.raises(CheckpointError, match=r"backbone\.stem\.0\.conv\.weight.*does not match"):
        model.load_checkpoint(CHECKPOINT)
    _assert_untouched(model, snapshot)


def test_missing_and_extra_tensors_are_named():
    state = read_checkpoint(CHECKPOINT)
    model = mini_model()
    missing = dict(state)
    del missing["neck.out_convs.2.bn.running_var"]
    with pytest.raises(CheckpointError, match=r"no tensor 'neck\.out_convs\.2\.bn\.running_var'"):
        load_mmdet_state_dict(model, missing)
    extra = dict(state, **{"bbox_head.rtm_obj.0.weight": np.zeros((1, 32, 1, 1), np.float32)})
    with pytest.raises(CheckpointError, match=r"'bbox_head\.rtm_obj\.0\.weight' has no place"):
        load_mmdet_state_dict(model, extra)
    broken_alias = dict(state)
    broken_alias["bbox_head.cls_convs.2.0.conv.weight"] = state["bbox_head.cls_convs.2.0.conv.weight"] + 1
    with pytest.raises(CheckpointError, match="shared tensor"):
        load_mmdet_state_dict(model, broken_alias)


def test_published_checkpoint_layout_with_message_hub(tmp_path):
    """`module.` prefixes, data_preprocessor buffers and a message_hub of
    foreign objects (which defeat `weights_only=True`) are all handled."""
    original = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    fake = types.ModuleType("fake_mmengine_logging")

    class HistoryBuffer:
        def __init__(self):
            self.values = [1.0, 2.0]

    HistoryBuffer.__module__ = fake.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    fake.HistoryBuffer = HistoryBuffer
    sys.modules[fake.__name__] = fake
    try:
        state = {f"module.{k}": v for k, v in original["state_dict"].items()}
        state["data_preprocessor.mean"] = torch.zeros(3, 1, 1)
        path = tmp_path / "published.pth"
        torch.save({"meta": original["meta"], "state_dict": state, "message_hub": {"log": HistoryBuffer()}}, path)
    finally:
        del sys.modules[fake.__name__]
    with pytest.raises(Exception):
        torch.load(path, map_location="cpu", weights_only=True)
    converted = read_checkpoint(path)
    assert set(converted) == set(read_checkpoint(CHECKPOINT))
    model = mini_model()
    model.load_checkpoint(path)


@pytest.mark.backend_independent
def test_corrupt_and_missing_files_are_reported(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth is not a readable PyTorch checkpoint"):
        read_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        read_checkpoint(tmp_path / "nowhere.pth")


@pytest.mark.backend_independent
def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown preset 'rtmdet_s_cooc'.*rtmdet_s_coco"):
        RTMDet.from_preset("rtmdet_s_cooc")


@pytest.fixture
def mini_preset(tmp_path, monkeypatch):
    """A built-in-style preset whose 'official' checkpoint is the fixture, served by file://."""
    monkeypatch.setenv("KERAS_RTMDET_HOME", str(tmp_path / "home"))
    spec = dict(RTMDet.presets["rtmdet_tiny_coco"])
    spec.update(
        arch=dict(TINY_ARCH, exp_on_reg=False, num_classes=80),
        image_size=(160, 160),
        checkpoint_url=f"file://{os.path.abspath(CHECKPOINT)}",
        checkpoint_filename="mini.pth",
        sha256_prefix=download.sha256_of(CHECKPOINT)[:8],
    )
    monkeypatch.setitem(RTMDet.presets, "mini_test_coco", spec)
    return spec


def test_from_preset_downloads_verifies_converts_and_caches(mini_preset, tmp_path):
    model = RTMDet.from_preset("mini_test_coco")
    reference = mini_model()
    reference.load_checkpoint(CHECKPOINT)
    x = image_batch()
    np.testing.assert_allclose(
        to_numpy(model(x)["cls_logits"]), to_numpy(reference(x)["cls_logits"]), atol=1e-5
    )
    cache = tmp_path / "home"
    assert (cache / "checkpoints" / "mini.pth").exists()
    assert (cache / "presets" / "mini_test_coco" / "model.weights.h5").exists()
    mini_preset["checkpoint_url"] = "file:///nonexistent/should-not-be-fetched.pth"
    cached = RTMDet.from_preset("mini_test_coco")
    np.testing.assert_allclose(to_numpy(cached(x)["cls_logits"]), to_numpy(model(x)["cls_logits"]), atol=1e-6)


@pytest.mark.backend_independent
def test_hash_mismatch_is_rejected(mini_preset, tmp_path):
    mini_preset["sha256_prefix"] = "00000000"
    with pytest.raises(CheckpointError, match="expected a hash starting with 00000000"):
        RTMDet.from_preset("mini_test_coco")
    assert not (tmp_path / "home" / "checkpoints" / "mini.pth").exists()


@pytest.mark.backend_independent
def test_offline_error_says_where_to_put_the_file(mini_preset, tmp_path):
    mini_preset["checkpoint_url"] = "file:///nonexistent/mini.pth"
    with pytest.raises(CheckpointError, match=r"place it at .*checkpoints/mini\.pth"):
        RTMDet.from_preset("mini_test_coco")


def test_local_checkpoint_and_a_folder_that_is_no_preset(mini_preset, tmp_path):
    """A preset saved and loaded back is the task tests' (models/test_rtmdet_task.py)."""
    model = RTMDet.from_preset("mini_test_coco", checkpoint=CHECKPOINT, score_threshold=0.2)
    assert model.score_threshold == 0.2
    with pytest.raises(ValueError, match="not a preset directory"):
        RTMDet.from_preset(str(tmp_path))


def test_fine_tuning_on_other_classes_keeps_all_but_the_class_branch(mini_preset):
    pretrained = RTMDet.from_preset("mini_test_coco")
    model = RTMDet.from_preset("mini_test_coco", num_classes=3, class_names=["a", "b", "c"])
    assert model.num_classes == 3 and model.class_names == ["a", "b", "c"]
    source = {v.path: to_numpy(v) for v in pretrained.weights}
    kept = [v for v in model.weights if "rtm_cls" not in v.path]
    assert len(kept) == len(model.weights) - 6
    for variable in kept:
        np.testing.assert_array_equal(to_numpy(variable), source[variable.path])
    bias = to_numpy(model.head.rtm_cls[0].bias)
    assert bias.shape == (3,)
    np.testing.assert_allclose(bias, -4.59512, atol=1e-4)
    assert tuple(model(image_batch())["cls_logits"].shape) == (1, 525, 3)


def test_rtmdet_from_preset_builds_ins_models_from_ins_names(tmp_path, monkeypatch):
    """`RTMDet.from_preset` of an Ins name gives an `RTMDetIns`, downloaded and converted like the det ones."""
    from keras_rtmdet import RTMDetIns

    ins_checkpoint = os.path.join(FIXTURES, "ins_mini", "checkpoint.pth")
    monkeypatch.setenv("KERAS_RTMDET_HOME", str(tmp_path / "home"))
    spec = dict(RTMDetIns.presets["rtmdet_ins_tiny_coco"])
    spec.update(
        arch=dict(deepen_factor=0.167, widen_factor=0.125, neck_num_csp_blocks=1, num_classes=80),
        image_size=(160, 160),
        checkpoint_url=f"file://{os.path.abspath(ins_checkpoint)}",
        checkpoint_filename="ins_mini.pth",
        sha256_prefix=download.sha256_of(ins_checkpoint)[:8],
    )
    monkeypatch.setitem(RTMDetIns.presets, "mini_ins_test_coco", spec)
    model = RTMDet.from_preset("mini_ins_test_coco")
    assert isinstance(model, RTMDetIns) and model.max_detections == 100
    reference = RTMDetIns.from_arch(**spec["arch"], image_size=(160, 160))
    reference.load_checkpoint(ins_checkpoint)
    x = image_batch()
    for key in ("cls_logits", "kernel_preds", "mask_feat"):
        np.testing.assert_allclose(to_numpy(model(x)[key]), to_numpy(reference(x)[key]), atol=1e-5)
    assert isinstance(RTMDet.from_preset("rtmdet_ins_s_coco", load_weights=False), RTMDetIns)
    with pytest.raises(ValueError, match=r"Unknown preset 'rtmdet_ins_s_cooc'.*rtmdet_ins_s_coco"):
        RTMDet.from_preset("rtmdet_ins_s_cooc")


def test_cached_preset_takes_the_same_settings_as_a_fresh_one(mini_preset):
    RTMDet.from_preset("mini_test_coco")
    cached = RTMDet.from_preset("mini_test_coco", image_size=(128, 128), score_threshold=0.3)
    assert cached.image_size == (128, 128) and cached.score_threshold == 0.3
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) \['scor_threshold'\]"):
        RTMDet.from_preset("mini_test_coco", scor_threshold=0.3)
