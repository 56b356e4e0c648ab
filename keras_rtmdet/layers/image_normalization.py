"""Pixel normalisation in the network's channel order."""

import keras
from keras import ops

# The official RTMDet weights were trained on BGR images (cv2 decoding, no
# channel swap in mmdet's DetDataPreprocessor); mean and std are in BGR order.
REFERENCE_MEAN_BGR = (103.53, 116.28, 123.675)
REFERENCE_STD_BGR = (57.375, 57.12, 58.395)


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class ImageNormalization(keras.layers.Layer):
    """`(x − mean) / std` per channel, after a channel flip when the orders differ.

    Args:
        mean, std: 3 floats in the *network's* channel order (BGR for the
            official detectors, RGB for the ImageNet classifiers).
        input_channel_order: `"rgb"` or `"bgr"`, the order of the pixels fed
            to this layer.
        network_channel_order: the order the network was trained on
            (`"bgr"` for mmdet's detectors, `"rgb"` for mmpretrain's
            classifiers); the input is flipped when it differs.

    Input: (batch, H, W, 3) pixels in [0, 255]. Output: same shape, float.
    """

    def __init__(
        self,
        mean=REFERENCE_MEAN_BGR,
        std=REFERENCE_STD_BGR,
        input_channel_order="rgb",
        network_channel_order="bgr",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, order in (("input", input_channel_order), ("network", network_channel_order)):
            if order not in ("rgb", "bgr"):
                raise ValueError(f"{name}_channel_order must be 'rgb' or 'bgr', got {order!r}.")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.input_channel_order = input_channel_order
        self.network_channel_order = network_channel_order

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.input_channel_order != self.network_channel_order:
            x = ops.flip(x, axis=-1)
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(self.std, dtype=self.compute_dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mean": list(self.mean),
                "std": list(self.std),
                "input_channel_order": self.input_channel_order,
                "network_channel_order": self.network_channel_order,
            }
        )
        return config
