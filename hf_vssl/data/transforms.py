"""Clip-consistent augmentation for the pretext tasks and a deterministic evaluation transform.

A clip is wrapped as ``torchvision.tv_tensors.Video`` so that every ``torchvision.transforms.v2``
step draws its random parameters once per call and applies them to all frames of the clip: one
crop, one flip, one rotation angle, one colour jitter per clip (temporally consistent), fresh
parameters for the next call (CVRL's two clips of a video are two calls, hence independent).

Input: uint8 ``(T, C=3, H, W)``. Output: float32 ``(T, 3, image_size, image_size)`` normalised
with :data:`VIDEO_MEAN` / :data:`VIDEO_STD`. Geometry runs first and in uint8, cropping *before*
resizing (one ``resize`` call for the whole clip on the cropped region only); the clip becomes
float only at ``image_size``, where the colour steps are cheapest.

Randomness comes from the **global torch RNG** (torchvision's v2 transforms draw from it):
seed with ``torch.manual_seed`` for reproducibility; DataLoader workers are seeded per worker
by PyTorch, so workers do not repeat each other's augmentations.

Presets (:data:`TRANSFORM_PRESETS`, REFERENCE.md section 2):

- ``rotnet`` / ``vcop`` / ``prp`` / ``rspnet`` / ``tdl``: resize the shortest side to
  ``resize_size(image_size)`` (128 for 112) + random ``image_size`` crop (done as one crop-then-
  resize), horizontal flip, small random rotation (+-10 deg; RotNet's 90 deg rotations are its
  pretext target and are applied by the task), colour jitter (p=0.8). RSPNet's temporal
  augmentation is its clip sampling; the study does not specify TDL's, so it gets the same set.
- ``cvrl``: random resized crop (area 0.3-1, aspect 0.5-2), flip, colour jitter (p=0.8),
  grayscale (p=0.2), gamma (p=0.5), gaussian blur (p=0.5), solarize (p=0.2).
- ``eval``: resize the shortest side + center crop, no randomness (also what ``train=False``
  gives for every preset).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD

#: Training and evaluation resize the shortest side to ``image_size * RESIZE_RATIO`` (128 for 112).
RESIZE_RATIO = 128 / 112

# Colour jitter as in MoCo v2 / BYOL-style pipelines: (0.4, 0.4, 0.4, hue 0.1) with p=0.8.
_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4}
_HUE = 0.1
_JITTER_P = 0.8
_ROTATION_DEGREES = 10.0

# RGB <-> YIQ (NTSC). A hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def resize_size(image_size: int) -> int:
    """Shortest-side length that training and evaluation crops of ``image_size`` are taken from."""
    return round(image_size * RESIZE_RATIO)


def _plain(video: torch.Tensor) -> torch.Tensor:
    return video.as_subclass(torch.Tensor)


class ShortSideResizedCrop(v2.Transform):
    """Resize the shortest side to ``resize_to``, then crop ``size x size`` (random or central).

    Computed as crop-then-resize: the square is cut from the original frames (side
    ``size * short / resize_to``) and only that region is resized, in one call for the clip.
    """

    def __init__(self, size: int, resize_to: int, center: bool = False):
        super().__init__()
        if resize_to < size:
            raise ValueError(f"resize_to ({resize_to}) must be >= size ({size})")
        self.size, self.resize_to, self.center = size, resize_to, center

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = flat_inputs[0].shape[-2:]
        side = min(round(self.size * min(height, width) / self.resize_to), height, width)
        if self.center:
            top, left = (height - side) // 2, (width - side) // 2
        else:
            top = int(torch.randint(0, height - side + 1, ()))
            left = int(torch.randint(0, width - side + 1, ()))
        return {"top": top, "left": left, "height": side, "width": side}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, **params, size=[self.size, self.size], antialias=True)


class RandomHue(v2.Transform):
    """Shift the hue by a factor in ``[-hue, hue]`` of a full turn, as a rotation in YIQ space.

    A linear approximation of torchvision's HSV hue shift that costs one 3x3 matmul per pixel
    (about 20x faster on a 16-frame clip). Expects float RGB in [0, 1].
    """

    def __init__(self, hue: float):
        super().__init__()
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        self.hue = hue

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        angle = 2 * math.pi * float(torch.empty(()).uniform_(-self.hue, self.hue))
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = torch.tensor([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
        return {"matrix": _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = _plain(inpt)
        out = torch.matmul(params["matrix"].to(x.dtype), x.flatten(-2)).view_as(x).clamp_(0.0, 1.0)
        return tv_tensors.wrap(out, like=inpt)


class RandomVideoGrayscale(v2.Transform):
    """Grayscale with probability ``p``, keeping 3 channels (``v2.RandomGrayscale`` skips Videos)."""

    def __init__(self, p: float = 0.2):
        super().__init__()
        self.p = p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"apply": bool(torch.rand(()) < self.p)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"]:
            return inpt
        # rgb_to_grayscale expands one channel to 3 (a view); later steps work in place.
        gray = F.rgb_to_grayscale(_plain(inpt), num_output_channels=3).contiguous()
        return tv_tensors.wrap(gray, like=inpt)


class RandomGamma(v2.Transform):
    """Gamma correction ``x ** gamma`` with gamma log-uniform in ``gamma_range``."""

    def __init__(self, gamma_range: tuple[float, float] = (2 / 3, 3 / 2)):
        super().__init__()
        self.log_range = (math.log(gamma_range[0]), math.log(gamma_range[1]))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"gamma": math.exp(float(torch.empty(()).uniform_(*self.log_range)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.adjust_gamma, inpt, gamma=params["gamma"])


class SeparableGaussianBlur(v2.Transform):
    """Gaussian blur (reflect borders) with sigma uniform in ``sigma``; float input.

    Blurs rows then columns as two matmuls with banded ``(W, W)`` / ``(H, H)`` matrices that
    fold the reflect padding in: several times faster on CPU than torchvision's ``gaussian_blur``
    (a full 2-D depthwise convolution) at kernel 11.
    """

    def __init__(self, kernel_size: int, sigma: tuple[float, float] = (0.1, 2.0)):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        self.kernel_size, self.sigma = kernel_size, sigma

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"sigma": float(torch.empty(()).uniform_(*self.sigma))}

    def _matrix(self, length: int, sigma: float) -> torch.Tensor:
        """``(length, length)`` M with ``(x @ M)[j] = sum_k w[k] x[reflect(j + k)]``."""
        half = min(self.kernel_size // 2, length - 1)  # reflect padding needs half < length
        offsets = torch.arange(-half, half + 1)
        taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
        taps /= taps.sum()
        source = torch.arange(length)[None, :] + offsets[:, None]  # (taps, length)
        source = source.abs()
        source = torch.where(source >= length, 2 * (length - 1) - source, source)
        matrix = torch.zeros(length, length)
        matrix.index_put_(
            (source.flatten(), torch.arange(length).repeat(len(offsets))),
            taps.repeat_interleave(length),
            accumulate=True,
        )
        return matrix

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = _plain(inpt)
        height, width = x.shape[-2:]
        rows = self._matrix(width, params["sigma"]).to(x.dtype)
        cols = self._matrix(height, params["sigma"]).to(x.dtype)
        out = torch.matmul(cols.T, torch.matmul(x, rows))
        return tv_tensors.wrap(out, like=inpt)


def _to_float() -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True)]


def _normalize() -> list[v2.Transform]:
    # In place: the tensor is always the fresh float copy made by ToDtype.
    return [v2.Normalize(mean=list(VIDEO_MEAN), std=list(VIDEO_STD), inplace=True)]


def _color_jitter() -> v2.Transform:
    return v2.RandomApply([v2.ColorJitter(**_JITTER), RandomHue(_HUE)], p=_JITTER_P)


def _basic_steps(image_size: int) -> list[v2.Transform]:
    """Resize + random crop, flip (uint8), then rotation and colour jitter (float)."""
    return [
        ShortSideResizedCrop(image_size, resize_size(image_size)),
        v2.RandomHorizontalFlip(),
        *_to_float(),
        v2.RandomRotation(_ROTATION_DEGREES, interpolation=v2.InterpolationMode.BILINEAR),
        _color_jitter(),
        *_normalize(),
    ]


def _cvrl_steps(image_size: int) -> list[v2.Transform]:
    blur_kernel = max(3, image_size // 10) | 1  # ~10% of the image, odd
    return [
        v2.RandomResizedCrop(image_size, scale=(0.3, 1.0), ratio=(0.5, 2.0), antialias=True),
        v2.RandomHorizontalFlip(),
        *_to_float(),
        _color_jitter(),
        RandomVideoGrayscale(p=0.2),
        v2.RandomApply([RandomGamma()], p=0.5),
        v2.RandomApply([SeparableGaussianBlur(blur_kernel)], p=0.5),
        v2.RandomSolarize(threshold=0.5, p=0.2),
        *_normalize(),
    ]


def _eval_steps(image_size: int) -> list[v2.Transform]:
    return [
        ShortSideResizedCrop(image_size, resize_size(image_size), center=True),
        *_to_float(),
        *_normalize(),
    ]


#: Preset name -> builder ``image_size -> list of v2 steps``; the one place presets are defined.
TRANSFORM_PRESETS: dict[str, Callable[[int], list[v2.Transform]]] = {
    "rotnet": _basic_steps,
    "vcop": _basic_steps,
    "prp": _basic_steps,
    "rspnet": _basic_steps,
    "tdl": _basic_steps,
    "cvrl": _cvrl_steps,
    "eval": _eval_steps,
}


class VideoTransform:
    """A built transform: uint8 ``(T, 3, H, W)`` -> normalised float32 ``(T, 3, S, S)``.

    Picklable (DataLoader workers); ``steps`` is the underlying ``v2.Compose``.
    """

    def __init__(self, preset: str, image_size: int, train: bool, steps: list[v2.Transform]):
        self.preset, self.image_size, self.train = preset, image_size, train
        self.steps = v2.Compose(steps)

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
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
        return _plain(self.steps(tv_tensors.Video(video)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(preset={self.preset!r}, image_size={self.image_size}, train={self.train})"
        )


def build_transform(preset: str, image_size: int = 112, train: bool = True) -> VideoTransform:
    """The transform of ``preset`` (a key of :data:`TRANSFORM_PRESETS`) for ``image_size`` crops.

    ``train=False`` gives the deterministic ``eval`` transform (resize + center crop) whatever
    the preset, so a task's config can name its preset once for both modes.
    """
    if preset not in TRANSFORM_PRESETS:
        raise ValueError(
            f"unknown transform preset {preset!r}; valid presets: {', '.join(TRANSFORM_PRESETS)}"
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    name = preset if train else "eval"
    return VideoTransform(name, image_size, train and preset != "eval", TRANSFORM_PRESETS[name](image_size))
