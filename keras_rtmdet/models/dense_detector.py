"""The shared base of RTMDet's detection, instance and rotated variants.

A dense detector is a functional Keras model from padded pixel images to
per-prior outputs (`call`), plus fixed-shape post-processing (`postprocess`)
that turns them into padded detections. Subclasses differ only in their head
outputs, in how candidate boxes are decoded and suppressed, and in what they
add to each detection (masks, angles).
"""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_rtmdet.distribute.replicas import local_replica_count
from keras_rtmdet.distribute.replicas import torch_process_group_size
from keras_rtmdet.models.jax_state_guard import model_state_kept
from keras_rtmdet.models.non_finite_loss import StopOnNonFiniteLoss
from keras_rtmdet.ops.dense_postprocess import gather_rows
from keras_rtmdet.ops.dense_postprocess import pad_detections
from keras_rtmdet.ops.dense_postprocess import select_candidates
from keras_rtmdet.ops.dense_postprocess import top_detections
from keras_rtmdet.ops.nms import NMS_METHODS
from keras_rtmdet.ops.no_gradients import no_gradients
from keras_rtmdet.ops.priors import level_sizes
from keras_rtmdet.ops.priors import point_priors
from keras_rtmdet.utils.datasets import is_dataset
from keras_rtmdet.utils.input_checks import DEFAULT_PIXEL_RANGE
from keras_rtmdet.utils.input_checks import check_pixel_range
from keras_rtmdet.utils.input_checks import check_pixels
from keras_rtmdet.utils.input_checks import check_positive_int
from keras_rtmdet.utils.input_checks import check_postprocess_settings
from keras_rtmdet.utils.target_checks import check_target_batches

POSTPROCESS_KEYS = (
    "score_threshold",
    "nms_pre",
    "iou_threshold",
    "max_detections",
    "min_bbox_size",
    "max_candidates",
    "nms_method",
)


# Inputs of `predict_step` copied to its outputs, in `finalize_predictions`' argument order.
PASSED_THROUGH = ("scale_factors", "original_sizes")


def flatten_levels(levels):
    """Concatenate per-level maps (B, H_l, W_l, D) into (B, Σ H_l·W_l, D), row-major."""
    flat = [keras.layers.Reshape((-1, level.shape[-1]))(level) for level in levels]
    return ops.concatenate(flat, axis=1) if len(flat) > 1 else flat[0]


class DenseDetector(keras.Model):
    """Base class: inference plumbing shared by every RTMDet variant.

    Subclasses build the functional graph in `__init__` and implement
    `decode_candidates` (and optionally `detection_fields`).
    """

    # The `nms_method` values `suppress` understands.
    nms_methods = NMS_METHODS

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
        return boxes

    def train_step(self, *args):
        """Keras' train step; under torch data parallelism (`keras_rtmdet.distribute`) through DDP."""
        if keras.backend.backend() == "torch" and torch_process_group_size() > 1:
            from keras_rtmdet.distribute.torch_ddp import ddp_train_step

            return ddp_train_step(self, *args)
        return super().train_step(*args)

    def _init_postprocess(
        self,
        score_threshold,
        nms_pre,
        iou_threshold,
        max_detections,
        min_bbox_size,
        max_candidates,
        nms_method,
    ):
        self.set_postprocess(
            score_threshold=score_threshold,
            nms_pre=nms_pre,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            min_bbox_size=min_bbox_size,
            max_candidates=max_candidates,
            nms_method=nms_method,
        )

    def set_postprocess(self, **settings):
        """Change post-processing settings (see the class docstring).

        Every setting is checked (`check_postprocess_settings`) before any is
        changed: a refused call leaves the model as it was.
        """
        settings = check_postprocess_settings(settings, self.nms_methods)
        changed = False
        for key, value in settings.items():
            changed = changed or getattr(self, key, None) != value
            setattr(self, key, value)
        if changed:
            # Compiled predict functions bake the settings in; an unchanged model keeps its compiled one.
            self.predict_function = None

    @contextlib.contextmanager
    def postprocess_settings(self, **settings):
        """Temporarily override post-processing settings (`None` keeps the current one)."""
        settings = {k: v for k, v in settings.items() if v is not None}
        unknown = sorted(set(settings) - set(POSTPROCESS_KEYS))
        if unknown:
            raise ValueError(f"Unknown post-processing setting {unknown[0]!r}; known: {POSTPROCESS_KEYS}.")
        old = {k: getattr(self, k) for k in settings}
        self.set_postprocess(**settings)
        try:
            yield
        finally:
            self.set_postprocess(**old)

    def postprocess_config(self):
        return {key: getattr(self, key) for key in POSTPROCESS_KEYS}

    # --- post-processing ---

    def priors(self, image_size):
        """(N, 4) priors (x, y, stride, stride) for a padded input size."""
        return point_priors(image_size, self.strides)

    def decode_candidates(self, outputs, candidates, priors, image_size):
        """Return (B, M, box_dim) candidate boxes in padded-input pixels."""
        raise NotImplementedError

    def rescale_boxes(self, boxes, scale_factors):
        """Map boxes from the padded input back to original-image pixels."""
        ws, hs = scale_factors[:, 0:1], scale_factors[:, 1:2]
        factors = ops.stack([ws, hs, ws, hs], axis=-1)
        return boxes / factors

    def box_size_mask(self, boxes):
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return ops.logical_and(w > self.min_bbox_size, h > self.min_bbox_size)

    def suppress(self, boxes, scores, labels, valid):
        from keras_rtmdet.ops.nms import batched_nms_keep

        return batched_nms_keep(
            boxes, scores, labels, valid, self.iou_threshold, self.nms_method, int(self.max_detections)
        )

    def detection_fields(self, outputs, fields, prior_index, priors, image_size, scale_factors):
        """Hook for subclasses to add per-detection outputs (e.g. masks)."""
        return fields

    def postprocess(self, outputs, image_size, scale_factors=None):
        """Turn raw per-prior outputs into padded detections.

        Args:
            outputs: dict from `call` (`cls_logits` (B, N, C) and the
                variant's box outputs).
            image_size: (height, width) of the padded input, static ints.
            scale_factors: optional (B, 2) (w_scale, h_scale) of each image's
                resize; boxes are divided by them (original-image pixels).

        Returns: dict with `boxes` (B, K, 4), `scores` (B, K), `labels`
        (B, K) int32, padded with −1 after `num_detections` (B,) entries;
        K = `max_detections`.
        """
        candidates = self.candidate_detections(outputs, image_size, scale_factors)
        keep = self.suppress(candidates["boxes"], candidates["scores"], candidates["labels"], candidates["valid"])
        return self.finish_detections(outputs, candidates, keep, image_size, scale_factors)

    def candidate_detections(self, outputs, image_size, scale_factors=None):
        """The NMS input: the top (prior, class) candidates, decoded (`postprocess`' first half).

        Returns: dict of (B, M) `scores`, `labels`, `prior_index`, `valid`
        (score and box size) sorted by descending score, and `boxes`
        (B, M, box_dim) in original-image pixels when `scale_factors` is given.
        """
        image_size = tuple(int(s) for s in image_size)
        sizes = level_sizes(image_size, self.strides)
        probs = ops.sigmoid(ops.cast(outputs["cls_logits"], "float32"))
        level_scores, start = [], 0
        for h, w in sizes:
            level_scores.append(probs[:, start : start + h * w, :])
            start += h * w
        if start != probs.shape[1]:
            raise ValueError(
                f"Outputs hold {probs.shape[1]} priors but an input of size {image_size} "
                f"gives {start}; pass the padded input's size."
            )
        candidates = select_candidates(
            level_scores, self.score_threshold, int(self.nms_pre), int(self.max_candidates)
        )
        boxes = self.decode_candidates(outputs, candidates, self.priors(image_size), image_size)
        if scale_factors is not None:
            boxes = self.rescale_boxes(boxes, ops.cast(scale_factors, boxes.dtype))
        candidates["boxes"] = boxes
        candidates["valid"] = ops.logical_and(candidates["valid"], self.box_size_mask(boxes))
        return candidates

    # The `call` outputs `detection_fields` reads, besides the candidates (exported graphs pass them on).
    detection_field_inputs = ()

    def finish_detections(self, outputs, candidates, keep, image_size, scale_factors=None):
        """`postprocess`' second half: the best `max_detections` kept candidates, padded.

        Args:
            outputs: `call`'s outputs (only `detection_field_inputs` are read).
            candidates: `candidate_detections`' dict.
            keep: (B, M) bool, the NMS survivors.
        """
        image_size = tuple(int(s) for s in image_size)
        order, det_valid = top_detections(keep, candidates["scores"], int(self.max_detections))
        fields = {
            "boxes": gather_rows(candidates["boxes"], order),
            "scores": ops.take_along_axis(candidates["scores"], order, axis=1),
            "labels": ops.cast(ops.take_along_axis(candidates["labels"], order, axis=1), "int32"),
        }
        prior_index = ops.take_along_axis(candidates["prior_index"], order, axis=1)
        fields = self.detection_fields(
            outputs, fields, prior_index, self.priors(image_size), image_size, scale_factors
        )
        return pad_detections(fields, det_valid, int(self.max_detections))

    # --- inference entry points ---

    def predict_step(self, *args):
        # JAX's trainer passes (state, data) and expects (outputs, state) back.
        x, _, _ = keras.utils.unpack_x_y_sample_weight(args[-1])
        if isinstance(x, dict):
            images, scale_factors = x["images"], x.get("scale_factors")
        else:
            images, scale_factors = x, None
        # Kept for `finalize_predictions`, which may need them (mask pasting).
        passed = {k: x[k] for k in PASSED_THROUGH if isinstance(x, dict) and k in x}
        if keras.config.backend() == "jax":
            outputs, state = super().predict_step(args[0], images)
            return dict(self.postprocess(outputs, images.shape[1:3], scale_factors), **passed), state
        outputs = super().predict_step(images)
        return dict(self.postprocess(outputs, images.shape[1:3], scale_factors), **passed)

    def finalize_predictions(self, outputs, scale_factors=None, original_sizes=None):
        """Numpy outputs of `predict` from the post-processed batch (subclasses add masks).

        Args:
            outputs: `predict_step`'s dict (backend or numpy arrays); the
                inputs it passed through are dropped.
            scale_factors: optional (B, 2) (w_scale, h_scale) of the resize.
            original_sizes: optional (B, 2) (h, w) of the raw images.
        """
        return {key: ops.convert_to_numpy(value) for key, value in outputs.items() if key not in PASSED_THROUGH}

    def predict(
        self,
        x,
        batch_size=None,
        verbose="auto",
        steps=None,
        callbacks=None,
        channel_order=None,
        pixel_range=DEFAULT_PIXEL_RANGE,
        **settings,
    ):
        """Detect objects in raw images of any size.

        Args:
            x: one image (H, W, 3), a batch (B, H, W, 3) or a list of images
                of different sizes; uint8, or int / float pixels spanning
                `pixel_range`. A `tf.data.Dataset` or
                `keras.utils.PyDataset` must instead yield preprocessed
                `{"images", "scale_factors"}` batches of [0, 255] pixels
                (optionally `original_sizes` (B, 2) (h, w), which variants
                with masks crop to).
            batch_size: images per forward pass, a positive integer (default 8).
            channel_order: `"rgb"` or `"bgr"`, the order of `x`; defaults to
                the model's `input_channel_order` ("rgb").
            pixel_range: (low, high) the values of `x` span, default (0, 255).
                `(0, 1)` for float images scaled to [0, 1]: they are
                multiplied by 255; any other range is mapped linearly onto
                [0, 255]. Non-finite values, values outside the range and,
                with the default range, float images whose maximum is in
                (0, 1] (they look scaled to [0, 1]) raise a ValueError
                naming the image (`keras_rtmdet.utils.input_checks.check_pixels`).
            **settings: per-call post-processing overrides:
                `score_threshold`, `iou_threshold`, `nms_pre`,
                `max_detections`, `min_bbox_size`, `max_candidates`,
                `nms_method`.

        Returns: dict of numpy arrays, boxes in original-image pixels:
        `boxes` (B, K, 4) xyxy, `scores` (B, K), `labels` (B, K), padded with
        −1, and `num_detections` (B,); variants add their outputs (RTMDetIns:
        `masks`).
        """
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size")
        pixel_range = check_pixel_range(pixel_range)
        if is_dataset(x):
            if pixel_range != DEFAULT_PIXEL_RANGE:
                raise ValueError(
                    f"pixel_range={pixel_range} applies to raw images; a dataset must yield preprocessed "
                    "batches of [0, 255] pixels."
                )
            inputs, batch_size = x, None
        else:
            prep = self.preprocessor(
                x,
                input_channel_order=channel_order or self.input_channel_order,
                output_channel_order=self.input_channel_order,
                pixel_range=pixel_range,
            )
            inputs, batch_size = {key: prep[key] for key in ("images", *PASSED_THROUGH)}, batch_size or 8
        with self.postprocess_settings(**settings), model_state_kept(self):
            out = self._predict_split_evenly(inputs, batch_size, verbose=verbose, steps=steps, callbacks=callbacks)
            return self.finalize_predictions(out, *(out.get(k) for k in PASSED_THROUGH))

    def predict_preprocessed_batch(self, inputs):
        """`predict_step`'s outputs (numpy) for one preprocessed batch `{"images", "scale_factors"}`.

        `predict_on_batch`, except under data parallelism (`keras_rtmdet.distribute`), where that would run
        the whole batch on every TensorFlow replica, or fail on JAX for a batch not divisible by the devices:
        there the batch goes through `predict`, split evenly over the replicas.
        """
        if local_replica_count() == 1:
            return {key: ops.convert_to_numpy(value) for key, value in self.predict_on_batch(inputs).items()}
        return self._predict_split_evenly(inputs, len(inputs["images"]), verbose=0)

    def _predict_split_evenly(self, inputs, batch_size, **kwargs):
        """`keras.Model.predict` of array `inputs`, with every batch a multiple of the data-parallel replicas.

        The rows are padded (repeating the last) to a multiple of the replicas and the padding is cut off
        the outputs; a dataset's batches are the caller's to size.
        """
        replicas = local_replica_count()
        if replicas == 1 or is_dataset(inputs):
            return super().predict(inputs, batch_size=batch_size, **kwargs)
        count = len(inputs["images"])
        padded = -(-count // replicas) * replicas
        rows = np.minimum(np.arange(padded), count - 1)
        inputs = {key: np.asarray(value)[rows] for key, value in inputs.items()}
        batch_size = -(-min(batch_size, padded) // replicas) * replicas
        out = super().predict(inputs, batch_size=batch_size, **kwargs)
        return {key: np.asarray(value)[:count] for key, value in out.items()}

    def export(self, filepath, format="saved_model", verbose=True, **options):
        """Export for serving on raw uint8 images: `keras_rtmdet.export.export(self, filepath, format, ...)`.

        `format`: `"saved_model"` (alias `"tf_saved_model"`), `"onnx"`,
        `"tf_trt"` or `"tensorrt"`; see `keras_rtmdet.export.export` for
        the options (`nms`, `input_size`, `dynamic_size`, `batch_size`, ...).
        """
        from keras_rtmdet.export.export import export

        return export(self, filepath, format=format, verbose=verbose, **options)

    def detect(self, images, scale_factors=None, normalized=False, **settings):
        """Post-process an already preprocessed, padded batch (eagerly).

        Args:
            images: (B, H, W, 3) padded input. Pixels in the model's
                `input_channel_order` if `normalized` is False; else already
                normalised (the backbone's input).
            scale_factors: optional (B, 2) (w_scale, h_scale).

        Returns: like `predict`, as backend tensors.
        """
        images = ops.convert_to_tensor(images, "float32")
        with self.postprocess_settings(**settings), no_gradients():
            outputs = self.raw_outputs(images, normalized=normalized)
            return self.postprocess(outputs, images.shape[1:3], scale_factors)

