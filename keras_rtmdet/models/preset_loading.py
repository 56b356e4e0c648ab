"""`from_preset` / `save_to_preset` for the detector tasks.

A preset directory holds `config.json` (the serialized model),
`model.weights.h5` and `metadata.json`. A built-in preset name resolves to
the cache directory `$KERAS_RTMDET_HOME/presets/<name>`, filled on first use
by downloading and converting the official checkpoint.
"""

import datetime
import difflib
import json
import os

import keras

from keras_rtmdet.version import __version__
from keras_rtmdet.weights.checkpoint import read_checkpoint
from keras_rtmdet.weights.download import fetch_checkpoint
from keras_rtmdet.weights.download import preset_cache_dir
from keras_rtmdet.weights.download import sha256_of
from keras_rtmdet.weights.mmdet_converter import load_mmdet_state_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"


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
        if num_classes is not None or class_names is not None:
            source = cls.from_preset(preset, checkpoint=checkpoint, load_weights=load_weights, **kwargs)
            return source.with_classes(num_classes or len(class_names), class_names)
        if os.path.isdir(os.fspath(preset)):
            return cls._from_preset_dir(os.fspath(preset), load_weights, **kwargs)
        if preset not in cls.presets:
            task = _task_with_preset(cls, preset)
            if task is not None:
                return task.from_preset(preset, checkpoint=checkpoint, load_weights=load_weights, **kwargs)
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
                return cls._from_preset_dir(cached, True, **kwargs)
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
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Got {len(class_names)} class names for num_classes={num_classes}.")
        config = self.get_config()
        config["head"]["config"]["num_classes"] = int(num_classes)
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
    def _from_preset_dir(cls, directory, load_weights=True, **kwargs):
        config_path = os.path.join(directory, CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise ValueError(f"{directory} is not a preset directory: it has no {CONFIG_FILE}.")
        with open(config_path) as f:
            config = json.load(f)
        # Settings are constructor arguments (`image_size`, thresholds, ...): applied to the
        # config, so a cached built-in preset takes the same keywords as a fresh one.
        unknown = sorted(set(kwargs) - set(config.get("config", {})))
        if unknown:
            raise ValueError(
                f"Unknown setting(s) {unknown} for the {config.get('class_name')} in {directory}; "
                f"known: {sorted(k for k in config.get('config', {}) if k not in ('backbone', 'neck', 'head'))}."
            )
        config["config"].update({key: list(v) if isinstance(v, tuple) else v for key, v in kwargs.items()})
        model = keras.saving.deserialize_keras_object(config)
        if not isinstance(model, cls):
            raise ValueError(f"{directory} holds a {type(model).__name__}, not a {cls.__name__}.")
        if load_weights:
            weights = os.path.join(directory, WEIGHTS_FILE)
            if not os.path.isfile(weights):
                raise ValueError(f"{directory} has no {WEIGHTS_FILE}.")
            model.load_weights(weights)
        return model

    def save_to_preset(self, preset_dir, metadata=None):
        """Write config, weights and metadata so `from_preset(preset_dir)` rebuilds this model."""
        os.makedirs(preset_dir, exist_ok=True)
        weights = os.path.join(preset_dir, WEIGHTS_FILE)
        self.save_weights(weights)
        config = keras.saving.serialize_keras_object(self)
        # A preset is an architecture plus weights; the training setup (an optimizer with a
        # schedule bound to one run) is not part of it.
        config.pop("compile_config", None)
        with open(os.path.join(preset_dir, CONFIG_FILE), "w") as f:
            json.dump(config, f, indent=2)
        info = {
            "keras_version": keras.__version__,
            "keras_rtmdet_version": __version__,
            "parameter_count": int(self.count_params()),
            "date_saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "weights_sha256": sha256_of(weights),
        }
        info.update(metadata or {})
        with open(os.path.join(preset_dir, METADATA_FILE), "w") as f:
            json.dump(info, f, indent=2)


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
