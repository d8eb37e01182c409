"""Augmentation presets: the one place a preset is defined, and the builders of the per-clip
(:func:`build_transform`) and loader (:func:`build_loader_transform`) transforms.

- ``rotnet`` / ``prp`` / ``rspnet``: resize the shortest side to
  ``resize_size(image_size)`` (128 for 112) + random ``image_size`` crop, horizontal flip, small
  random rotation (+-10 deg; RotNet's 90 deg rotations are its pretext target and are applied by
  the task), colour jitter (p=0.8). RSPNet's temporal augmentation is its clip sampling.
- ``tdl``: the study does not state TDL's, so its original's: +-10 deg rotation, the same
  resize + random crop, colour jitter on every clip with brightness 0.5, contrast 0.5,
  saturation 0.25, hue 0.5 (a full turn either way), no flip.
- ``vcop``: the same steps, but the flip, rotation and colour jitter are drawn once per tuple
  and shared by its clips (the crop stays per clip, as in the original), so the clips of a tuple
  stay continuous with each other and only their order is to be found.
- ``cvrl``: as the CVRL reference (tensorflow/models ``official/projects/video_ssl``), per
  view: random resized crop (area 0.3-1, aspect 0.5-2), flip, colour jitter (p=0.8) of strength
  0.8 (brightness, contrast, saturation factors in [0.2, 1.8], hue +-0.2 of a turn), grayscale
  (p=0.2); asymmetric between the two clips of a pair: gaussian blur always on the first, with
  p=0.1 on the second, solarize (p=0.2) on the second only; plus the study's gamma (p=0.5). A
  lone clip is augmented as a first view.
- ``eval``: resize the shortest side + center crop, no randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .center_crop import CenterCropTransform
from .fused import FusedClipTransform

_ROTATION_DEGREES = 10.0


def _basic(image_size: int) -> FusedClipTransform:
    """Resize + random crop, flip, +-10 deg rotation, colour jitter (p=0.8)."""
    return FusedClipTransform(image_size, crop="short_side", rotation_degrees=_ROTATION_DEGREES)


def _vcop(image_size: int) -> FusedClipTransform:
    """:func:`_basic` with the flip, rotation and jitter shared by the clips of a tuple."""
    return FusedClipTransform(
        image_size, crop="short_side", rotation_degrees=_ROTATION_DEGREES, per_sample_params=True
    )


def _tdl(image_size: int) -> FusedClipTransform:
    """TDL's original augmentation (see the module docstring)."""
    return FusedClipTransform(
        image_size,
        crop="short_side",
        rotation_degrees=_ROTATION_DEGREES,
        flip_p=0.0,
        jitter_p=1.0,
        jitter_strength=(0.5, 0.5, 0.25),
        hue=0.5,
    )


def _cvrl(image_size: int) -> FusedClipTransform:
    """CVRL's asymmetric pair (see the module docstring)."""
    return FusedClipTransform(
        image_size,
        crop="random_resized",
        crop_scale=(0.3, 1.0),
        crop_ratio=(0.5, 2.0),
        jitter_strength=0.8,
        hue=0.2,
        grayscale_p=0.2,
        gamma_p=0.5,
        blur_p=1.0,
        solarize_p=0.0,
        views=({}, {"blur_p": 0.1, "solarize_p": 0.2}),
    )


#: Preset name -> builder ``image_size -> clip transform``; the one place presets are defined.
TRANSFORM_PRESETS: dict[str, Callable[[int], Callable[[torch.Tensor], torch.Tensor]]] = {
    "rotnet": _basic,
    "vcop": _vcop,
    "prp": _basic,
    "rspnet": _basic,
    "tdl": _tdl,
    "cvrl": _cvrl,
    "eval": CenterCropTransform,
}


class VideoTransform:
    """A built transform: uint8 ``(T, 3, H, W)`` -> normalised float32 ``(T, 3, S, S)``.

    Picklable (DataLoader workers); ``augment`` is the underlying clip transform.
    """

    def __init__(
        self, preset: str, image_size: int, train: bool, augment: Callable[[torch.Tensor], torch.Tensor]
    ):
        self.preset, self.image_size, self.train = preset, image_size, train
        self.augment = augment

    @staticmethod
    def _check(video: torch.Tensor) -> torch.Tensor:
        if (
            not isinstance(video, torch.Tensor)
            or video.dtype != torch.uint8
            or video.ndim != 4
            or video.shape[1] != 3
        ):
            got = (
                f"{video.dtype} tensor of shape {tuple(video.shape)}"
                if isinstance(video, torch.Tensor)
                else type(video).__name__
            )
            raise ValueError(f"expected a uint8 RGB clip of shape (T, 3, H, W), got {got}")
        return video.as_subclass(torch.Tensor)

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        return self.augment(self._check(video))

    def transform_clips(self, videos: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The clips of one sample (a multi-clip task's tuple): one call each, except where the
        preset shares the flip, rotation and colour between them (``per_sample_params``)."""
        if isinstance(self.augment, FusedClipTransform) and self.augment.per_sample:
            return self.augment.transform_clips([self._check(video) for video in videos])
        return [self(video) for video in videos]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(preset={self.preset!r}, image_size={self.image_size}, train={self.train})"
        )


def _check_preset(preset: str, image_size: int) -> None:
    if preset not in TRANSFORM_PRESETS:
        raise ValueError(
            f"unknown transform preset {preset!r}; valid presets: {', '.join(TRANSFORM_PRESETS)}"
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")


def build_transform(preset: str, image_size: int = 112, train: bool = True) -> VideoTransform:
    """The transform of ``preset`` (a key of :data:`TRANSFORM_PRESETS`) for ``image_size`` crops.

    ``train=False`` gives the deterministic ``eval`` transform (resize + center crop) whatever
    the preset, so a task's config can name its preset once for both modes.
    """
    _check_preset(preset, image_size)
    name = preset if train else "eval"
    return VideoTransform(name, image_size, train and preset != "eval", TRANSFORM_PRESETS[name](image_size))


def fused_spec(preset: str, image_size: int) -> FusedClipTransform:
    """The :class:`FusedClipTransform` of a training preset (validated), for its split form."""
    _check_preset(preset, image_size)
    spec = TRANSFORM_PRESETS[preset](image_size)
    if not isinstance(spec, FusedClipTransform):
        raise ValueError(  # noqa: TRY004  (a bad preset name, not a bad type)
            f"preset {preset!r} has no random augmentation to split between loader and device; "
            f"use build_transform({preset!r}, ...)"
        )
    return spec


def build_loader_transform(preset: str, image_size: int = 112) -> VideoTransform:
    """The loader part of a training preset: uint8 ``(T, 3, H, W)`` -> uint8 ``(T, 3, L, L)``.

    The random crop (same distribution as :func:`build_transform`), cut with the context a
    rotation reads and resized in uint8 to ``L = image_size + 2 * margin`` (``image_size`` when
    the preset has no rotation); :func:`hf_vssl.data.batch_augment.build_batch_augment` does
    the rest on the collated batch. Randomness: the global torch RNG, like :func:`build_transform`.
    """
    spec = fused_spec(preset, image_size)
    transform = VideoTransform(preset, image_size, True, spec.loader_crop)
    transform.output_size = spec.loader_size
    return transform


def transform_sample_clips(
    transform: Callable[[torch.Tensor], torch.Tensor], clips: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Apply ``transform`` to the clips of one sample: :meth:`VideoTransform.transform_clips` for a
    built transform (so a preset can share parameters within a sample), else clip by clip."""
    if isinstance(transform, VideoTransform):
        return transform.transform_clips(clips)
    return [transform(clip) for clip in clips]
