"""Host-side preprocessing of the CSPNeXt ImageNet classifiers (mmpretrain's test pipeline)."""

import numpy as np

from keras_rtmdet.models.rtmdet.rtmdet_preprocessor import as_image_list


class CSPNeXtClassifierPreprocessor:
    """`ResizeEdge(short side, PIL bicubic)` then `CenterCrop`, as the RSB-A1 configs test.

    mmpretrain's `imagenet_bs256_rsb_a12` test pipeline: the short side is
    resized to `resize_short` (236) with Pillow's bicubic filter (the long
    side to ``int(resize_short · long / short)``, truncated), then the centre
    `image_size` (224) square is cut with offsets ``round((size − crop) / 2)``.
    Normalisation happens inside the model.

    Args:
        image_size: side of the centre crop (224).
        resize_short: short side after the resize (236).
    """

    def __init__(self, image_size=224, resize_short=236):
        if resize_short < image_size:
            raise ValueError(f"resize_short ({resize_short}) must be at least image_size ({image_size}).")
        self.image_size = int(image_size)
        self.resize_short = int(resize_short)

    def resized_size(self, height, width):
        """(h, w) after the short-side resize."""
        if width < height:
            return int(self.resize_short * height / width), self.resize_short
        return self.resize_short, int(self.resize_short * width / height)

    def __call__(self, images, input_channel_order="rgb", output_channel_order="rgb"):
        """Raw images (see `as_image_list`) → (B, S, S, 3) float32 pixels in 0..255."""
        from PIL import Image

        images = as_image_list(images)
        crop = self.image_size
        batch = np.zeros((len(images), crop, crop, 3), np.float32)
        for i, image in enumerate(images):
            h, w = self.resized_size(*image.shape[:2])
            pixels = np.clip(np.round(image), 0, 255).astype(np.uint8) if image.dtype != np.uint8 else image
            resized = np.asarray(Image.fromarray(pixels).resize((w, h), Image.BICUBIC))
            top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
            out = resized[top : top + crop, left : left + crop]
            if input_channel_order != output_channel_order:
                out = out[..., ::-1]
            batch[i] = out
        return batch

    def get_config(self):
        return {"image_size": self.image_size, "resize_short": self.resize_short}
