"""Reading MMDetection `.pth` checkpoints into plain numpy state dicts."""

import os
import pickle
import types

import numpy as np

# Top-level state_dict entries that are not model weights.
_DROPPED_PREFIXES = ("data_preprocessor.", "ema_")


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the model."""


def _allowed_torch_globals():
    try:
        from torch import _weights_only_unpickler

        return dict(_weights_only_unpickler._get_allowed_globals())
    except (ImportError, AttributeError):
        return {}


class _InertObject:
    """Stands in for any class of a checkpoint outside torch's safe list.

    mmengine's `message_hub` holds `HistoryBuffer` objects, which make a
    `weights_only=True` load fail. Their data is never needed, so each such
    class becomes this inert placeholder instead of being imported and run.
    """

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):
        return _InertObject()


def _tolerant_pickle_module():
    allowed = _allowed_torch_globals()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            qualified = f"{module}.{name}"
            if qualified in allowed:
                return allowed[qualified]
            if module.startswith("torch") or module in ("collections", "builtins", "_codecs"):
                if module == "builtins" and name not in ("set", "frozenset", "slice", "complex"):
                    return type(name, (_InertObject,), {})
                return super().find_class(module, name)
            return type(name, (_InertObject,), {"__module__": "keras_rtmdet.inert"})

    def load(file, **kwargs):
        return Unpickler(file, **kwargs).load()

    return types.SimpleNamespace(Unpickler=Unpickler, load=load, __name__="tolerant_pickle")


def _torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "Reading MMDetection .pth checkpoints needs PyTorch (CPU is enough): "
            "pip install torch, or pip install 'keras-rtmdet[torch]'."
        ) from error
    return torch


def read_checkpoint(path):
    """Load an MMDetection checkpoint as `{key: numpy array}`.

    Tries `torch.load(weights_only=True)` first. Published checkpoints with a
    `message_hub` entry need more than that; they are read with an
    unpickler that replaces every non-torch class by an inert placeholder,
    so no code from the file runs.

    The state dict is `ckpt["state_dict"]` (or the file itself), with a
    leading `module.` stripped and `data_preprocessor.*`, `ema_*` and
    `num_batches_tracked` entries dropped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    torch = _torch()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            obj = torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle_module()
            )
        except Exception as error:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    return extract_state_dict(obj, path)


def extract_state_dict(obj, source="checkpoint"):
    """The numpy state dict inside a loaded checkpoint object (see `read_checkpoint`)."""
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{source} holds no state_dict of tensors.")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{source}: state_dict key {key!r} is not a string.")
        if key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith(_DROPPED_PREFIXES) or key.endswith("num_batches_tracked"):
            continue
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{source}: state_dict entry {key!r} is not a tensor.")
        state[key] = value
    if not state:
        raise CheckpointError(f"{source} holds no model weights.")
    return state
