"""`CSPNeXtClassifier`, the ImageNet classification task of the CSPNeXt backbone."""

import keras
import numpy as np
from keras import ops

from keras_rtmdet.layers.image_normalization import ImageNormalization
from keras_rtmdet.models.cspnext.cspnext_backbone import CSPNeXt
from keras_rtmdet.models.cspnext.cspnext_classifier_preprocessor import CSPNeXtClassifierPreprocessor
from keras_rtmdet.models.cspnext.cspnext_classifier_presets import CSPNEXT_CLASSIFIER_PRESETS
from keras_rtmdet.models.preset_loading import PresetMixin
from keras_rtmdet.utils.datasets import is_dataset

# mmpretrain's ImageNet normalisation, RGB order (its data preprocessor has to_rgb=True).
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
# The classifier's last stage: mmpretrain's `out_indices=(4,)`.
LAST_STAGE = 4


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class CSPNeXtClassifier(PresetMixin, keras.Model):
    """CSPNeXt → global average pooling → linear layer, as mmpretrain's `ImageClassifier`.

    The reference layout (`configs/rtmdet/classification`): `backbone` a
    CSPNeXt returning its last stage, `GlobalAveragePooling` neck,
    `LinearClsHead` (`head.fc`). Weights convert from the official
    checkpoints (keys `backbone.*`, `head.fc.*`).

    Args:
        backbone: a `CSPNeXt` whose outputs end with the last stage.
        num_classes: classes of the linear head (1000 for ImageNet).
        class_names: optional list of `num_classes` names.
        image_size: side of the square input `predict` crops to (224).
        resize_short: short side before the centre crop (236).
        input_channel_order: order of the pixels `call`/`fit` take ("rgb").
        mean, std: normalisation in the network's order (RGB, ImageNet).

    Inputs of `call`: (batch, H, W, 3) pixels in [0, 255]. Output: (batch,
    num_classes) logits. `predict` takes raw images of any size and returns
    softmax probabilities.

    Example:
    >>> model = keras_rtmdet.CSPNeXtClassifier.from_preset("cspnext_s_imagenet")
    >>> probs = model.predict(image_rgb_uint8)      # (1, 1000)
    """

    presets = CSPNEXT_CLASSIFIER_PRESETS

    def __init__(
        self,
        backbone,
        num_classes=1000,
        class_names=None,
        image_size=224,
        resize_short=236,
        input_channel_order="rgb",
        mean=IMAGENET_MEAN_RGB,
        std=IMAGENET_STD_RGB,
        **kwargs,
    ):
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Got {len(class_names)} class names for num_classes={num_classes}.")
        image_size = int(image_size[0] if isinstance(image_size, (list, tuple)) else image_size)
        # === Layers ===
        normalizer = ImageNormalization(
            mean, std, input_channel_order, network_channel_order="rgb", name="normalizer"
        )
        pooling = keras.layers.GlobalAveragePooling2D(name="neck", dtype=backbone.dtype_policy)
        fc = keras.layers.Dense(num_classes, name="fc", dtype=backbone.dtype_policy)

        # === Functional Model ===
        images = keras.Input(shape=(None, None, 3), name="images")
        features = backbone(normalizer(images))
        logits = fc(pooling(features[-1] if isinstance(features, (list, tuple)) else features))
        super().__init__(inputs=images, outputs=logits, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.normalizer = normalizer
        self.fc = fc
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else None
        self.image_size = image_size
        self.resize_short = int(resize_short)
        self.input_channel_order = input_channel_order
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.preprocessor = CSPNeXtClassifierPreprocessor(image_size, resize_short)

    def checkpoint_modules(self):
        return [(self.backbone, "backbone."), (self.fc, "head.fc.")]

    def aliased_checkpoint_keys(self):
        return {}

    def compile(self, optimizer="adamw", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` with sparse categorical cross-entropy on the logits and accuracy by default."""
        loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = metrics if metrics is not None else ["sparse_categorical_accuracy"]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", channel_order=None, **kwargs):
        """Class probabilities (B, num_classes) of raw images of any size (numpy).

        Each image is resized (short side `resize_short`, bicubic) and centre
        cropped to `image_size` as the reference tests, then normalised in the
        model. A `tf.data.Dataset` / `PyDataset` must yield preprocessed
        (B, S, S, 3) pixel batches. `channel_order` is the order of `x`
        (default: the model's `input_channel_order`).
        """
        if not is_dataset(x):
            x = self.preprocessor(
                x,
                input_channel_order=channel_order or self.input_channel_order,
                output_channel_order=self.input_channel_order,
            )
            batch_size = batch_size or 32
        logits = super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)
        return ops.convert_to_numpy(ops.softmax(ops.convert_to_tensor(logits, "float32"), axis=-1))

    def top_k(self, probabilities, k=5):
        """[(index, name or None, probability)] × k for each row of `predict`'s output."""
        probabilities = np.asarray(probabilities)
        order = np.argsort(-probabilities, axis=-1)[:, :k]
        names = self.class_names
        return [
            [(int(i), names[i] if names else None, float(row[i])) for i in top] for row, top in zip(probabilities, order)
        ]

    def with_classes(self, num_classes, class_names=None):
        """A copy for other classes: the backbone's weights kept, a fresh linear head."""
        config = self.get_config()
        config.update(num_classes=int(num_classes), class_names=class_names, name=None)
        model = type(self).from_config(config)
        for target, source in zip(model.backbone.weights, self.backbone.weights):
            target.assign(source)
        return model

    @classmethod
    def from_arch(cls, deepen_factor, widen_factor, num_classes=1000, **kwargs):
        """Build from the CSPNeXt scaling factors (tiny 0.167/0.375 … x 1.33/1.25)."""
        backbone = CSPNeXt(
            deepen_factor=deepen_factor,
            widen_factor=widen_factor,
            out_indices=(LAST_STAGE,),
            dtype=kwargs.get("dtype"),
            name="backbone",
        )
        return cls(backbone, num_classes=num_classes, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "image_size": self.image_size,
            "resize_short": self.resize_short,
            "input_channel_order": self.input_channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

