"""`from_preset` / `save_to_preset` for the detector tasks.

A preset directory holds `config.json` (the serialized model),
`model.weights.h5` (the model's variables, no optimizer state) and
`metadata.json` (with the weights' sha256). A built-in preset name resolves
to the cache directory `$KERAS_RTMDET_HOME/presets/<name>`, filled on first
use by downloading and converting the official checkpoint.

Loading checks every file and names the one at fault (`PresetError`); saving
refuses non-finite weights and writes nothing in place until every file is
written, so a failed save leaves an existing preset as it was.
"""

import datetime
import difflib
import json
import os

import keras
import numpy as np

from keras_rtmdet.utils.input_checks import check_num_classes
from keras_rtmdet.version import __version__
from keras_rtmdet.weights.checkpoint import read_checkpoint
from keras_rtmdet.weights.download import fetch_checkpoint
from keras_rtmdet.weights.download import preset_cache_dir
from keras_rtmdet.weights.download import sha256_of
from keras_rtmdet.weights.mmdet_converter import load_mmdet_state_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
# Written under a temporary name first, moved into place in this order: the metadata, which holds the
# weights' hash, last, so that a save cut short between two moves is caught by the hash check.
PRESET_FILES = (WEIGHTS_FILE, CONFIG_FILE, METADATA_FILE)


class PresetError(ValueError):
    """A preset that cannot be loaded or saved; the message names the file (or variable) at fault."""


class PresetMixin:
    """Adds preset loading and saving to a task with a `presets` table."""

    presets = {}

    def checkpoint_modules(self):
        """(sub-model, mmdet key prefix) pairs that hold all the weights."""
        return [(self.backbone, "backbone."), (self.neck, "neck."), (self.head, "bbox_head.")]

    def aliased_checkpoint_keys(self):
        return self.head.aliased_checkpoint_keys("bbox_head.")

    def load_checkpoint(self, path):
        """Load an MMDetection `.pth` checkpoint into this model (all or nothing)."""
        return load_mmdet_state_dict(self, read_checkpoint(path))

    @classmethod
    def from_preset(cls, preset, checkpoint=None, load_weights=True, **kwargs):
        """Build a model from a built-in preset name or a preset directory.

        Args:
            preset: a name from `cls.presets` (e.g. "rtmdet_s_coco") or a
                directory written by `save_to_preset` / `rtmdet convert`.
            checkpoint: optional local MMDetection `.pth` to convert instead
                of downloading the official one (built-in names only).
            load_weights: False builds the architecture with fresh weights.
            **kwargs: post-processing settings (`score_threshold`, ...), and
                `num_classes` (with optional `class_names`) to fine-tune on
                other classes: backbone, neck and box branch keep their
                weights, the class branch starts afresh with the reference's
                prior bias (sigmoid = 0.01).
        """
        num_classes = kwargs.pop("num_classes", None)
        class_names = kwargs.pop("class_names", None)
        if num_classes is not None:
            check_num_classes(num_classes)
        cls.check_settings(kwargs)
        if num_classes is not None or class_names is not None:
            source = cls.from_preset(preset, checkpoint=checkpoint, load_weights=load_weights, **kwargs)
            return source.with_classes(num_classes or len(class_names), class_names)
        if os.path.isdir(os.fspath(preset)):
            return cls._from_preset_dir(os.fspath(preset), load_weights, **kwargs)
        if preset not in cls.presets:
            task = _task_with_preset(cls, preset)
            if task is not None:
                return task.from_preset(preset, checkpoint=checkpoint, load_weights=load_weights, **kwargs)
            other = _task_with_preset(_preset_family_root(cls), preset)
            if other is not None:
                raise ValueError(
                    f"{preset!r} is an {other.__name__} preset, not one of {cls.__name__}'s: load it with "
                    f"{other.__name__}.from_preset, or DenseDetector.from_preset for any detector preset."
                )
            names = sorted(_all_presets(cls))
            close = difflib.get_close_matches(str(preset), names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"Unknown preset {preset!r} and no such directory.{hint} "
                f"Available presets: {', '.join(names)}."
            )
        spec = cls.presets[preset]
        if load_weights and checkpoint is None:
            cached = preset_cache_dir(preset)
            if _is_complete(cached):
                return cls._from_cached_preset(cached, **kwargs)
        settings = {"class_names": spec.get("class_names"), "image_size": spec["image_size"]}
        settings.update(kwargs)
        model = cls.from_arch(**spec["arch"], **settings)
        if not load_weights:
            return model
        source = checkpoint
        if source is None:
            source = fetch_checkpoint(spec["checkpoint_url"], spec["checkpoint_filename"], spec["sha256_prefix"])
        model.load_checkpoint(source)
        if checkpoint is None:
            model.save_to_preset(
                preset_cache_dir(preset),
                metadata={"preset": preset, "source_checkpoint": spec["checkpoint_url"]},
            )
        return model

    def with_classes(self, num_classes, class_names=None):
        """A copy of this model for other classes, keeping every weight but the class branch."""
        num_classes = check_num_classes(num_classes)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Got {len(class_names)} class names for num_classes={num_classes}.")
        config = self.get_config()
        config["head"]["config"]["num_classes"] = num_classes
        config["class_names"] = list(class_names) if class_names is not None else None
        config["name"] = None
        model = type(self).from_config(config)
        fresh = model.head.class_branch_variables()
        sources = {v.path: v for v in self.weights}
        for variable in model.weights:
            if any(variable is f for f in fresh):
                continue
            variable.assign(sources[variable.path])
        return model

    @classmethod
    def check_settings(cls, settings):
        """Refuse bad constructor `settings` before anything is downloaded or built (tasks add their rules)."""

    @classmethod
    def _from_cached_preset(cls, directory, **kwargs):
        """A built-in preset from its cache folder; a damaged cache is named, with how to rebuild it."""
        try:
            return cls._from_preset_dir(directory, True, **kwargs)
        except PresetError as error:
            raise PresetError(
                f"{error} This is the cache of a built-in preset: delete the folder {directory} "
                "and it is converted again on the next use."
            ) from error

    @classmethod
    def _from_preset_dir(cls, directory, load_weights=True, **kwargs):
        config_path = os.path.join(directory, CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise PresetError(f"{directory} is not a preset directory: it has no {CONFIG_FILE}.")
        config = _read_model_config(config_path)
        expected_sha256 = _read_metadata(os.path.join(directory, METADATA_FILE)).get("weights_sha256")
        # Settings are constructor arguments (`image_size`, thresholds, ...): applied to the
        # config, so a cached built-in preset takes the same keywords as a fresh one.
        unknown = sorted(set(kwargs) - set(config.get("config", {})))
        if unknown:
            raise ValueError(
                f"Unknown setting(s) {unknown} for the {config.get('class_name')} in {directory}; "
                f"known: {sorted(k for k in config.get('config', {}) if k not in ('backbone', 'neck', 'head'))}."
            )
        config["config"].update({key: list(v) if isinstance(v, tuple) else v for key, v in kwargs.items()})
        weights = os.path.join(directory, WEIGHTS_FILE)
        if load_weights:
            if not os.path.isfile(weights):
                raise PresetError(f"{directory} has no {WEIGHTS_FILE}.")
            _check_weights_hash(weights, expected_sha256)
        model = _build_from_config(config, config_path)
        if not isinstance(model, cls):
            raise ValueError(f"{directory} holds a {type(model).__name__}, not a {cls.__name__}.")
        if load_weights:
            _load_preset_weights(model, weights)
        return model

    def save_to_preset(self, preset_dir, metadata=None):
        """Write config, weights and metadata so `from_preset(preset_dir)` rebuilds this model.

        The weights file holds the model's variables only: a compiled
        model's optimizer state is left out. Non-finite weights are refused
        (`PresetError` naming the first such variable) before anything is
        written. The files are written under temporary names, then moved into
        place: a failed save leaves a preset already in `preset_dir` intact.

        Args:
            preset_dir: the directory to write (created if needed).
            metadata: optional JSON-ready dict added to `metadata.json`.
        """
        preset_dir = os.fspath(preset_dir)
        bad = first_non_finite_variable(self)
        if bad is not None:
            raise PresetError(
                f"Refusing to save a preset to {preset_dir}: variable {bad} holds NaN or infinite values "
                "(did training diverge?). Nothing was written."
            )
        os.makedirs(preset_dir, exist_ok=True)
        staged = {name: os.path.join(preset_dir, f".partial-{os.getpid()}-{name}") for name in PRESET_FILES}
        try:
            self._write_preset_files(staged, metadata)
            for name in PRESET_FILES:
                os.replace(staged[name], os.path.join(preset_dir, name))
        finally:
            for path in staged.values():
                if os.path.exists(path):
                    os.remove(path)

    def _write_preset_files(self, paths, metadata):
        """Write the weights, config and metadata files to `paths` ({preset file name: path})."""
        save_weights_without_optimizer(self, paths[WEIGHTS_FILE])
        config = keras.saving.serialize_keras_object(self)
        # A preset is an architecture plus weights; the training setup (an optimizer with a
        # schedule bound to one run) is not part of it.
        config.pop("compile_config", None)
        _write_json(paths[CONFIG_FILE], config)
        info = {
            "keras_version": keras.__version__,
            "keras_rtmdet_version": __version__,
            "parameter_count": int(self.count_params()),
            "date_saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "weights_sha256": sha256_of(paths[WEIGHTS_FILE]),
        }
        info.update(metadata or {})
        _write_json(paths[METADATA_FILE], info)


def save_weights_without_optimizer(model, path):
    """`model.save_weights(path)` less the optimizer's state: the variables of the model's own layers.

    A compiled model's `save_weights` also writes its optimizer's variables
    (AdamW: two slots per weight, which triples a preset). Keras 3 has no
    public way to leave them out, so this calls the private function that
    `save_weights` itself ends in, `saving_lib.save_weights_only`, with its
    `objects_to_skip`; `tests/models/test_preset_files.py` checks that the
    file still has no optimizer group and loads into a compiled model.
    """
    from keras.src.saving import saving_lib

    optimizer = getattr(model, "optimizer", None)
    saving_lib.save_weights_only(model, path, objects_to_skip=[optimizer] if optimizer is not None else None)


def first_non_finite_variable(model):
    """The path of the first of `model.weights` holding a NaN or infinity, or None."""
    for variable in model.weights:
        if "float" not in str(variable.dtype):
            continue
        value = np.asarray(keras.ops.convert_to_numpy(variable.value), np.float32)
        if not np.all(np.isfinite(value)):
            return variable.path
    return None


def _write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


def _read_json_object(path):
    """The JSON object in `path`; a `PresetError` naming the file and the JSON problem."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise PresetError(f"{path} is not valid JSON ({error}): the preset is corrupt.") from error
    if not isinstance(value, dict):
        raise PresetError(f"{path} must hold a JSON object, found a JSON {type(value).__name__}.")
    return value


def _read_model_config(path):
    """`config.json`: a serialized Keras object, `{"class_name": ..., "config": {...}}`."""
    config = _read_json_object(path)
    if not isinstance(config.get("config"), dict) or "class_name" not in config:
        raise PresetError(f"{path} is not a serialized model: it needs 'class_name' and a 'config' object.")
    return config


def _build_from_config(config, path):
    """The model `config` (read from `path`) describes; its failures named after the file."""
    try:
        return keras.saving.deserialize_keras_object(config)
    except (TypeError, ValueError, KeyError) as error:
        raise PresetError(f"Cannot build the model that {path} describes: {error}") from error


def _read_metadata(path):
    """`metadata.json` as a dict; {} when the file is absent (presets written by hand)."""
    return _read_json_object(path) if os.path.isfile(path) else {}


def _check_weights_hash(path, expected):
    if expected is None:
        return
    found = sha256_of(path)
    if found != expected:
        raise PresetError(
            f"{path} does not match its {METADATA_FILE}: sha256 {found[:16]}…, expected {str(expected)[:16]}…. "
            "The file is corrupt, truncated or from another save."
        )


def _load_preset_weights(model, path):
    """`model.load_weights(path)`, its failures named after the file."""
    try:
        model.load_weights(path)
    except OSError as error:  # h5py: a truncated or non-HDF5 file
        raise PresetError(f"{path} cannot be read ({error}): the weights file is truncated or corrupt.") from error
    except ValueError as error:
        raise PresetError(
            f"{path} does not fit the {type(model).__name__} of its {CONFIG_FILE}: {error}"
        ) from error


def _preset_family_root(cls):
    """The first class of `cls`'s ancestry that has preset loading: every task with a preset table descends from it."""
    return next(base for base in reversed(cls.__mro__) if issubclass(base, PresetMixin) and base is not PresetMixin)


def _task_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _task_subclasses(sub)


def _task_with_preset(cls, preset):
    """The subclass of `cls` whose table has `preset` (`RTMDet.from_preset` of an Ins name builds an `RTMDetIns`)."""
    for sub in _task_subclasses(cls):
        if preset in sub.presets:
            return sub
    return None


def _all_presets(cls):
    names = set(cls.presets)
    for sub in _task_subclasses(cls):
        names.update(sub.presets)
    return names


def _is_complete(directory):
    return all(os.path.isfile(os.path.join(directory, f)) for f in (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE))
