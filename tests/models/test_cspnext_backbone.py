import numpy as np
import pytest

from keras_rtmdet import CSPNeXt
from keras_rtmdet.layers import ConvModule
from keras_rtmdet.layers import CSPLayer
from keras_rtmdet.layers import SPPBottleneck
from tests.test_case import run_serialization_test
from tests.test_case import to_numpy


def test_p5_output_shapes_and_pyramid():
    model = CSPNeXt(deepen_factor=0.167, widen_factor=0.125)
    feats = model(np.zeros((1, 64, 96, 3), "float32"))
    assert [tuple(f.shape) for f in feats] == [(1, 8, 12, 32), (1, 4, 6, 64), (1, 2, 3, 128)]
    assert list(model.pyramid_outputs) == ["P3", "P4", "P5"]
    assert model.strides == (8, 16, 32) and model.out_channels == (32, 64, 128)
    run_serialization_test(model)


def test_p6_has_a_stride_64_level():
    model = CSPNeXt(arch="P6", deepen_factor=0.167, widen_factor=0.125, out_indices=(2, 3, 4, 5))
    feats = model(np.zeros((1, 128, 128, 3), "float32"))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 16, 32), (1, 8, 8, 64), (1, 4, 4, 96), (1, 2, 2, 128)]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="Unknown CSPNeXt arch"):
        CSPNeXt(arch="P7")
    with pytest.raises(ValueError, match="out_indices"):
        CSPNeXt(out_indices=(2, 5))


def test_stride_two_conv_pads_like_pytorch():
    """A stride-2 3×3 conv on an even size must see one pixel of zero padding
    on *every* side (Keras 'same' would pad only bottom/right)."""
    import torch

    layer = ConvModule(2, 3, strides=2, activation=None)
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype("float32")
    y = to_numpy(layer(x))
    kernel = to_numpy(layer.conv.kernel).transpose(3, 2, 0, 1)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(kernel), stride=2, padding=1)
    bn = layer.bn
    ref = (ref.numpy().transpose(0, 2, 3, 1) - to_numpy(bn.moving_mean)) / np.sqrt(to_numpy(bn.moving_variance) + 1e-5)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    assert layer.bn.epsilon == 1e-5


@pytest.mark.parametrize(
    "layer",
    [
        ConvModule(4, 3, strides=2),
        CSPLayer(8, num_blocks=2, channel_attention=True),
        SPPBottleneck(8),
    ],
)
def test_layers_round_trip_their_config(layer):
    layer(np.zeros((1, 8, 8, 8), "float32"))
    run_serialization_test(layer)
