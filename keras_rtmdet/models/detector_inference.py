"""`predict` and `detect` of the dense detectors: raw images in, detections in original-image pixels out.

`predict` on arrays runs one compiled step per batch (`compile_step`): uint8
pixels go to the device, the reference's resize and pad run there when every
image of the call has one size (`ops/letterbox.py`, bit-exact with the host's
OpenCV), then the network, decoding, NMS and the rescale to original pixels.
The thresholds are inputs of that step, so a per-call `score_threshold` never
recompiles it; settings that fix shapes (`nms_pre`, `max_candidates`, a
larger `max_detections`) or the NMS kernel get a step of their own, kept.
Datasets run the same step batch by batch; callbacks and data parallelism go
through `keras.Model.predict`.
"""

import keras
import numpy as np
from keras import ops

from keras_rtmdet.distribute.replicas import local_replica_count
from keras_rtmdet.layers.batch_norm_folding import batch_norm_folding_enabled
from keras_rtmdet.models.compiled_step import compile_step
from keras_rtmdet.models.dense_postprocessing import POSTPROCESS_KEYS
from keras_rtmdet.models.dense_postprocessing import RUNTIME_SETTINGS
from keras_rtmdet.models.dense_postprocessing import class_mask
from keras_rtmdet.models.dense_postprocessing import first_detections
from keras_rtmdet.models.detections import detections_from_predictions
from keras_rtmdet.models.detections import rgb_uint8_images
from keras_rtmdet.models.jax_state_guard import model_state_kept
from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import CHANNEL_ORDERS
from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import as_image_list
from keras_rtmdet.ops.letterbox import letterbox
from keras_rtmdet.ops.no_gradients import no_gradients
from keras_rtmdet.utils.datasets import is_dataset
from keras_rtmdet.utils.image_io import read_image_inputs
from keras_rtmdet.utils.input_checks import DEFAULT_PIXEL_RANGE
from keras_rtmdet.utils.input_checks import check_pixel_range
from keras_rtmdet.utils.input_checks import check_positive_int
from keras_rtmdet.utils.input_checks import check_postprocess_settings

# Inputs of `predict_step` copied to its outputs, in `finalize_predictions`' argument order.
PASSED_THROUGH = ("scale_factors", "original_sizes")
LETTERBOX_PLACES = ("auto", "device", "host")
# `letterbox="auto"` compiles a device letterbox for this many raw image sizes, then letterboxes new
# sizes on the host: a camera stream keeps its one size on the device, a folder of photos of many
# sizes does not compile a step per photo.
MAX_DEVICE_LETTERBOX_SIZES = 4
DEFAULT_PREDICT_BATCH = 8


class DetectorInference:
    """Mixed into `DenseDetector`: `predict`, `detect` and the compiled steps behind them."""

    def predict(
        self,
        x,
        batch_size=None,
        verbose="auto",
        steps=None,
        callbacks=None,
        channel_order=None,
        pixel_range=DEFAULT_PIXEL_RANGE,
        letterbox="auto",
        classes=None,
        agnostic_nms=False,
        clip_boxes=False,
        **settings,
    ):
        """Detect objects in raw images of any size.

        Args:
            x: one image (H, W, 3), a batch (B, H, W, 3) or a list of images
                of different sizes; uint8, or int / float pixels spanning
                `pixel_range`. Or image files: a path, a directory (its
                images, sorted), a glob pattern, or a list mixing them with
                arrays; files are read as RGB. A `tf.data.Dataset` or
                `keras.utils.PyDataset` must instead yield preprocessed
                `{"images", "scale_factors"}` batches of [0, 255] pixels
                (optionally `original_sizes` (B, 2) (h, w), which variants
                with masks crop to), each run through the same compiled
                step. Calls with `callbacks` or `steps`, and data
                parallelism, run through `keras.Model.predict`.
            batch_size: images per forward pass, a positive integer (default 8).
            verbose: progress bar: `"auto"` shows one when the call takes
                more than one batch, 1 always, 0 never.
            channel_order: `"rgb"` or `"bgr"`, the order of `x`; defaults to
                the model's `input_channel_order` ("rgb").
            pixel_range: (low, high) the values of `x` span, default (0, 255).
                `(0, 1)` for float images scaled to [0, 1]: they are
                multiplied by 255; any other range is mapped linearly onto
                [0, 255]. Non-finite values, values outside the range and,
                with the default range, float images whose maximum is in
                (0, 1] (they look scaled to [0, 1]) raise a ValueError
                naming the image (`keras_rtmdet.utils.input_checks.check_pixels`).
            letterbox: where the resize and pad run: `"device"` (in the
                compiled step; images of one size per call), `"host"`
                (OpenCV) or `"auto"` (the device when the call's images share
                one size, for up to `MAX_DEVICE_LETTERBOX_SIZES` sizes). Both
                give the same pixels.
            classes: keep only these classes: indices into the model's
                classes and/or their names (the others are dropped before
                candidate selection, so they take no detection slot).
            agnostic_nms: NMS across classes (one box per object whatever
                its class) instead of per class (the reference's).
            clip_boxes: clip the xyxy boxes to each image ([0, w] × [0, h]),
                before the `min_bbox_size` filter and the NMS. Off by
                default, as in the reference: MMDetection clips the decoded
                boxes to the padded input, then divides them by the scale
                factor unclipped, so a box may reach past the image into
                what was padding. Rotated boxes are not clipped (a
                ValueError). A step input: it never recompiles. A dataset
                must then yield `original_sizes`.
            **settings: per-call post-processing overrides, for this call
                only: `score_threshold`, `iou_threshold`, `min_bbox_size` and
                `max_detections` (≤ the model's) never recompile, nor do
                `classes`, `agnostic_nms` and `clip_boxes`; `nms_pre`, `max_candidates`,
                `nms_method` or a larger `max_detections` compile a step of
                their own once.

        Returns: dict of numpy arrays, boxes in original-image pixels:
        `boxes` (B, K, 4) xyxy, `scores` (B, K), `labels` (B, K), padded with
        −1, and `num_detections` (B,), with K = `max_detections`; variants
        add their outputs (RTMDetIns: `masks`). `detect_images` gives them
        as one `Detections` per image.
        """
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size")
        pixel_range = check_pixel_range(pixel_range)
        if letterbox not in LETTERBOX_PLACES:
            raise ValueError(f"letterbox must be one of {LETTERBOX_PLACES}, got {letterbox!r}.")
        if is_dataset(x) and pixel_range != DEFAULT_PIXEL_RANGE:
            raise ValueError(
                f"pixel_range={pixel_range} applies to raw images; a dataset must yield preprocessed batches of "
                "[0, 255] pixels."
            )
        x, paths = read_image_inputs(x)
        if paths is not None:
            channel_order = _files_channel_order(channel_order)
        channel_order = channel_order or self.input_channel_order
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"Channel order must be one of {CHANNEL_ORDERS}, got {channel_order!r}.")
        if callbacks or steps is not None or local_replica_count() > 1:
            if classes is not None or agnostic_nms or clip_boxes:
                raise ValueError(
                    "classes, agnostic_nms and clip_boxes are inputs of predict's compiled step; calls with "
                    "callbacks, steps or data parallelism (keras.Model.predict) do not take them."
                )
            return self._keras_predict(x, batch_size, verbose, steps, callbacks, channel_order, pixel_range, settings)
        thresholds, static = self._call_settings(settings, classes, agnostic_nms, clip_boxes)
        if is_dataset(x):
            return self._predict_dataset(x, thresholds, static, verbose)
        images = as_image_list(x, pixel_range)
        sizes = {image.shape[:2] for image in images}
        if self._letterbox_on_device(letterbox, sizes):
            whole = isinstance(x, np.ndarray) and x.ndim == 4 and x.dtype == images[0].dtype
            batch = {"images": x if whole else np.stack(images)}
            original_sizes = np.tile(np.asarray(images[0].shape[:2], np.int64), (len(images), 1))
        else:
            uint8 = all(image.dtype == np.uint8 for image in images) and pixel_range == DEFAULT_PIXEL_RANGE
            prep = self.preprocessor(
                images,
                input_channel_order=channel_order,
                output_channel_order=self.input_channel_order,
                pixel_dtype="uint8" if uint8 else "float32",
            )
            original_sizes = prep["original_sizes"]
            # Always passed (a step's inputs keep one structure): `clip_boxes` reads them.
            batch = {
                "images": prep["images"],
                "scale_factors": prep["scale_factors"],
                "original_sizes": np.asarray(original_sizes, np.int32),
            }
        flip = channel_order != self.input_channel_order and "scale_factors" not in batch
        out = self._run_steps(batch, thresholds, static, flip, batch_size or DEFAULT_PREDICT_BATCH, verbose)
        return self.finalize_predictions(out, out.pop("scale_factors", batch.get("scale_factors")), original_sizes)

    def detect_images(self, inputs, batch_size=None, **predict_kwargs):
        """Detect objects in images; one `Detections` per image, with its image and file attached.

        >>> results = model.detect_images("photos/*.jpg", score_threshold=0.3)
        >>> results[0].save("annotated.jpg"); results[0].to_json()

        Args:
            inputs: as `predict`'s, datasets excepted: an image (H, W, 3), a
                batch (B, H, W, 3), a list of images, or image files (a path,
                a directory, a glob, or a list mixing them with arrays).
            batch_size: images per forward pass (`predict`'s).
            **predict_kwargs: `predict`'s other arguments (thresholds,
                `classes`, `agnostic_nms`, `clip_boxes`, `channel_order`,
                `pixel_range`, `verbose`, ...).

        Returns: a list of `Detections`, one per image in input order (a
        directory's or glob's files sorted): its valid detections (the
        variant's boxes, with masks for RTMDet-Ins), `image` (uint8 RGB, as
        the model read it) and `path` (None for an array).
        """
        if is_dataset(inputs):
            raise ValueError(
                "detect_images takes images or image files; a dataset yields preprocessed batches with no image to "
                "attach to its detections: run predict on it."
            )
        images, paths = read_image_inputs(inputs)
        if paths is None:
            images = list(images) if isinstance(images, (list, tuple)) or np.ndim(images) == 4 else [images]
            paths = [None] * len(images)
        else:
            # `predict` reads the arrays of a list holding files as RGB: so does it here, the files read once.
            predict_kwargs["channel_order"] = _files_channel_order(predict_kwargs.get("channel_order"))
        # A batch array goes whole: `predict` then skips stacking its images again.
        x = inputs if isinstance(inputs, np.ndarray) else images
        outputs = self.predict(x, batch_size=batch_size, **predict_kwargs)
        shown = rgb_uint8_images(
            images,
            predict_kwargs.get("channel_order") or self.input_channel_order,
            predict_kwargs.get("pixel_range", DEFAULT_PIXEL_RANGE),
        )
        return detections_from_predictions(outputs, shown, paths, self.class_names)

    def _call_settings(self, settings, classes=None, agnostic_nms=False, clip_boxes=False):
        """(thresholds with `class_mask`, `agnostic_nms` and, for xyxy boxes, `clip_boxes`; static overrides) of
        one call: checked, nothing set on the model."""
        settings = {key: value for key, value in settings.items() if value is not None}
        settings = check_postprocess_settings(settings, self.nms_methods)
        thresholds = {key: settings.get(key, getattr(self, key)) for key in RUNTIME_SETTINGS}
        thresholds["class_mask"] = class_mask(classes, self.head.num_classes, self.class_names)
        if not isinstance(agnostic_nms, (bool, np.bool_)):
            raise ValueError(f"agnostic_nms must be True or False, got {agnostic_nms!r}.")
        thresholds["agnostic_nms"] = int(agnostic_nms)
        if not isinstance(clip_boxes, (bool, np.bool_)):
            raise ValueError(f"clip_boxes must be True or False, got {clip_boxes!r}.")
        if self.variant.box_format == "xyxy":
            thresholds["clip_boxes"] = int(clip_boxes)
        elif clip_boxes:
            raise ValueError(
                f"clip_boxes=True clips xyxy boxes to the image; {self.variant.display_name} predicts rotated boxes "
                f"({self.variant.box_format}: cx, cy, w, h, angle), and a rotated box clipped to the image's "
                "rectangle is no longer a rotated box."
            )
        static = {key: value for key, value in settings.items() if key not in RUNTIME_SETTINGS}
        if thresholds["max_detections"] > self.max_detections:
            static["max_detections"] = thresholds["max_detections"]
        return thresholds, static

    def _letterbox_on_device(self, place, sizes):
        if place == "host" or len(sizes) > 1:
            if place == "device":
                raise ValueError(
                    f"letterbox='device' needs images of one size per call; got {len(sizes)} sizes. "
                    "Pass letterbox='host' or 'auto', or group the images by size."
                )
            return False
        if place == "device":
            return True
        seen = self.__dict__.setdefault("_device_letterbox_sizes", set())
        size = next(iter(sizes))
        if size not in seen and len(seen) >= MAX_DEVICE_LETTERBOX_SIZES:
            return False
        seen.add(size)
        return True

    def _predict_dataset(self, dataset, thresholds, static, verbose):
        """Each preprocessed batch of a `tf.data` dataset or `PyDataset` through the compiled step.

        A short last batch is padded to the first one's size (one compiled shape); `scale_factors` default to 1;
        `original_sizes`, when the batches hold them, go to the step too (`clip_boxes`).
        """
        if hasattr(dataset, "as_numpy_iterator"):
            elements, count = dataset.as_numpy_iterator(), None
        else:
            elements, count = (dataset[i] for i in range(len(dataset))), len(dataset)
        progress = keras.utils.Progbar(count) if verbose == 1 or (verbose == "auto" and (count or 2) > 1) else None
        chunks, passed, batch_size = [], {key: [] for key in PASSED_THROUGH}, None
        for element in elements:
            x = element[0] if isinstance(element, tuple) else element
            x = dict(x) if isinstance(x, dict) else {"images": x}
            images = np.asarray(x["images"])
            scale_factors = np.asarray(x.get("scale_factors", np.ones((len(images), 2))), np.float32)
            batch_size = batch_size or len(images)
            batch = {"images": images, "scale_factors": scale_factors}
            if x.get("original_sizes") is not None:
                batch["original_sizes"] = np.asarray(x["original_sizes"], np.int32)
            elif thresholds.get("clip_boxes"):
                raise ValueError(
                    "clip_boxes=True clips each box to its raw image: the dataset's batches must hold "
                    "original_sizes (B, 2) (h, w)."
                )
            chunks.append(self._run_steps(batch, thresholds, static, False, batch_size, 0, whole_batches=True))
            for key in PASSED_THROUGH:
                passed[key].append(scale_factors if key == "scale_factors" else x.get(key))
            if progress is not None:
                progress.add(1)
        if not chunks:
            raise ValueError("The dataset given to predict yielded no batch.")
        out = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
        passed = {key: None if any(v is None for v in values) else np.concatenate(values) for key, values in passed.items()}
        return self.finalize_predictions(out, *(passed[key] for key in PASSED_THROUGH))

    def _run_steps(self, batch, thresholds, static, flip, batch_size, verbose, whole_batches=False):
        """The compiled step over `batch`'s rows, `batch_size` at a time; numpy outputs cut to `max_detections`.

        A compiled step runs whole batches: a short last one is padded, to `batch_size` with `whole_batches`
        (a dataset's batches), else to the call's row count when that is smaller.
        """
        count = len(batch["images"])
        batch_size = batch_size if whole_batches else min(batch_size, count)
        with self.postprocess_settings(**static):
            step = self.inference_step(letterboxed="scale_factors" not in batch, flip=flip)
            values = step.thresholds(thresholds)
            starts = range(0, count, batch_size)
            progress = keras.utils.Progbar(count) if verbose == 1 or (verbose == "auto" and len(starts) > 1) else None
            chunks = []
            for start in starts:
                taken = min(batch_size, count - start)
                rows = {key: value[start : start + taken] for key, value in batch.items()}
                if step.compiled and taken < batch_size:
                    # A short last batch repeats the last image: one compiled shape per call.
                    rows = {key: np.concatenate([value, np.repeat(value[-1:], batch_size - taken, 0)]) for key, value in rows.items()}
                out = step(rows, values)
                chunks.append({key: ops.convert_to_numpy(value)[:taken] for key, value in out.items()})
                if progress is not None:
                    progress.add(taken)
        out = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
        return first_detections(out, thresholds["max_detections"])

    def inference_step(self, letterboxed, flip=False):
        """The compiled step `predict` runs, for the model's current static settings (cached per settings).

        `step(batch, thresholds)`: `batch` holds `images` (B, H, W, 3) uint8 or float pixels, raw when
        `letterboxed` (resized and padded in the step; `flip` reverses the channels), else preprocessed
        with their (B, 2) `scale_factors` and optionally (B, 2) `original_sizes` (h, w); `thresholds` are
        `step.thresholds(...)` of `RUNTIME_SETTINGS`, `class_mask`, `agnostic_nms` and `clip_boxes`.
        Returns `postprocess`' padded detections (+ `scale_factors` when letterboxed), backend tensors.
        """
        key = (
            letterboxed,
            flip,
            batch_norm_folding_enabled(),
            *(getattr(self, name) for name in POSTPROCESS_KEYS if name not in RUNTIME_SETTINGS),
            self.max_detections,
        )
        steps = self.__dict__.setdefault("_inference_steps", {})
        if key not in steps:
            steps[key] = compile_step(self, self._step_function(letterboxed, flip))
        return steps[key]

    def _step_function(self, letterboxed, flip):
        image_size = self.image_size

        def step(batch, thresholds):
            images = batch["images"]
            if letterboxed:
                # Every raw image of a device-letterboxed call has the batch's size (dynamic in a relaxed TF trace).
                shape = ops.shape(images)
                original_sizes = ops.reshape(ops.cast(ops.stack([shape[1], shape[2]]), "int32"), (1, 2))
                images, scale_factors = letterbox(images, image_size, flip_channels=flip)
            else:
                original_sizes = batch.get("original_sizes")
                scale_factors = ops.cast(batch["scale_factors"], "float32")
            outputs = self(ops.cast(images, "float32"), training=False)
            detections = self.postprocess(outputs, image_size, scale_factors, thresholds, original_sizes)
            if letterboxed:
                detections["scale_factors"] = scale_factors
            return detections

        return step

    def _keras_predict(self, x, batch_size, verbose, steps, callbacks, channel_order, pixel_range, settings):
        """`keras.Model.predict` (datasets, callbacks, data parallelism); settings compile in."""
        if is_dataset(x):
            inputs, batch_size = x, None
        else:
            prep = self.preprocessor(
                x,
                input_channel_order=channel_order,
                output_channel_order=self.input_channel_order,
                pixel_range=pixel_range,
            )
            inputs = {key: prep[key] for key in ("images", *PASSED_THROUGH)}
            batch_size = batch_size or DEFAULT_PREDICT_BATCH
        with self.postprocess_settings(**settings), model_state_kept(self):
            out = self._predict_split_evenly(inputs, batch_size, verbose=verbose, steps=steps, callbacks=callbacks)
            return self.finalize_predictions(out, *(out.get(k) for k in PASSED_THROUGH))

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

    def predict_preprocessed_batch(self, inputs):
        """Post-processed outputs (numpy) for one preprocessed batch `{"images", "scale_factors"}`.

        The compiled step of `predict`, with the model's current settings; under data parallelism
        (`keras_rtmdet.distribute`) `keras.Model.predict`, split evenly over the replicas.
        """
        if local_replica_count() == 1:
            thresholds, _ = self._call_settings({})
            batch = {"images": np.asarray(inputs["images"]), "scale_factors": np.asarray(inputs["scale_factors"])}
            return self._run_steps(batch, thresholds, {}, False, len(batch["images"]), verbose=0)
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


def _files_channel_order(channel_order):
    """The channel order of a call holding image files: they are read as RGB, and another order is refused."""
    if channel_order not in (None, "rgb"):
        raise ValueError(f"Image files are read as RGB; channel_order={channel_order!r} applies to arrays only.")
    return "rgb"
