"""The shared base of RTMDet's detection, instance and rotated variants.

A dense detector is a functional Keras model from padded pixel images to
per-prior outputs (`call`: backbone → neck → head), trained against dynamic
soft-label targets (`compute_loss`) and followed by fixed-shape
post-processing (`DensePostprocessing`) that turns the outputs into padded
detections. Variants differ only in their head, their targets, assigner and
losses, and their post-processing hooks (how boxes are decoded and
suppressed, what each detection carries), and declare what the rest of the
package asks of them in `variant` (`DetectorVariant`), as detectron2's dense
detectors differ from their base.
"""

import keras
import numpy as np
from keras import ops

from keras_rtmdet.distribute.replicas import cross_replica_mean
from keras_rtmdet.distribute.replicas import scale_loss_for_gradient_sum
from keras_rtmdet.distribute.replicas import torch_process_group_size
from keras_rtmdet.layers.image_normalization import REFERENCE_MEAN_BGR
from keras_rtmdet.layers.image_normalization import REFERENCE_STD_BGR
from keras_rtmdet.layers.image_normalization import ImageNormalization
from keras_rtmdet.models.cspnext.cspnext_backbone import CSPNeXt
from keras_rtmdet.models.dense_postprocessing import POSTPROCESS_KEYS
from keras_rtmdet.models.dense_postprocessing import DensePostprocessing
from keras_rtmdet.models.detector_inference import DetectorInference
from keras_rtmdet.models.jax_state_guard import model_state_kept
from keras_rtmdet.models.non_finite_loss import StopOnNonFiniteLoss
from keras_rtmdet.models.preset_loading import PresetMixin
from keras_rtmdet.models.rtmdet.cspnext_pafpn import CSPNeXtPAFPN
from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import RTMDetPreprocessor
from keras_rtmdet.utils.datasets import is_dataset
from keras_rtmdet.utils.input_checks import check_image_size
from keras_rtmdet.utils.input_checks import check_num_classes
from keras_rtmdet.utils.input_checks import check_pixels
from keras_rtmdet.utils.input_checks import check_postprocess_settings
from keras_rtmdet.utils.target_checks import check_target_batches

# The static cap on pre-NMS candidates per image (see `select_candidates`).
# mmdet keeps up to nms_pre=30000 per level; its deploy configs cap at 5000.
DEFAULT_MAX_CANDIDATES = 5000
# `export` is `keras_rtmdet.export.export`, which that package registers here when `keras_rtmdet` is
# imported (`register_exporter`): the exporters serve the models, so the models do not import them.
_EXPORTER = []


def register_exporter(export):
    """Make `export(model, path, format=..., **options)` what `DenseDetector.export` calls."""
    _EXPORTER[:] = [export]


def flatten_levels(levels):
    """Concatenate per-level maps (B, H_l, W_l, D) into (B, Σ H_l·W_l, D), row-major."""
    flat = [keras.layers.Reshape((-1, level.shape[-1]))(level) for level in levels]
    return ops.concatenate(flat, axis=1) if len(flat) > 1 else flat[0]


class DenseDetector(PresetMixin, DetectorInference, DensePostprocessing, keras.Model):
    """Base class of the RTMDet variants: CSPNeXt → CSPNeXtPAFPN → a variant's head.

    `call` maps padded pixel images to per-prior outputs; `predict` runs the
    whole reference inference (keep-ratio resize, pad with 114, normalise,
    decode, NMS) on raw images of any size.

    A variant sets `variant` (a `DetectorVariant`), `presets`, `head_class`
    and implements `build_assigner`, `decode_dense_boxes`, `normalize_targets`,
    `dense_losses`, `training_stages` and the post-processing hook
    `decode_candidates` (optionally `rescale_boxes`, `box_size_mask`,
    `suppress`, `detection_fields`, `finalize_predictions`).

    The constructor's arguments (backbone, neck, head, class names, input
    size and channel order, normalisation, the post-processing settings of
    `POSTPROCESS_KEYS`, the target box format) are documented on `RTMDet`;
    each variant's docstring gives its reference post-processing values.
    """

    # The `DetectorVariant` a concrete variant declares.
    variant = None
    # The head `from_arch` builds.
    head_class = None
    # Loss terms `dense_losses` returns, each tracked for the progress bar.
    loss_names = ("loss_cls", "loss_bbox")

    def __init__(
        self,
        backbone,
        neck,
        head,
        class_names=None,
        image_size=(640, 640),
        input_channel_order="rgb",
        mean=REFERENCE_MEAN_BGR,
        std=REFERENCE_STD_BGR,
        score_threshold=0.001,
        nms_pre=30000,
        iou_threshold=0.65,
        max_detections=300,
        min_bbox_size=0.0,
        max_candidates=DEFAULT_MAX_CANDIDATES,
        nms_method="auto",
        bounding_box_format="xyxy",
        **kwargs,
    ):
        image_size = check_image_size(image_size)
        if class_names is not None and len(class_names) != head.num_classes:
            raise ValueError(
                f"Got {len(class_names)} class names for a head with {head.num_classes} classes."
            )
        # === Layers ===
        normalizer = ImageNormalization(mean, std, input_channel_order, name="normalizer")

        # === Functional Model ===
        images = keras.Input(shape=(None, None, 3), name="images")
        outputs = self._build_outputs(backbone, neck, head, normalizer(images))
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.normalizer = normalizer
        self.num_classes = head.num_classes
        self.strides = tuple(head.strides)
        self.class_names = list(class_names) if class_names is not None else None
        self.image_size = image_size
        self.input_channel_order = input_channel_order
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.preprocessor = RTMDetPreprocessor(self.image_size)
        self.bounding_box_format = bounding_box_format
        self.assigner = self.build_assigner()
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}
        self._init_postprocess(
            score_threshold, nms_pre, iou_threshold, max_detections, min_bbox_size, max_candidates, nms_method
        )

    @staticmethod
    def _build_outputs(backbone, neck, head, normalized):
        """`call`'s outputs: every per-level head output flattened over the priors (`flatten_levels`).

        The head's `cls_scores` become `cls_logits`; outputs that are not
        per-level lists (RTMDet-Ins' `mask_feat`) pass through as they are.
        """
        raw = head(neck(backbone(normalized)))
        return {
            ("cls_logits" if key == "cls_scores" else key): flatten_levels(value) if isinstance(value, list) else value
            for key, value in raw.items()
        }

    def raw_outputs(self, images, normalized=False):
        """`call`'s outputs; with `normalized=True`, `images` skip the normaliser."""
        if not normalized:
            return self(images, training=False)
        return self._build_outputs(self.backbone, self.neck, self.head, images)

    # --- the variant's hooks ---

    def build_assigner(self):
        """The label assigner `compute_loss` calls: `assigner(priors, cls_logits, boxes, gt_boxes, gt_labels, gt_centers)`."""
        raise NotImplementedError

    def decode_dense_boxes(self, y_pred, priors):
        """(B, N, box_dim) float32 boxes of every prior, unclamped (what the assigner and loss see)."""
        raise NotImplementedError

    def normalize_targets(self, y, image_size):
        """`fit`'s `y` → checked `boxes` and `labels` in pixels (+ what a variant's loss needs)."""
        raise NotImplementedError

    def dense_losses(self, y_pred, targets, assignment, priors, cls_logits, boxes):
        """{name: scalar} of the `loss_names` terms, from the assignment."""
        raise NotImplementedError

    def training_stages(self, source, image_size, batch_size, max_boxes, seed, shard, epochs, **recipe):
        """The recipe's training data: `[(first_epoch, make_epoch), ...]` for `data.training_stream`.

        `recipe` holds the variant's own options (RTMDet: `model_size`,
        `stage2_epochs`; RTMDet-R: `rect_labels`); an option that does not
        apply to the variant is refused with a ValueError.
        """
        raise NotImplementedError

    def compile(self, optimizer="adamw", **kwargs):
        """`keras.Model.compile`, with the optimizer's slots created at once.

        TensorFlow traces a `tf.function` twice when its first call creates
        variables; building the optimizer here keeps `fit`'s first step to a
        single trace of the train step (≈ half the start-up time).
        """
        super().compile(optimizer=optimizer, **kwargs)
        if self.built and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, callbacks=None, **kwargs):
        """`keras.Model.fit`, with the targets checked first and a stop at the first non-finite loss.

        Targets given as arrays are checked on the host before the first step
        (`check_training_targets`); a dataset's are not (the readers check
        theirs when built). A `StopOnNonFiniteLoss` runs first among the
        callbacks: a NaN or infinite loss raises `NonFiniteLossError` naming
        the epoch and step before any other callback sees the step. On JAX the
        model stays usable after an exception (`model_state_kept`).
        """
        if y is not None and not is_dataset(x):
            self.check_training_targets(x, y, batch_size)
        callbacks = list(callbacks or [])
        if not any(isinstance(callback, StopOnNonFiniteLoss) for callback in callbacks):
            callbacks.insert(0, StopOnNonFiniteLoss())
        with model_state_kept(self):
            return super().fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, **kwargs)

    def evaluate(self, *args, **kwargs):
        with model_state_kept(self):
            return super().evaluate(*args, **kwargs)

    def check_training_targets(self, x, y, batch_size=None):
        """Raise `TargetError` naming batch, image and instance of the first unusable target in arrays for `fit`.

        Checks (`keras_rtmdet.utils.target_checks`): finite coordinates, labels
        in [−1, num_classes), boxes not normalised to [0, 1], none far outside
        the image; and numpy images' pixels finite and in [0, 255]
        (`check_pixels`). Runs in numpy, once, on the whole arrays.
        """
        images = x["images"] if isinstance(x, dict) else x
        if isinstance(images, np.ndarray):
            check_pixels(images)
        if not isinstance(y, dict) or "boxes" not in y:
            return  # `normalize_targets` names what is missing when the step is traced
        labels = y.get("labels", y.get("classes"))
        if labels is None or np.ndim(images) != 4:
            return
        image_size = tuple(np.shape(images)[1:3])
        boxes = self.target_boxes_in_pixels(np.asarray(y["boxes"], np.float32), image_size)
        check_target_batches(boxes, np.asarray(labels), self.num_classes, image_size, batch_size)

    def target_boxes_in_pixels(self, boxes, image_size):
        """`fit`'s target boxes (numpy) as the checks read them: xyxy pixels, or the variant's own pixel boxes."""
        if self.bounding_box_format == "xyxy":
            return boxes
        height, width = image_size
        converted = keras.utils.bounding_boxes.convert_format(
            boxes, source=self.bounding_box_format, target="xyxy", height=height, width=width
        )
        return ops.convert_to_numpy(converted)

    def train_step(self, *args):
        """Keras' train step; under torch data parallelism (`keras_rtmdet.distribute`) through DDP."""
        if keras.backend.backend() == "torch" and torch_process_group_size() > 1:
            from keras_rtmdet.distribute.torch_ddp import ddp_train_step

            return ddp_train_step(self, *args)
        return super().train_step(*args)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The variant's `dense_losses` against its assigner's dynamic soft-label targets, as RTMDet trains.

        `x`: (B, H, W, 3) images; `y`: `{"boxes": (B, G, box_dim), "labels": (B, G)}`
        padded with label −1, boxes in `bounding_box_format` (RTMDet's default:
        xyxy pixels of `x`; RTMDet-R: rboxes), plus the variant's own targets
        (RTMDet-Ins: `masks`). The assigner sees detached predictions. Returns the
        sum of the `loss_names` terms, each tracked for the progress bar.

        Data-parallel (see `keras_rtmdet.distribute`): each replica's terms
        are its own sums over the mean normaliser of all replicas, as mmdet;
        the progress bar shows their mean over the replicas, which is the
        whole batch's loss.
        """
        images = x["images"] if isinstance(x, dict) else x
        image_size = tuple(images.shape[1:3])
        targets = self.normalize_targets(y, image_size)
        priors = self.priors(image_size)
        cls_logits = ops.cast(y_pred["cls_logits"], "float32")
        boxes = self.decode_dense_boxes(y_pred, priors)
        assignment = self.assigner(
            priors, cls_logits, boxes, targets["boxes"], targets["labels"], gt_centers=targets.get("centers")
        )
        losses = self.dense_losses(y_pred, targets, assignment, priors, cls_logits, boxes)
        total = 0.0
        for name in self.loss_names:
            self.loss_trackers[name].update_state(cross_replica_mean(ops.stop_gradient(losses[name])))
            total = total + losses[name]
        if self.losses:
            total = total + ops.sum(self.losses)
        return scale_loss_for_gradient_sum(total)

    # --- serving ---

    def export(self, filepath, format="saved_model", verbose=True, **options):
        """Export for serving on raw uint8 images: `keras_rtmdet.export.export(self, filepath, format, ...)`.

        `format`: `"saved_model"` (alias `"tf_saved_model"`), `"onnx"`,
        `"litert"` (alias `"tflite"`), `"openvino"`, `"tf_trt"` or
        `"tensorrt"`; see `keras_rtmdet.export.export` for the options
        (`nms`, `input_size`, `dynamic_size`, `batch_size`, `precision`
        (`"fp32"`, `"fp16"`, `"int8"` with `calibration` images), ...).
        """
        if not _EXPORTER:
            raise RuntimeError("No exporter registered: import keras_rtmdet.export first.")
        return _EXPORTER[0](self, filepath, format=format, verbose=verbose, **options)

    def load_backbone_preset(self, preset, checkpoint=None):
        """Start from an ImageNet backbone, as the reference's tiny/s training does.

        Loads the backbone of a `CSPNeXtClassifier` preset (`"cspnext_s_imagenet"`,
        a classifier preset directory, or with `checkpoint` a local mmpretrain
        `.pth`) into this model's backbone; neck and head keep their weights.
        The weights are copied as they are: like mmdet, a backbone trained on
        RGB inputs then sees this detector's BGR inputs and adapts in training.
        """
        from keras_rtmdet.models.cspnext.cspnext_classifier import CSPNeXtClassifier
        from keras_rtmdet.models.cspnext.cspnext_weights import check_backbone_scaling
        from keras_rtmdet.models.cspnext.cspnext_weights import copy_backbone_weights

        spec = CSPNeXtClassifier.presets.get(preset)
        if spec is not None:  # a wrong size fails before anything is downloaded
            check_backbone_scaling(spec["arch"], self.backbone, source_name=str(preset))
        classifier = CSPNeXtClassifier.from_preset(preset, checkpoint=checkpoint)
        copy_backbone_weights(classifier.backbone, self.backbone, source_name=str(preset))
        return self

    @classmethod
    def _from_scaling(cls, deepen_factor, widen_factor, neck_num_csp_blocks, head_kwargs, **kwargs):
        """Backbone, neck and a `cls.head_class(**head_kwargs)` head from the scaling factors."""
        check_num_classes(head_kwargs["num_classes"])
        cls.check_settings(kwargs)
        dtype = kwargs.get("dtype")
        backbone = CSPNeXt(deepen_factor=deepen_factor, widen_factor=widen_factor, dtype=dtype, name="backbone")
        in_channels = list(backbone.out_channels)
        neck = CSPNeXtPAFPN(
            in_channels, in_channels[0], num_csp_blocks=neck_num_csp_blocks, dtype=dtype, name="neck"
        )
        head = cls.head_class(
            in_channels=in_channels[0],
            feat_channels=in_channels[0],
            strides=backbone.strides,
            dtype=dtype,
            name="bbox_head",
            **head_kwargs,
        )
        return cls(backbone, neck, head, **kwargs)

    @classmethod
    def check_settings(cls, settings):
        """Refuse a bad `image_size` or post-processing setting among constructor `settings`, before any build."""
        if "image_size" in settings:
            check_image_size(settings["image_size"])
        postprocess = {key: value for key, value in settings.items() if key in POSTPROCESS_KEYS}
        check_postprocess_settings(postprocess, cls.nms_methods)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "neck": keras.saving.serialize_keras_object(self.neck),
            "head": keras.saving.serialize_keras_object(self.head),
            "class_names": self.class_names,
            "image_size": list(self.image_size),
            "input_channel_order": self.input_channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "bounding_box_format": self.bounding_box_format,
            **self.postprocess_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "neck", "head"):
            if isinstance(config[key], dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
