"""The deterministic evaluation transform: shortest side resized, center crop, normalised."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from .colour import MEAN, STD, apply_colour
from .geometry import resize_size, short_side_crop_box


class CenterCropTransform:
    """Deterministic evaluation: shortest side to ``resize_size(S)`` + center ``S`` crop.

    Computed as crop-then-resize in uint8 (the square is cut from the original frames and only
    that region is resized, antialiased, skipped when it already has side ``S``), then one
    normalisation pass.
    """

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        height, width = video.shape[-2:]
        size = self.image_size
        side = short_side_crop_box(height, width, size, resize_size(size))
        top, left = (height - side) // 2, (width - side) // 2
        clip = video[:, :, top : top + side, left : left + side]
        if side != size:
            clip = F.resize(clip, [size, size], antialias=True)
        scale = [[(i == j) / (255 * s) for j in range(3)] for i, s in enumerate(STD)]
        return apply_colour(clip.float(), scale, [-m / s for m, s in zip(MEAN, STD)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size})"
