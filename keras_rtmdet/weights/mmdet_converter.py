"""Copying MMDetection state dicts into keras_rtmdet models.

Keras layer names mirror mmdet's module paths with `-` for `.` (PyTorch
forbids dots in parameter names), so `stage1-1/blocks-0/conv1/bn/gamma` in the
backbone is `backbone.stage1.1.blocks.0.conv1.bn.weight`. The mapping is
therefore derived from the model itself, for every architecture.
"""

import numpy as np

from keras_rtmdet.weights.checkpoint import CheckpointError

_LEAF_NAMES = {
    "kernel": "weight",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "bias": "bias",
}


def checkpoint_key(prefix, module_name, variable_path):
    """The mmdet state_dict key of a Keras variable inside `module_name`."""
    parts = variable_path.split("/")
    if parts[0] == module_name:
        parts = parts[1:]
    leaf = parts[-1]
    if leaf not in _LEAF_NAMES:
        raise CheckpointError(f"No checkpoint name is known for Keras weight {variable_path!r}.")
    return prefix + ".".join(p.replace("-", ".") for p in parts[:-1] + [_LEAF_NAMES[leaf]])


def to_keras_layout(variable_path, array):
    """PyTorch layout → Keras layout (conv OIHW → HWIO, depthwise C1HW → HWC1, linear OI → IO)."""
    if array.ndim == 2 and variable_path.endswith("kernel"):
        return array.T
    if array.ndim == 4:
        if "depthwise_conv" in variable_path:
            return array.transpose(2, 3, 0, 1)
        return array.transpose(2, 3, 1, 0)
    return array


def weight_map(model):
    """[(keras_variable, checkpoint_key)] for every weight of the model."""
    pairs = []
    for module, prefix in model.checkpoint_modules():
        for variable in module.weights:
            pairs.append((variable, checkpoint_key(prefix, module.name, variable.path)))
    return pairs


def load_mmdet_state_dict(model, state_dict):
    """Set every weight of `model` from an mmdet state dict, or change nothing.

    Every Keras weight must find its tensor with the right shape, every
    checkpoint tensor must be used (aliases of shared tensors must equal
    their original), and only then are the weights assigned. Errors name
    the first offending key.
    """
    plan, used = [], set()
    for variable, key in weight_map(model):
        if key not in state_dict:
            raise CheckpointError(
                f"The checkpoint has no tensor {key!r} for Keras weight {variable.path!r} "
                f"{tuple(variable.shape)}: it was made for another architecture."
            )
        array = to_keras_layout(variable.path, np.asarray(state_dict[key]))
        if tuple(array.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"Checkpoint tensor {key!r} has shape {tuple(state_dict[key].shape)} "
                f"(Keras layout {tuple(array.shape)}) but Keras weight {variable.path!r} "
                f"is {tuple(variable.shape)}: the checkpoint does not match this architecture."
            )
        plan.append((variable, array))
        used.add(key)
    for alias, canonical in model.aliased_checkpoint_keys().items():
        if alias not in state_dict:
            continue
        if canonical not in state_dict or not np.array_equal(state_dict[alias], state_dict[canonical]):
            raise CheckpointError(
                f"Checkpoint tensor {alias!r} should be the same shared tensor as "
                f"{canonical!r}, but the two differ."
            )
        used.add(alias)
    unused = sorted(set(state_dict) - used)
    if unused:
        more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
        raise CheckpointError(
            f"Checkpoint tensor {unused[0]!r}{more} has no place in this model: "
            "the checkpoint is for another architecture or task."
        )
    for variable, array in plan:
        variable.assign(array.astype(variable.dtype))
    return len(plan)
