"""`bounded_while_loop` and the NMS it carries give the same results captured in a torch graph as eagerly."""

import numpy as np
import pytest
from keras import ops

from keras_rtmdet.ops.graph_capture import bounded_while_loop
from keras_rtmdet.ops.graph_capture import capturing_graph
from keras_rtmdet.ops.nms import batched_nms_keep
from keras_rtmdet.ops.rotated_nms import rotated_nms_keep
from tests.ops.test_nms import random_case
from tests.ops.test_rotated_nms import random_candidates
from tests.test_case import to_numpy

torch_only = pytest.mark.backends("torch")  # graph capture is torch.export / torch.compile


def exported(function, *arrays):
    """`function(*arrays)` through `torch.export` (the captured graph), run on the same arrays."""
    import torch

    class Captured(torch.nn.Module):
        def forward(self, *args):
            assert capturing_graph()
            return function(*args)

    args = tuple(ops.convert_to_tensor(a) for a in arrays)
    program = torch.export.export(Captured(), args)
    return to_numpy(program.module()(*args))


def count_to(limit, maximum_iterations):
    def cond(count, total):
        return count < limit

    def body(count, total):
        return count + 1, total + count

    return bounded_while_loop(cond, body, (ops.zeros((), "int32"), ops.zeros((), "int32")), maximum_iterations)[1]


def test_not_capturing_outside_a_trace():
    assert not capturing_graph()


@torch_only
@pytest.mark.parametrize("limit, maximum", [(5, 10), (20, 7), (0, 3)])
def test_captured_while_loop_stops_where_the_eager_one_does(limit, maximum):
    eager = to_numpy(count_to(ops.convert_to_tensor(limit, "int32"), maximum))
    captured = exported(lambda n: count_to(n, maximum), np.asarray(limit, "int32"))
    assert captured == eager == sum(range(min(limit, maximum)))


@torch_only
def test_captured_nms_equals_eager_nms():
    boxes, scores, labels, valid = random_case(3, batch=2, num=60)
    eager = to_numpy(batched_nms_keep(boxes, scores, labels, valid, 0.5, method="keras", max_output=20))
    captured = exported(
        lambda b, s, l, v: batched_nms_keep(b, s, l, v, 0.5, method="auto", max_output=20), boxes, scores, labels, valid
    )
    np.testing.assert_array_equal(captured, eager)
    assert 0 < eager.sum() < valid.sum()


@torch_only
def test_captured_rotated_nms_equals_the_matrix_nms():
    boxes, scores, labels, valid = random_candidates(seed=0, m=48)
    eager = to_numpy(rotated_nms_keep(boxes, scores, labels, valid, 0.1, method="keras"))
    captured = exported(lambda b, s, l, v: rotated_nms_keep(b, s, l, v, 0.1), boxes, scores, labels, valid)
    np.testing.assert_array_equal(captured, eager)
    assert 0 < eager.sum() < valid.sum()
