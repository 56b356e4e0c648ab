"""`no_gradients()`: run eager code without recording a backward graph.

Eager PyTorch records every op on tensors that require gradients, so a plain
forward of a model keeps all of its activations alive until the outputs go
(11 GB for a batch of two 1024² images through RTMDet-R-m). TensorFlow and
JAX record nothing outside a tape or a transform.
"""

import contextlib

import keras


def no_gradients():
    """`torch.no_grad()` on the torch backend; a context that does nothing elsewhere."""
    if keras.config.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()
