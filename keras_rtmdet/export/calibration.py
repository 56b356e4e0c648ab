"""Calibration images for INT8 post-training quantization (`export(..., precision="int8")`).

A quantizer runs the exported graph on these images and records the range of
every tensor it quantizes, so they should look like what will be served: a
few hundred images of the deployment's own data. Sources:

* a folder, an image file, a glob or a list of paths (`read_image_inputs`);
* `"synthetic"`: the generated shapes `rtmdet demo` trains on (rotated shapes
  for RTMDet-R), for the demo model and for tests;
* `"tfds:NAME[:SPLIT]"`: a tensorflow-datasets dataset prepared locally;
* a `DetectionSource` (COCO JSON, tfds, DOTA, synthetic), uint8 arrays, or
  a `.npy` file of them.

Every image is letterboxed (keep-ratio resize, 114 padding, as the served
graph's own preprocessing would place it) to the exported input size.
"""

import glob
import os

import numpy as np

DEFAULT_CALIBRATION_IMAGES = 200


def _source_images(source, count, seed):
    order = np.random.default_rng(seed).permutation(len(source.image_ids))[:count]
    return [np.asarray(source.load_image(source.image_ids[i])) for i in sorted(order)]


def _named_source(name, count, seed, rotated):
    if name == "synthetic":
        if rotated:
            from keras_rtmdet.data.synthetic_rotated import SyntheticRotatedSource

            return SyntheticRotatedSource(count, image_size=((192, 256), (192, 256)), seed=seed)
        from keras_rtmdet.data.synthetic import SyntheticShapesSource

        return SyntheticShapesSource(count, image_size=((192, 256), (192, 256)), seed=seed)
    if name.startswith("tfds:"):
        from keras_rtmdet.data.tfds_source import TfdsSource

        dataset, _, split = name.removeprefix("tfds:").partition(":")
        return TfdsSource(dataset, split=split or "validation")
    return None


def fit_to_input(image, input_size):
    """`image` (H, W, 3) uint8 letterboxed into `input_size` (h, w): keep-ratio resize, 114 bottom/right."""
    import cv2

    height, width = input_size
    scale = min(height / image.shape[0], width / image.shape[1])
    resized_h, resized_w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    out = np.full((height, width, 3), 114, np.uint8)
    out[:resized_h, :resized_w] = cv2.resize(image, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
    return out


def calibration_images(source, input_size, count=DEFAULT_CALIBRATION_IMAGES, seed=0, rotated=False):
    """(N, H, W, 3) uint8 RGB calibration images at `input_size`, N = min(count, images in `source`).

    Args:
        source: see the module docstring.
        input_size: (H, W) of the exported graph's input.
        count: images to use (a random subset of a larger source, drawn with `seed`).
        rotated: `"synthetic"` draws rotated shapes (RTMDet-R).

    Raises: ValueError for an unknown source name, a source without images,
        or arrays that are not uint8 RGB images.
    """
    from keras_rtmdet.data.detection_source import DetectionSource
    from keras_rtmdet.utils.image_io import read_image_inputs

    if count < 1:
        raise ValueError(f"The calibration needs at least one image; got count={count}.")
    if isinstance(source, str) and source.endswith(".npy"):
        source = np.load(source)
    if isinstance(source, str):
        named = _named_source(source, count, seed, rotated)
        if named is None and not os.path.exists(source) and not glob.has_magic(source):
            raise ValueError(
                f"Unknown calibration source {source!r}: give an image folder, file or glob, 'synthetic', "
                "'tfds:NAME[:SPLIT]', a DetectionSource or uint8 images."
            )
        source = named if named is not None else source
    if isinstance(source, DetectionSource):
        images = _source_images(source, count, seed)
    elif isinstance(source, np.ndarray) and source.ndim == 4:
        images = list(source[:count])
    else:
        images, _ = read_image_inputs(source)
        if len(images) > count:
            order = np.random.default_rng(seed).permutation(len(images))[:count]
            images = [images[i] for i in sorted(order)]
    if not images:
        raise ValueError("The calibration source holds no image.")
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"Calibration image {i} must be uint8 (H, W, 3) RGB; got {image.dtype} of shape {image.shape}."
            )
    return np.stack([fit_to_input(np.asarray(image), input_size) for image in images])


def load_calibration(calibration_npy_path, input_size=None):
    """The calibration images (N, H, W, 3) uint8 of `export`'s `.npy`, checked (against `input_size` (H, W) if given)."""
    if calibration_npy_path is None:
        raise ValueError("INT8 export needs calibration images (calibration=).")
    images = np.load(calibration_npy_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(
            f"Calibration images must be a non-empty uint8 (N, H, W, 3) array; got {images.dtype} {images.shape}."
        )
    if input_size is not None and tuple(images.shape[1:3]) != tuple(input_size):
        raise ValueError(f"Calibration images are {images.shape[1:3]}; the graph serves {tuple(input_size)}.")
    return images
