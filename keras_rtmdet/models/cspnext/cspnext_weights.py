"""Moving CSPNeXt backbone weights between tasks (ImageNet classifier → detector)."""

from keras_rtmdet.weights.checkpoint import CheckpointError


def _relative_weights(backbone):
    return [("/".join(v.path.split("/")[1:]), v) for v in backbone.weights]


def check_backbone_scaling(source_config, target, source_name="the source"):
    """Raise unless the CSPNeXt settings in `source_config` (a dict) are `target`'s."""
    for key in ("arch", "deepen_factor", "widen_factor", "expand_ratio", "channel_attention"):
        if key not in source_config:
            continue
        a, b = source_config[key], getattr(target, key, None)
        if a != b:
            raise CheckpointError(
                f"The backbone of {source_name} has {key}={a!r} but this model's backbone has {key}={b!r}: "
                "pick the backbone preset of the same size."
            )


def copy_backbone_weights(source, target, source_name="the source"):
    """Copy every weight of CSPNeXt `source` into CSPNeXt `target` (same scaling), or change nothing.

    The backbones may return different stages (a classifier its last, a
    detector the last three): the weights are the same layers.
    """
    check_backbone_scaling(source.get_config(), target, source_name)
    pairs_source, pairs_target = _relative_weights(source), _relative_weights(target)
    for (path_s, var_s), (path_t, var_t) in zip(pairs_source, pairs_target):
        if path_s != path_t or tuple(var_s.shape) != tuple(var_t.shape):
            raise CheckpointError(
                f"Backbone weight {path_s!r} {tuple(var_s.shape)} of {source_name} does not match "
                f"{path_t!r} {tuple(var_t.shape)}."
            )
    if len(pairs_source) != len(pairs_target):
        raise CheckpointError(
            f"{source_name} has {len(pairs_source)} backbone weights, this model {len(pairs_target)}."
        )
    for (_, var_s), (_, var_t) in zip(pairs_source, pairs_target):
        var_t.assign(var_s)
    return len(pairs_target)
