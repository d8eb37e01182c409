"""Clip-consistent augmentation for the pretext tasks and a deterministic evaluation transform.

Every training transform draws its random parameters once per call and applies them to all
frames of the clip: one crop, one flip, one rotation angle, one colour jitter per clip
(temporally consistent), fresh parameters for the next call (CVRL's two clips of a video are two
calls, hence independent).

Input: uint8 ``(T, C=3, H, W)``. Output: float32 ``(T, 3, image_size, image_size)`` normalised
with ``VIDEO_MEAN`` / ``VIDEO_STD`` (:mod:`hf_vssl.models.processing_vssl`).

One job per module:

- :mod:`.params`: the per-clip random parameters (:class:`ClipParams`) and their uniforms;
- :mod:`.colour`: jitter, hue, grayscale and normalisation as affine RGB maps, solarize;
- :mod:`.blur`: CVRL's gaussian blur;
- :mod:`.geometry`: crop, flip and rotation as one affine map, resampled in one pass;
- :mod:`.fused`: :class:`FusedClipTransform`, the training augmentation built from those;
- :mod:`.center_crop`: the evaluation transform;
- :mod:`.presets`: :data:`TRANSFORM_PRESETS` and the builders.

The evaluation transform (``eval``, and ``train=False`` for any preset) is a center crop in uint8
plus an antialiased ``resize`` (skipped when the crop already has the output size) and the
normalisation.
"""

from .blur import gaussian_blur
from .colour import apply_colour, grayscale_matrix, hue_matrix, jitter_affine, solarize
from .fused import FusedClipTransform
from .geometry import crop_affine, crop_thetas, resample, resample_batch, resize_size
from .params import NUM_CLIP_UNIFORMS, ClipParams
from .presets import (
    TRANSFORM_PRESETS,
    VideoTransform,
    build_loader_transform,
    build_transform,
    fused_spec,
    transform_sample_clips,
)

__all__ = [
    "NUM_CLIP_UNIFORMS",
    "TRANSFORM_PRESETS",
    "ClipParams",
    "FusedClipTransform",
    "VideoTransform",
    "apply_colour",
    "build_loader_transform",
    "build_transform",
    "crop_affine",
    "crop_thetas",
    "fused_spec",
    "gaussian_blur",
    "grayscale_matrix",
    "hue_matrix",
    "jitter_affine",
    "resample",
    "resample_batch",
    "resize_size",
    "solarize",
    "transform_sample_clips",
]
