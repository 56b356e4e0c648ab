"""Keep a model usable on JAX after an exception inside `fit`, `predict` or `evaluate`.

Keras' JAX trainer moves the variables' values out of the model for the
length of a loop (it sets each variable's value to None and passes the arrays
through its jitted steps) and puts them back only when the loop ends. An
exception in between, in a step, a callback or the data, leaves every
variable empty: each later call fails with "'NoneType' object is not
callable" until the model is rebuilt. The other backends update the
variables in place, so there is nothing to restore.
"""

import contextlib

import keras


def _jax_arrays_alive(arrays):
    return all(not getattr(a, "is_deleted", lambda: False)() for a in arrays)


def _restore(model, before):
    """Put back, into every emptied variable, the newest values that still exist."""
    state = getattr(model, "_jax_state", None)
    if state and not getattr(model, "_jax_state_synced", True):
        groups = [value for value in state.values() if value is not None]
        if all(_jax_arrays_alive(group) for group in groups):
            model.jax_state_sync()
    for variable, value in before:
        if variable._value is None:
            variable._value = value
    model._jax_state = None
    model._jax_state_synced = True


@contextlib.contextmanager
def model_state_kept(model):
    """Around a Keras loop: on JAX, after an exception the variables hold their last values.

    Those are the values of the last finished step when the loop got that far
    (a training step's are kept, as Keras keeps them at a normal end), else
    the values from before the loop.
    """
    if keras.backend.backend() != "jax":
        yield
        return
    optimizer = getattr(model, "optimizer", None)
    variables = list(model.variables) + list(model.metrics_variables)
    variables += list(optimizer.variables) if optimizer is not None else []
    before = [(variable, variable._value) for variable in variables]
    try:
        yield
    except BaseException:
        _restore(model, before)
        raise
