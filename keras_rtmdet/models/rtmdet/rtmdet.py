"""`RTMDet`, the object-detection task."""

import keras
from keras import ops

from keras_rtmdet.distribute.replicas import cross_replica_mean
from keras_rtmdet.distribute.replicas import scale_loss_for_gradient_sum
from keras_rtmdet.layers.image_normalization import REFERENCE_MEAN_BGR
from keras_rtmdet.layers.image_normalization import REFERENCE_STD_BGR
from keras_rtmdet.layers.image_normalization import ImageNormalization
from keras_rtmdet.models.cspnext.cspnext_backbone import CSPNeXt
from keras_rtmdet.models.dense_detector import POSTPROCESS_KEYS
from keras_rtmdet.models.dense_detector import DenseDetector
from keras_rtmdet.models.dense_detector import flatten_levels
from keras_rtmdet.models.preset_loading import PresetMixin
from keras_rtmdet.models.rtmdet.cspnext_pafpn import CSPNeXtPAFPN
from keras_rtmdet.models.rtmdet.rtmdet_head import RTMDetSepBNHead
from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import RTMDetPreprocessor
from keras_rtmdet.models.rtmdet.rtmdet_presets import RTMDET_PRESETS
from keras_rtmdet.ops.boxes import distance_to_boxes
from keras_rtmdet.ops.dense_postprocess import gather_rows
from keras_rtmdet.losses.detection_targets import normalize_detection_targets
from keras_rtmdet.losses.dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from keras_rtmdet.losses.detection_losses import rtmdet_detection_loss
from keras_rtmdet.utils.input_checks import check_image_size
from keras_rtmdet.utils.input_checks import check_num_classes
from keras_rtmdet.utils.input_checks import check_postprocess_settings

# The static cap on pre-NMS candidates per image (see `select_candidates`).
# mmdet keeps up to nms_pre=30000 per level; its deploy configs cap at 5000.
DEFAULT_MAX_CANDIDATES = 5000


@keras.saving.register_keras_serializable(package="keras_rtmdet")
class RTMDet(PresetMixin, DenseDetector):
    """RTMDet object detector: CSPNeXt → CSPNeXtPAFPN → RTMDetSepBNHead.

    `call` maps padded pixel images to per-prior outputs; `predict` runs the
    whole reference inference (keep-ratio resize, pad with 114, normalise,
    decode, class-aware NMS) on raw images of any size and returns boxes in
    each original image's pixels.

    Args:
        backbone: a `CSPNeXt` (or any model returning C3..C5 features).
        neck: a `CSPNeXtPAFPN`.
        head: a `RTMDetSepBNHead`.
        class_names: optional list of `num_classes` names.
        image_size: (height, width) of the padded input `predict` uses,
            multiples of 32 (the largest stride); one int for a square.
        input_channel_order: channel order of the pixels `call`/`fit` take
            ("rgb" default; the network itself sees BGR like the reference).
        mean, std: normalisation in the network's (BGR) order.
        score_threshold: keep (prior, class) pairs scoring above it
            (reference test_cfg: 0.001 for COCO evaluation).
        nms_pre: candidates per level before NMS (reference: 30000).
        iou_threshold: class-aware NMS IoU (reference: 0.65).
        max_detections: detections per image (reference: 300).
        min_bbox_size: drop boxes whose width or height is not above it.
        max_candidates: static cap on candidates per image entering NMS.
        nms_method: "auto", "keras", "tensorflow" or "torchvision".
        bounding_box_format: format of the target boxes given to `fit`
            (a `keras.utils.bounding_boxes` format; default "xyxy" pixels).

    Inputs of `call`: (batch, H, W, 3) pixels in [0, 255], H and W multiples
    of 32. Outputs: dict with `cls_logits` (batch, N, num_classes) and
    `bbox_preds` (batch, N, 4) distances (left, top, right, bottom) in pixels
    from each prior, N = Σ_l (H/s_l)·(W/s_l), levels finest first, row-major.

    Example:
    >>> model = keras_rtmdet.RTMDet.from_preset("rtmdet_s_coco")
    >>> out = model.predict(image_rgb_uint8)      # any size
    >>> out["boxes"][0, : out["num_detections"][0]]   # xyxy, original pixels
    """

    presets = RTMDET_PRESETS
    # The head `from_arch` builds.
    head_class = RTMDetSepBNHead

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
        self.assigner = DynamicSoftLabelAssigner(topk=13, soft_center_radius=3.0, iou_weight=3.0)
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

    def decode_candidates(self, outputs, candidates, priors, image_size):
        index = candidates["prior_index"]
        points = gather_rows(priors, index)[..., :2]
        distances = gather_rows(outputs["bbox_preds"], index)
        return distance_to_boxes(points, ops.cast(distances, "float32"), max_shape=image_size)

    # Loss terms `dense_losses` returns, each tracked for the progress bar.
    loss_names = ("loss_cls", "loss_bbox")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """QFL + GIoU against dynamic soft-label targets, as RTMDet trains.

        `x`: (B, H, W, 3) images; `y`: `{"boxes": (B, G, 4), "labels": (B, G)}`
        padded with label −1, boxes in `bounding_box_format` (default xyxy
        pixels of `x`). The assigner sees detached predictions. Returns the
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

    def decode_dense_boxes(self, y_pred, priors):
        """(B, N, 4) unclamped xyxy boxes of every prior, in float32 (what the assigner and loss see)."""
        return distance_to_boxes(priors[None, :, :2], ops.cast(y_pred["bbox_preds"], "float32"))

    def target_boxes_in_pixels(self, boxes, image_size):
        if self.bounding_box_format == "xyxy":
            return boxes
        height, width = image_size
        converted = keras.utils.bounding_boxes.convert_format(
            boxes, source=self.bounding_box_format, target="xyxy", height=height, width=width
        )
        return ops.convert_to_numpy(converted)

    def normalize_targets(self, y, image_size):
        """`fit`'s `y` → checked xyxy-pixel `boxes` and `labels` (+ what a variant's loss needs)."""
        return normalize_detection_targets(y, self.bounding_box_format, image_size)

    def dense_losses(self, y_pred, targets, assignment, priors, cls_logits, boxes):
        """{name: scalar} of the loss terms, from the assignment."""
        loss_cls, loss_bbox = rtmdet_detection_loss(cls_logits, boxes, assignment)
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

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
    def from_arch(
        cls,
        deepen_factor,
        widen_factor,
        neck_num_csp_blocks,
        exp_on_reg,
        num_classes=80,
        **kwargs,
    ):
        """Build an RTMDet from the scaling factors of its configs.

        Args:
            deepen_factor, widen_factor: CSPNeXt scaling.
            neck_num_csp_blocks: blocks per neck CSP layer.
            exp_on_reg: exponential box distances (official m/l/x).
            num_classes: classes of the head.
            **kwargs: forwarded to `RTMDet` (thresholds, class names, ...).
        """
        head_kwargs = {"num_classes": num_classes, "exp_on_reg": exp_on_reg}
        return cls._from_scaling(deepen_factor, widen_factor, neck_num_csp_blocks, head_kwargs, **kwargs)

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
