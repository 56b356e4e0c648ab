"""Graph capture on PyTorch: `capturing_graph()` and a `while_loop` it can take.

`torch.export` and `torch.compile` trace the Python code with symbolic
tensors. Keras' `ops.while_loop` on the torch backend is a Python loop whose
condition is read back to the host, which a captured graph cannot do (and
`torch.export` refuses). `bounded_while_loop` is that loop as the graph's own
`while_loop` operator while capturing and `ops.while_loop` otherwise; JAX and
TensorFlow trace `ops.while_loop` into their graphs themselves.
`tests/ops/test_graph_capture.py` checks that both forms agree.
"""

import keras
from keras import ops


def capturing_graph():
    """True while `torch.compile` / `torch.export` traces the caller (torch backend only)."""
    if keras.config.backend() != "torch":
        return False
    import torch

    return bool(torch.compiler.is_compiling())  # also True under torch.export


def bounded_while_loop(cond, body, loop_vars, maximum_iterations):
    """`ops.while_loop(cond, body, loop_vars, maximum_iterations)` for a tuple of tensors, capturable on torch."""
    loop_vars = tuple(ops.convert_to_tensor(value) for value in loop_vars)
    if not capturing_graph():
        return tuple(ops.while_loop(cond, body, loop_vars, maximum_iterations=maximum_iterations))
    import torch
    from torch._higher_order_ops import while_loop

    def counted_cond(count, *values):
        return torch.logical_and(count < maximum_iterations, cond(*values))

    def counted_body(count, *values):
        return (count + 1, *(value.clone() for value in body(*values)))

    count = torch.zeros((), dtype=torch.int64, device=loop_vars[0].device)
    return tuple(while_loop(counted_cond, counted_body, (count, *loop_vars))[1:])
