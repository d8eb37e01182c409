"""Colour maths: the jitter, hue, grayscale and normalisation as affine RGB maps, and solarize.

Brightness, contrast, saturation (in a random order, like ``ColorJitter``), the YIQ hue rotation
and CVRL's grayscale are all affine in RGB; they fold with ``/255`` and the normalisation into
one 3x3 matrix + offset per clip (:func:`colour_affine`), applied with one batched matmul
(:func:`apply_colour`). Contrast's pivot is the clip's mean grey (one value per clip, where
torchvision uses one per frame), computed once. **Intermediate clamps are dropped**: the
sequential ops clamp to [0, 1] after each step, the fused map clamps once, at the end
(:func:`clamp_normalised`, only when the jitter fired); colours that a step pushed out of range
and a later step brings back differ slightly from the sequential pipeline, the standard
trade-off of fused jitter.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD

from .params import ClipParams, Rows, one_clip_params

# Colour jitter as in MoCo v2 / BYOL-style pipelines: (0.4, 0.4, 0.4, hue 0.1) with p=0.8.
JITTER_STRENGTH = 0.4
JITTER = {"brightness": JITTER_STRENGTH, "contrast": JITTER_STRENGTH, "saturation": JITTER_STRENGTH}
HUE = 0.1
JITTER_P = 0.8

#: torchvision's ``rgb_to_grayscale`` weights (used by its contrast and saturation too).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

# RGB <-> YIQ (NTSC). A hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_YIQ_TO_RGB = tuple(map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)).tolist()))

# Normalisation as floats, and the normalised image of [0, 1] (the clamp range).
MEAN, STD = tuple(map(float, VIDEO_MEAN)), tuple(map(float, VIDEO_STD))
_LOW = tuple(-m / s for m, s in zip(MEAN, STD))
_HIGH = tuple((1 - m) / s for m, s in zip(MEAN, STD))


@functools.lru_cache(maxsize=16)
def colour_constants(device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Small constant tensors, made once per device and dtype (no host-to-device copy per call)."""
    f64 = torch.float64
    y2r, r2y = torch.tensor(_YIQ_TO_RGB, dtype=f64), torch.tensor(_RGB_TO_YIQ, dtype=f64)
    # Hue rotation by angle a: YIQ->RGB @ [[1, 0, 0], [0, cos, -sin], [0, sin, cos]] @ RGB->YIQ
    # = P0 + cos(a) P1 + sin(a) P2.
    e0 = torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=f64))
    e12 = torch.diag(torch.tensor([0.0, 1.0, 1.0], dtype=f64))
    rot = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=f64)
    gray = torch.tensor(GRAY_WEIGHTS, dtype=f64)
    values = {
        "eye": torch.eye(3, dtype=f64),
        "gray": gray,
        "gray_rows": gray.expand(3, 3).clone(),
        "hue0": y2r @ e0 @ r2y,
        "hue_cos": y2r @ e12 @ r2y,
        "hue_sin": y2r @ rot @ r2y,
        "mean": torch.tensor(MEAN, dtype=f64),
        "std": torch.tensor(STD, dtype=f64),
        "low": torch.tensor(_LOW, dtype=f64),
        "high": torch.tensor(_HIGH, dtype=f64),
    }
    return {name: value.to(device=device, dtype=dtype) for name, value in values.items()}


def hue_matrices(angle: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` RGB matrices rotating the YIQ chroma plane by ``angle`` ``(B,)`` radians."""
    k = colour_constants(angle.device, angle.dtype)
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    return k["hue0"] + cos * k["hue_cos"] + sin * k["hue_sin"]


def hue_matrix(angle: float) -> torch.Tensor:
    """3x3 RGB matrix (float64) rotating the YIQ chroma plane by ``angle`` radians.

    A linear approximation of torchvision's HSV hue shift: keeps greys and luma.
    """
    return hue_matrices(torch.tensor([float(angle)], dtype=torch.float64))[0]


def grayscale_matrix() -> torch.Tensor:
    """3x3 RGB matrix (float64) writing the grey level (torchvision's weights) into every channel."""
    return colour_constants(torch.device("cpu"), torch.float64)["gray_rows"].clone()


def saturation_matrices(factor: torch.Tensor) -> torch.Tensor:
    """``factor * x + (1 - factor) * grey(x)`` as ``(B, 3, 3)`` RGB matrices, ``factor`` ``(B,)``."""
    k = colour_constants(factor.device, factor.dtype)
    factor = factor.view(-1, 1, 1)
    return factor * k["eye"] + (1 - factor) * k["gray_rows"]


def colour_affine(mean_rgb: torch.Tensor, params: ClipParams) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour maps ``x -> M @ x + b`` on values in [0, 1] of a batch of clips: jitter, then grayscale.

    ``mean_rgb`` ``(B, 3)``: each clip's mean colour in [0, 1] (contrast's pivot). Returns
    ``M`` ``(B, 3, 3)`` and ``b`` ``(B, 3)`` in the dtype of ``params``; identity where
    neither the jitter nor the grayscale fired.

    Brightness (``f x``), contrast (``f x + (1 - f) m``, ``m`` the mean grey of the clip as
    adjusted so far) and saturation are affine maps whose linear parts ``a I + c 1 g^T`` commute,
    and a step scales the grey of the mean (and the contrast offset ``1``) by ``b``,
    ``s + (1 - s) sum(g)`` or ``c`` alike: without the clamps between steps their composition
    is the same in every order, ``M = b c S(s)``, ``b = (1 - c) b (s + (1 - s) sum(g)) g.m 1``.
    ``ColorJitter``'s random order (still drawn, for the draw layout) changes nothing here.
    Then the hue rotation (which keeps greys), then the optional grayscale.
    """
    k = colour_constants(params.factors.device, params.factors.dtype)
    brightness, contrast, saturation = params.factors.unbind(-1)
    matrix = (brightness * contrast).view(-1, 1, 1) * saturation_matrices(saturation)
    grey_scale = saturation + (1 - saturation) * k["gray"].sum()
    shift = (1 - contrast) * brightness * grey_scale * (mean_rgb.to(k["gray"].dtype) @ k["gray"])
    offset = shift.view(-1, 1).expand(-1, 3)
    hue = hue_matrices(params.hue)
    matrix, offset = hue @ matrix, (hue @ offset.unsqueeze(-1)).squeeze(-1)
    on = params.jitter.view(-1, 1, 1)
    matrix = torch.where(on, matrix, k["eye"])
    offset = torch.where(on.view(-1, 1), offset, 0.0)
    gray = params.gray.view(-1, 1, 1)
    matrix = torch.where(gray, k["gray_rows"] @ matrix, matrix)
    offset = torch.where(gray.view(-1, 1), offset @ k["gray_rows"].T, offset)
    return matrix, offset


def jitter_affine(
    mean_rgb: Sequence[float] | torch.Tensor,
    brightness: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    hue_angle: float = 0.0,
    order: Sequence[str] = ("brightness", "contrast", "saturation"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour jitter as one affine RGB map ``x -> M @ x + b`` (float64 ``M``, ``b``; values in [0, 1]).

    ``adjust_brightness`` (``f x``), ``adjust_contrast`` (``f x + (1 - f) m`` with ``m`` the mean
    grey of the clip as adjusted so far, tracked from the clip's mean colour ``mean_rgb``) and
    ``adjust_saturation`` in ``order``, then the hue rotation (``hue_angle`` radians), *without*
    the clamps between steps. Without those clamps the three steps commute (see
    :func:`colour_affine`), so ``order`` is only checked.
    """
    unknown = set(order) - set(JITTER)
    if unknown:
        raise ValueError(f"unknown jitter step {min(unknown)!r}")
    f64 = torch.float64
    params = one_clip_params(
        factors=torch.tensor([[brightness, contrast, saturation]], dtype=f64),
        hue=torch.tensor([float(hue_angle)], dtype=f64),
        jitter=True,
    )
    mean = torch.as_tensor(mean_rgb, dtype=f64).view(1, 3)
    matrix, offset = colour_affine(mean, params)
    return matrix[0], offset[0]


def apply_colour(
    clip: torch.Tensor, matrix: Rows | torch.Tensor, offset: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """``matrix @ pixel + offset`` for every pixel of a float ``(T, 3, H, W)`` clip: one batched
    matmul (one pass over the clip, a new tensor).

    Batched: ``clip`` ``(B, T, 3, H, W)`` with one ``matrix`` ``(B, 3, 3)`` and ``offset``
    ``(B, 3)`` per clip.
    """
    c, h, w = clip.shape[-3:]
    matrix = torch.as_tensor(matrix, dtype=clip.dtype, device=clip.device)
    offset = torch.as_tensor(offset, dtype=clip.dtype, device=clip.device)
    if clip.ndim == 4:
        t = clip.shape[0]
        matrix, offset = matrix.expand(t, c, c), offset.view(1, c, 1).expand(t, c, 1)
        return torch.baddbmm(offset, matrix, clip.reshape(t, c, h * w)).view(t, c, h, w)
    b, t = clip.shape[:2]
    matrix = matrix.view(b, 1, c, c).expand(b, t, c, c).reshape(b * t, c, c)
    offset = offset.view(b, 1, c, 1).expand(b, t, c, 1).reshape(b * t, c, 1)
    return torch.baddbmm(offset, matrix, clip.reshape(b * t, c, h * w)).view(b, t, c, h, w)


def solarize(clip: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert values ``>= threshold`` of a float clip in [0, 1] (torchvision's ``solarize``).

    At the usual threshold 0.5 this is ``min(x, 1 - x)``, several times faster on CPU than
    ``torch.where``. Returns a new tensor.
    """
    if threshold == 0.5:
        return torch.minimum(clip, 1.0 - clip)
    return torch.where(clip >= threshold, 1.0 - clip, clip)


def clamp_normalised(clips: torch.Tensor, params: ClipParams | None = None) -> torch.Tensor:
    """Normalised values clamped to the image of [0, 1] (a new tensor)."""
    if len(set(_LOW)) == 1 and len(set(_HIGH)) == 1:
        return clips.clamp(_LOW[0], _HIGH[0])
    k = colour_constants(clips.device, clips.dtype)
    shape = (-1, 1, 1)
    return clips.clamp(k["low"].view(shape), k["high"].view(shape))
