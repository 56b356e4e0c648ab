"""Test-time preprocessing of RTMDet: keep-ratio resize, pad with 114.

This runs on the host, with OpenCV, because the official weights were
evaluated on cv2's fixed-point uint8 bilinear resize; a float resize differs
by up to one grey level and moves detections (see the fixtures' README).
"""

import numpy as np

from keras_rtmdet.utils.input_checks import DEFAULT_PIXEL_RANGE
from keras_rtmdet.utils.input_checks import check_pixels

CHANNEL_ORDERS = ("rgb", "bgr")


def as_image_list(images, pixel_range=DEFAULT_PIXEL_RANGE):
    """Validate raw images and return them as a list of (H, W, 3) arrays of pixels in [0, 255].

    Accepts one image (H, W, 3), a batch (B, H, W, 3) or a list of images of
    any sizes; uint8, or real-valued pixels spanning `pixel_range` (low,
    high), (0, 255) by default: `check_pixels` refuses non-finite values,
    values outside the range and, with the default range, float images that
    look scaled to [0, 1]. Another range is mapped linearly onto [0, 255].
    uint8 images in the default range are returned as they are (the
    reference's fixed-point uint8 resize), others as float32.
    """
    if isinstance(images, np.ndarray) or hasattr(images, "shape"):
        array = np.asarray(images)
        if array.ndim == 3:
            images = [array]
        elif array.ndim == 4:
            images = list(array)
        else:
            raise ValueError(
                "Images must be (H, W, 3), (batch, H, W, 3) or a list of (H, W, 3) "
                f"arrays; got an array of shape {array.shape}."
            )
    elif not isinstance(images, (list, tuple)):
        raise TypeError(f"Images must be an array or a list of arrays, got {type(images).__name__}.")
    if len(images) == 0:
        raise ValueError("Got an empty batch of images: pass at least one image.")
    out = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"Image {i} has shape {image.shape}; each image must be (H, W, 3) "
                "with 3 colour channels, channels last."
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"Image {i} is empty: shape {image.shape}.")
        out.append(image)
    low, high = check_pixels(out, pixel_range)
    return [_to_pixels(image, low, high) for image in out]


def _to_pixels(image, low, high):
    """One checked image as [0, 255] pixels: uint8 kept in the default range, else float32."""
    if (low, high) == DEFAULT_PIXEL_RANGE:
        return image if image.dtype == np.uint8 else image.astype(np.float32)
    return ((image.astype(np.float32) - low) * (255.0 / (high - low))).astype(np.float32)


class RTMDetPreprocessor:
    """Resize each image to fit `image_size` keeping its aspect ratio, then pad.

    As mmdet's test pipeline: scale `s = min(H_t / max(h, w), W_t / min(h, w))`
    (images are scaled up as well as down), new size `int(w·s + 0.5)` ×
    `int(h·s + 0.5)`, cv2 `INTER_LINEAR`, then bottom/right padding with
    `pad_value` up to `image_size`.

    Args:
        image_size: (height, width) of the padded network input.
        pad_value: pixel value of the padding (114, in every channel).
    """

    def __init__(self, image_size=(640, 640), pad_value=114):
        self.image_size = tuple(int(s) for s in image_size)
        self.pad_value = pad_value

    def resize_scale(self, height, width):
        target_h, target_w = self.image_size
        long_edge, short_edge = max(target_h, target_w), min(target_h, target_w)
        return min(long_edge / max(height, width), short_edge / min(height, width))

    def __call__(
        self,
        images,
        input_channel_order="rgb",
        output_channel_order="rgb",
        pixel_range=DEFAULT_PIXEL_RANGE,
        pixel_dtype="float32",
    ):
        """Preprocess raw images.

        Args:
            images: see `as_image_list`.
            input_channel_order: channel order of `images`.
            output_channel_order: channel order the model expects.
            pixel_range: (low, high) the pixel values of `images` span (see `as_image_list`).
            pixel_dtype: `"float32"`, or `"uint8"` for uint8 images (a quarter
                of the bytes to move to the device; the same pixels).

        Returns: dict with `images` (B, H_t, W_t, 3) `pixel_dtype` pixels,
        `scale_factors` (B, 2) float32 (w_scale, h_scale) and
        `original_sizes` (B, 2) int (h, w).
        """
        for order in (input_channel_order, output_channel_order):
            if order not in CHANNEL_ORDERS:
                raise ValueError(f"Channel order must be one of {CHANNEL_ORDERS}, got {order!r}.")
        import cv2

        images = as_image_list(images, pixel_range)
        if pixel_dtype == "uint8" and any(image.dtype != np.uint8 for image in images):
            raise ValueError("pixel_dtype='uint8' needs uint8 images in the default pixel range.")
        target_h, target_w = self.image_size
        batch = np.full((len(images), target_h, target_w, 3), self.pad_value, np.dtype(pixel_dtype))
        scale_factors = np.zeros((len(images), 2), np.float32)
        sizes = np.zeros((len(images), 2), np.int64)
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            scale = self.resize_scale(h, w)
            new_w, new_h = int(w * scale + 0.5), int(h * scale + 0.5)
            new_w, new_h = min(max(new_w, 1), target_w), min(max(new_h, 1), target_h)
            resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            if input_channel_order != output_channel_order:
                resized = resized[..., ::-1]
            batch[i, :new_h, :new_w] = resized
            scale_factors[i] = (new_w / w, new_h / h)
            sizes[i] = (h, w)
        return {"images": batch, "scale_factors": scale_factors, "original_sizes": sizes}

    def get_config(self):
        return {"image_size": list(self.image_size), "pad_value": self.pad_value}
