"""Clip-consistent augmentation for the pretext tasks and a deterministic evaluation transform.

Every training transform draws its random parameters once per call and applies them to all
frames of the clip: one crop, one flip, one rotation angle, one colour jitter per clip
(temporally consistent), fresh parameters for the next call (CVRL's two clips of a video are two
calls, hence independent).

Input: uint8 ``(T, C=3, H, W)``. Output: float32 ``(T, 3, image_size, image_size)`` normalised
with :data:`VIDEO_MEAN` / :data:`VIDEO_STD`.

The training transforms are **fused** (3-5x cheaper per clip than the equivalent chain of
torchvision v2 steps on CPU):

- *Geometry in one resampling pass.* Crop (+ resize), horizontal flip and rotation compose into
  one 2x3 affine map from output to source coordinates. Only the source region that map reads
  (its bounding box plus a pixel of margin) is cut from the uint8 frames and converted to float,
  then one ``F.affine_grid`` + ``F.grid_sample`` (bilinear, ``align_corners=False``) resamples
  all ``T x 3`` planes of the clip at once with one shared grid. A crop more than 1.5x larger
  than the output is first box-filtered by an integer factor (``round(scale)``, per axis) so
  that the bilinear step never shrinks by more than ~1.25x (a cheap antialias).
  A rotation samples the frame around the crop: the corners a rotated crop uncovers show the
  surrounding frame where it exists and are black (torchvision's ``fill=0``) only outside the
  frame (rotating the cropped image instead always gives black corners). Without rotation
  (CVRL) the border pixels are replicated instead, as a plain resize does.
- *Colour in one linear map.* Brightness, contrast, saturation (in a random order, like
  ``ColorJitter``), the YIQ hue rotation and CVRL's grayscale are all affine in RGB; they fold
  with ``/255`` and the normalisation into one 3x3 matrix + offset per clip, applied with one
  batched matmul. Contrast's pivot is the clip's mean grey (one value per clip, where
  torchvision uses one per frame), computed once. **Intermediate clamps are dropped**: the
  sequential ops clamp to [0, 1] after each step, the fused map clamps once, at the end (one
  in-place pass on the normalised clip, only when the jitter fired); colours that a step pushed
  out of range and a later step brings back differ slightly from the sequential pipeline, the
  standard trade-off of fused jitter.
- CVRL's gamma, blur and solarize stay separate ops, run only when their coin flip fires.

The evaluation transform (``eval``, and ``train=False`` for any preset) is a center crop in uint8
plus an antialiased ``resize`` (skipped when the crop already has the output size) and the
normalisation.

Randomness comes from the **global torch RNG** (one ``torch.rand`` draw per call): seed with
``torch.manual_seed`` for reproducibility; the datasets seed it per sample inside
``torch.random.fork_rng``.

Presets (:data:`TRANSFORM_PRESETS`, docs/study_settings.md#augmentation):

- ``rotnet`` / ``vcop`` / ``prp`` / ``rspnet`` / ``tdl``: resize the shortest side to
  ``resize_size(image_size)`` (128 for 112) + random ``image_size`` crop, horizontal flip, small
  random rotation (+-10 deg; RotNet's 90 deg rotations are its pretext target and are applied by
  the task), colour jitter (p=0.8). RSPNet's temporal augmentation is its clip sampling; the
  study does not specify TDL's, so it gets the same set.
- ``cvrl``: random resized crop (area 0.3-1, aspect 0.5-2), flip, colour jitter (p=0.8),
  grayscale (p=0.2), gamma (p=0.5), gaussian blur (p=0.5), solarize (p=0.2).
- ``eval``: resize the shortest side + center crop, no randomness.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as NF
from torchvision.transforms.v2 import functional as F

from hf_vssl.models.processing_vssl import VIDEO_MEAN, VIDEO_STD

#: Training and evaluation resize the shortest side to ``image_size * RESIZE_RATIO`` (128 for 112).
RESIZE_RATIO = 128 / 112

# Colour jitter as in MoCo v2 / BYOL-style pipelines: (0.4, 0.4, 0.4, hue 0.1) with p=0.8.
_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4}
_HUE = 0.1
_JITTER_P = 0.8
_ROTATION_DEGREES = 10.0

#: torchvision's ``rgb_to_grayscale`` weights (used by its contrast and saturation too).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

# RGB <-> YIQ (NTSC). A hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_YIQ_TO_RGB = tuple(map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)).tolist()))

# Normalisation as floats, and the normalised image of [0, 1] (the clamp range).
_MEAN, _STD = tuple(map(float, VIDEO_MEAN)), tuple(map(float, VIDEO_STD))
_LOW = tuple(-m / s for m, s in zip(_MEAN, _STD))
_HIGH = tuple((1 - m) / s for m, s in zip(_MEAN, _STD))

Rows = Sequence[Sequence[float]]  # a small matrix as nested floats (3x3 colour, 2x3 affine)


def resize_size(image_size: int) -> int:
    """Shortest-side length that training and evaluation crops of ``image_size`` are taken from."""
    return round(image_size * RESIZE_RATIO)


def _pick(u: float, n: int) -> int:
    """An int uniform in ``[0, n)`` from a uniform ``u`` in ``[0, 1)``."""
    return min(int(u * n), n - 1)


def _uniform(u: float, low: float, high: float) -> float:
    return low + u * (high - low)


# -------------------------------------------------------------------- per-clip parameters
#
# Every random parameter after the crop is a batched tensor with one row per clip: the per-clip
# CPU path (FusedClipTransform, one clip) and the device path (batch_augment.BatchAugment, a
# whole batch on the accelerator) draw and use them through the same functions below.


class ClipParams(NamedTuple):
    """Random parameters of a batch of clips (one row per clip) except the crop.

    ``flip``, ``jitter``, ``gray``, ``gamma_on``, ``blur``, ``solarize``: bool ``(B,)``;
    ``angle`` (degrees), ``hue`` (radians), ``gamma``, ``sigma``: float ``(B,)``;
    ``factors``: brightness, contrast, saturation ``(B, 3)``.
    """

    flip: torch.Tensor
    angle: torch.Tensor
    jitter: torch.Tensor
    factors: torch.Tensor
    hue: torch.Tensor
    gray: torch.Tensor
    gamma_on: torch.Tensor
    gamma: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    solarize: torch.Tensor

    def select(self, index: torch.Tensor | slice | int) -> ClipParams:
        """The parameters of the clips ``index`` picks (a slice or an index tensor keeps the batch dim)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return ClipParams(*(field[index] for field in self))

    @property
    def num_clips(self) -> int:
        return self.flip.shape[0]


#: Uniforms per clip that :meth:`FusedClipTransform.clip_params` consumes, by column.
NUM_CLIP_UNIFORMS = 14
(_U_FLIP, _U_ANGLE, _U_JITTER_ON, _U_B, _U_C, _U_S, _U_ORDER, _U_HUE,
 _U_GRAY, _U_GAMMA_ON, _U_GAMMA, _U_BLUR_ON, _U_SIGMA, _U_SOLARIZE) = range(NUM_CLIP_UNIFORMS)


@functools.lru_cache(maxsize=16)
def _constants(device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
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
        "mean": torch.tensor(_MEAN, dtype=f64),
        "std": torch.tensor(_STD, dtype=f64),
        "low": torch.tensor(_LOW, dtype=f64),
        "high": torch.tensor(_HIGH, dtype=f64),
        "jitter_low": torch.tensor([1 - _JITTER[k] for k in ("brightness", "contrast", "saturation")], dtype=f64),
        "jitter_span": torch.tensor([2 * _JITTER[k] for k in ("brightness", "contrast", "saturation")], dtype=f64),
    }
    return {name: value.to(device=device, dtype=dtype) for name, value in values.items()}


# ----------------------------------------------------------------------------------- colour


def hue_matrices(angle: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` RGB matrices rotating the YIQ chroma plane by ``angle`` ``(B,)`` radians."""
    k = _constants(angle.device, angle.dtype)
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    return k["hue0"] + cos * k["hue_cos"] + sin * k["hue_sin"]


def hue_matrix(angle: float) -> torch.Tensor:
    """3x3 RGB matrix (float64) rotating the YIQ chroma plane by ``angle`` radians.

    A linear approximation of torchvision's HSV hue shift: keeps greys and luma.
    """
    return hue_matrices(torch.tensor([float(angle)], dtype=torch.float64))[0]


def grayscale_matrix() -> torch.Tensor:
    """3x3 RGB matrix (float64) writing the grey level (torchvision's weights) into every channel."""
    return _constants(torch.device("cpu"), torch.float64)["gray_rows"].clone()


def saturation_matrices(factor: torch.Tensor) -> torch.Tensor:
    """``factor * x + (1 - factor) * grey(x)`` as ``(B, 3, 3)`` RGB matrices, ``factor`` ``(B,)``."""
    k = _constants(factor.device, factor.dtype)
    factor = factor.view(-1, 1, 1)
    return factor * k["eye"] + (1 - factor) * k["gray_rows"]


def saturation_matrix(factor: float) -> torch.Tensor:
    """``factor * x + (1 - factor) * grey(x)`` as a 3x3 RGB matrix (float64)."""
    return saturation_matrices(torch.tensor([float(factor)], dtype=torch.float64))[0]


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
    k = _constants(params.factors.device, params.factors.dtype)
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
    unknown = set(order) - set(_JITTER)
    if unknown:
        raise ValueError(f"unknown jitter step {min(unknown)!r}")
    f64 = torch.float64
    params = _one_clip_params(factors=torch.tensor([[brightness, contrast, saturation]], dtype=f64),
                              hue=torch.tensor([float(hue_angle)], dtype=f64), jitter=True)
    mean = torch.as_tensor(mean_rgb, dtype=f64).view(1, 3)
    matrix, offset = colour_affine(mean, params)
    return matrix[0], offset[0]


def _one_clip_params(**values) -> ClipParams:
    """Neutral parameters of one clip (float64), with ``values`` set."""
    f64 = torch.float64
    false, zero = torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=f64)
    base = {"flip": false, "angle": zero, "jitter": false, "factors": torch.ones(1, 3, dtype=f64), "hue": zero,
            "gray": false, "gamma_on": false, "gamma": torch.ones(1, dtype=f64), "blur": false,
            "sigma": torch.ones(1, dtype=f64), "solarize": false}
    for name, value in values.items():
        base[name] = torch.as_tensor(value, dtype=base[name].dtype).reshape(base[name].shape)
    return ClipParams(**base)


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


def _blur_matrices(length: int, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """``(B, length, length)`` M with ``(x @ M[b])[j] = sum_k w_b[k] x[reflect(j + k)]``, ``sigma`` ``(B,)``."""
    device, dtype = sigma.device, torch.float32
    half = min(kernel_size // 2, length - 1)  # reflect padding needs half < length
    offsets = torch.arange(-half, half + 1, device=device)
    taps = torch.exp(-0.5 * (offsets.to(dtype) / sigma.to(dtype).view(-1, 1)) ** 2)
    taps = taps / taps.sum(-1, keepdim=True)
    # Drop taps below float32 resolution: tiny taps (small sigma) are denormal floats, which
    # slow the matmuls down 10x or more on x86.
    taps = torch.where(taps < 1e-7, 0.0, taps)
    taps = taps / taps.sum(-1, keepdim=True)
    source = torch.arange(length, device=device)[None, :] + offsets[:, None]  # (taps, length)
    source = source.abs()
    source = torch.where(source >= length, 2 * (length - 1) - source, source)
    flat = (source * length + torch.arange(length, device=device)).flatten()  # row * length + column
    batch = sigma.shape[0]
    matrix = torch.zeros(batch, length * length, device=device, dtype=dtype)
    matrix.scatter_add_(1, flat.expand(batch, -1), taps.repeat_interleave(length, dim=1))
    return matrix.view(batch, length, length)


def _blur_clips(clips: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of float ``(B, ..., H, W)`` clips, one ``sigma`` per clip (reflect borders)."""
    height, width = clips.shape[-2:]
    rows = _blur_matrices(width, kernel_size, sigma).to(clips.dtype)
    cols = _blur_matrices(height, kernel_size, sigma).to(clips.dtype).transpose(-1, -2)
    if clips.shape[0] == 1:  # plain 2-D matrices: the matmuls fold into one GEMM each
        return torch.matmul(cols[0], torch.matmul(clips, rows[0]))
    shape = (clips.shape[0],) + (1,) * (clips.ndim - 3)
    return torch.matmul(cols.view(*shape, height, height), torch.matmul(clips, rows.view(*shape, width, width)))


def gaussian_blur(clip: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of a float ``(..., H, W)`` tensor, reflect borders (= torchvision's result).

    Rows then columns, as two matmuls with banded matrices that fold the reflect padding in:
    several times faster on CPU than torchvision's 2-D depthwise convolution at kernel 11. Its
    weights sum to 1, so it commutes with per-channel affine maps (the normalisation).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
    sigma_t = torch.tensor([float(sigma)], device=clip.device)
    return _blur_clips(clip.unsqueeze(0), kernel_size, sigma_t)[0]


def solarize(clip: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert values ``>= threshold`` of a float clip in [0, 1] (torchvision's ``solarize``).

    At the usual threshold 0.5 this is ``min(x, 1 - x)``, several times faster on CPU than
    ``torch.where``. Returns a new tensor.
    """
    if threshold == 0.5:
        return torch.minimum(clip, 1.0 - clip)
    return torch.where(clip >= threshold, 1.0 - clip, clip)


def _per_clip(
    clips: torch.Tensor, mask: torch.Tensor, params: ClipParams, step: Callable[[torch.Tensor, ClipParams], torch.Tensor]
) -> torch.Tensor:
    """``step`` on the clips ``mask`` selects, the others unchanged; ``step`` must not modify its input.

    On the CPU only the selected clips are computed (the mask is read on the host); elsewhere
    every clip is computed and the result picked with ``torch.where``: no host sync.
    """
    if clips.device.type == "cpu":
        index = mask.nonzero().flatten()
        if index.numel() == 0:
            return clips
        if index.numel() == mask.numel():
            return step(clips, params)
        clips = clips.clone() if clips.requires_grad else clips
        clips[index] = step(clips[index], params.select(index))
        return clips
    return torch.where(mask.view(-1, *([1] * (clips.ndim - 1))), step(clips, params), clips)


# --------------------------------------------------------------------------------- geometry


def crop_thetas(boxes: torch.Tensor, flip: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 3)`` maps from output coordinates in [-1, 1] to source pixel-edge coordinates.

    ``boxes`` ``(B, 4)``: ``top, left, height, width`` of each crop; ``flip`` ``(B,)`` bool;
    ``angle`` ``(B,)`` degrees. See :func:`crop_affine`.
    """
    top, left, height, width = boxes.unbind(-1)
    rad = torch.deg2rad(angle.to(boxes.dtype))
    cos, sin = rad.cos(), rad.sin()
    sx, sy = torch.where(flip, -width, width) / 2, height / 2
    # source = scale @ unflip @ unrotate @ output (+ the crop centre); unrotate = R(-angle) with
    # y pointing down, i.e. [[cos, -sin], [sin, cos]].
    return torch.stack(
        [torch.stack([sx * cos, -sx * sin, left + width / 2], -1),
         torch.stack([sy * sin, sy * cos, top + height / 2], -1)], -2
    )


def crop_affine(
    top: float, left: float, height: float, width: float, flip: bool = False, angle: float = 0.0
) -> torch.Tensor:
    """2x3 map (float64) from output coordinates in [-1, 1] to source pixel-edge coordinates.

    The output is the ``(top, left, height, width)`` region of the source, resized to the output
    size, flipped horizontally if ``flip``, then rotated by ``angle`` degrees counter-clockwise
    about its centre (torchvision's ``rotate`` convention), in that order.
    """
    boxes = torch.tensor([[top, left, height, width]], dtype=torch.float64)
    return crop_thetas(boxes, torch.tensor([bool(flip)]), torch.tensor([float(angle)], dtype=torch.float64))[0]


def box_grid_theta(theta: torch.Tensor, x0: float, y0: float, box_w: float, box_h: float) -> torch.Tensor:
    """``affine_grid`` thetas ``(B, 2, 3)`` (float32) reading the ``box_w x box_h`` box at ``(x0, y0)``.

    Composes ``theta`` (output -> source pixel-edge coordinates) with source -> the box's
    normalised coordinates.
    """
    # Python scalars only: no small host-to-device copies (and syncs) on an accelerator.
    out = torch.cat([theta[:, :1] * (2 / box_w), theta[:, 1:] * (2 / box_h)], dim=1)
    out[:, 0, 2] -= 2 * x0 / box_w + 1
    out[:, 1, 2] -= 2 * y0 / box_h + 1
    return out.to(torch.float32)


def resample(
    video: torch.Tensor, theta: Rows | torch.Tensor, size: int, padding_mode: str = "zeros"
) -> torch.Tensor:
    """Sample a ``size x size`` float clip (values 0-255) from a uint8 ``(T, 3, H, W)`` clip.

    ``theta`` (2x3, see :func:`crop_affine`) maps output coordinates in [-1, 1] to source
    pixel-edge coordinates. One bilinear ``grid_sample`` (``align_corners=False``) for all
    ``T x 3`` planes with one grid, on the float copy of just the source region the map reads,
    box-filtered by an integer factor first when the map shrinks by 1.5x or more. Outside the
    frame: ``padding_mode`` (``"zeros"``: black, ``"border"``: edge pixels).
    """
    t, c, src_h, src_w = video.shape
    (a, b, tx), (d, e, ty) = theta.tolist() if isinstance(theta, torch.Tensor) else theta
    xs = [a * u + b * v + tx for u, v in ((-1, -1), (-1, 1), (1, -1), (1, 1))]
    ys = [d * u + e * v + ty for u, v in ((-1, -1), (-1, 1), (1, -1), (1, 1))]
    # Source pixels per output pixel along each output axis. Under the small rotations used here
    # each output axis stays closest to one source axis: box-filter that axis by its shrink.
    zoom_x, zoom_y = math.hypot(a, d) * 2 / size, math.hypot(b, e) * 2 / size
    if abs(a) < abs(b):  # output x runs along source y
        zoom_x, zoom_y = zoom_y, zoom_x
    kx = round(zoom_x) if zoom_x >= 1.5 else 1
    ky = round(zoom_y) if zoom_y >= 1.5 else 1

    # The source pixels that bilinear sampling (after the box filter) can touch, inside the frame.
    x0 = min(max(0, math.floor(min(xs)) - kx), src_w - 1)
    x1 = max(min(src_w, math.ceil(max(xs)) + kx), x0 + 1)
    y0 = min(max(0, math.floor(min(ys)) - ky), src_h - 1)
    y1 = max(min(src_h, math.ceil(max(ys)) + ky), y0 + 1)
    box = video[:, :, y0:y1, x0:x1].to(torch.float32, memory_format=torch.contiguous_format)
    box = box.view(1, t * c, y1 - y0, x1 - x0)
    if kx > 1 or ky > 1:
        box = NF.avg_pool2d(box, (ky, kx), ceil_mode=True)
    box_w, box_h = box.shape[-1] * kx, box.shape[-2] * ky  # source pixels the (pooled) box spans
    grid_theta = box_grid_theta(torch.tensor([[[a, b, tx], [d, e, ty]]], dtype=torch.float64), x0, y0, box_w, box_h)
    grid = NF.affine_grid(grid_theta, [1, t * c, size, size], align_corners=False)
    out = NF.grid_sample(box, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.view(t, c, size, size)


def resample_batch(
    videos: torch.Tensor, theta: torch.Tensor, size: int, padding_mode: str = "zeros"
) -> torch.Tensor:
    """:func:`resample` for a batch: uint8 ``(B, T, 3, H, W)`` clips, ``theta`` ``(B, 2, 3)``.

    One ``affine_grid`` + ``grid_sample`` over the whole batch (each clip's grid shared by its
    ``T x 3`` planes), reading the full frames; no box filter (the loader part of a split preset
    leaves at most a ~1.2x shrink). Returns float32 ``(B, T, 3, size, size)``, values 0-255.
    """
    b, t, c, height, width = videos.shape
    planes = videos.reshape(b, t * c, height, width).to(torch.float32)
    grid = NF.affine_grid(box_grid_theta(theta, 0, 0, width, height), [b, t * c, size, size], align_corners=False)
    out = NF.grid_sample(planes, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.view(b, t, c, size, size)


def short_side_crop_box(height: int, width: int, size: int, resize_to: int) -> int:
    """Side of the square that, cut from ``height x width`` frames, is ``size`` after the
    resize of the shortest side to ``resize_to``."""
    return min(round(size * min(height, width) / resize_to), height, width)


def random_resized_crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], uniforms: Sequence[float]
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` as torchvision's ``RandomResizedCrop`` draws it (10 tries, then a
    central crop), from 40 uniforms in [0, 1)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for attempt in range(10):
        u_area, u_ratio, u_top, u_left = uniforms[4 * attempt : 4 * attempt + 4]
        target_area = area * _uniform(u_area, *scale)
        aspect_ratio = math.exp(_uniform(u_ratio, *log_ratio))
        w = round(math.sqrt(target_area * aspect_ratio))
        h = round(math.sqrt(target_area / aspect_ratio))
        if 0 < w <= width and 0 < h <= height:
            return _pick(u_top, height - h + 1), _pick(u_left, width - w + 1), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _cut(video: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The ``(top, left, height, width)`` region of uint8 frames, zeros (black) outside the frame."""
    src_h, src_w = video.shape[-2:]
    if top >= 0 and left >= 0 and top + height <= src_h and left + width <= src_w:
        return video[..., top : top + height, left : left + width]
    out = video.new_zeros(*video.shape[:-2], height, width)
    y0, y1 = max(top, 0), min(top + height, src_h)
    x0, x1 = max(left, 0), min(left + width, src_w)
    if y1 > y0 and x1 > x0:
        out[..., y0 - top : y1 - top, x0 - left : x1 - left] = video[..., y0:y1, x0:x1]
    return out


# ------------------------------------------------------------------------------ transforms


class FusedClipTransform:
    """One training augmentation: fused geometry, fused colour, optional CVRL extras.

    Args:
        image_size: output side ``S``.
        crop: ``"short_side"`` (shortest side to ``resize_size(S)``, random ``S`` crop) or
            ``"random_resized"`` (``RandomResizedCrop`` with ``crop_scale`` / ``crop_ratio``).
        flip_p: probability of the horizontal flip.
        rotation_degrees: rotation angle uniform in ``[-d, d]`` (0: none).
        jitter_p: probability of the colour jitter (brightness, contrast, saturation factors in
            ``[0.6, 1.4]``, then a hue shift in ``[-0.1, 0.1]`` of a turn).
        grayscale_p / gamma_p / blur_p / solarize_p: CVRL's extra steps (0: never).

    The same object describes the split form of the preset (:mod:`hf_vssl.data.batch_augment`):
    :meth:`loader_crop` is the uint8 part a DataLoader worker runs, :meth:`clip_params` +
    :meth:`finish` the part a batch gets on the training device. :meth:`__call__` = crop +
    parameters + :meth:`apply`, one clip on the CPU.
    """

    # One torch.rand draw per call: RandomResizedCrop uses uniforms 0-39, clip_params 40-53.
    _NUM_UNIFORMS = 56
    _CROP_UNIFORMS = 40

    def __init__(
        self,
        image_size: int,
        *,
        crop: str = "short_side",
        crop_scale: tuple[float, float] = (0.3, 1.0),
        crop_ratio: tuple[float, float] = (0.5, 2.0),
        flip_p: float = 0.5,
        rotation_degrees: float = 0.0,
        jitter_p: float = _JITTER_P,
        grayscale_p: float = 0.0,
        gamma_p: float = 0.0,
        gamma_range: tuple[float, float] = (2 / 3, 3 / 2),
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize_p: float = 0.0,
        solarize_threshold: float = 0.5,
    ):
        if crop not in ("short_side", "random_resized"):
            raise ValueError(f"crop must be 'short_side' or 'random_resized', got {crop!r}")
        self.image_size, self.crop = image_size, crop
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.flip_p, self.rotation_degrees, self.jitter_p = flip_p, float(rotation_degrees), jitter_p
        self.grayscale_p, self.gamma_p, self.blur_p = grayscale_p, gamma_p, blur_p
        self.solarize_p, self.solarize_threshold = solarize_p, solarize_threshold
        self.gamma_range, self.blur_sigma = gamma_range, blur_sigma
        self.blur_kernel = max(3, image_size // 10) | 1  # ~10% of the image, odd

    # -- the crop (drawn where the frames are: per clip, on the CPU) --------------------------

    def crop_box(self, height: int, width: int, u: Sequence[float]) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of the clip's crop in ``height x width`` frames, from uniforms ``u``
        (``short_side``: 2, ``random_resized``: 40)."""
        if self.crop == "short_side":
            side = short_side_crop_box(height, width, self.image_size, resize_size(self.image_size))
            return _pick(u[0], height - side + 1), _pick(u[1], width - side + 1), side, side
        return random_resized_crop_box(height, width, self.crop_scale, self.crop_ratio, u[: self._CROP_UNIFORMS])

    @property
    def margin(self) -> int:
        """Pixels kept around the crop (each side, at output scale) by :meth:`loader_crop`: what a
        rotation by up to ``rotation_degrees`` reads beyond the crop, plus one for bilinear taps."""
        if not self.rotation_degrees:
            return 0
        rad = math.radians(self.rotation_degrees)
        half = self.image_size / 2
        return math.ceil(half * (math.cos(rad) + math.sin(rad)) - half) + 1

    @property
    def loader_size(self) -> int:
        """Side of the uint8 clips :meth:`loader_crop` outputs."""
        return self.image_size + 2 * self.margin

    def loader_crop(self, video: torch.Tensor) -> torch.Tensor:
        """The loader part of the split preset: uint8 ``(T, 3, H, W)`` -> uint8 ``(T, 3, L, L)``,
        ``L`` = :attr:`loader_size`.

        Draws the crop as :meth:`__call__` does (same uniforms) and cuts it with :attr:`margin`
        output pixels of context on every side (black outside the frame, as the rotation's
        ``fill=0``), then one antialiased uint8 ``resize`` of that region to ``L x L`` (skipped
        when it already has that size: the 112-of-128 crop). The crop is then the central
        ``S x S`` of the output, where :meth:`finish` (after flip and rotation) reads it.
        """
        height, width = video.shape[-2:]
        # The draw of __call__ (torch.rand's values depend on the count): the same crop for a seed.
        u = torch.rand(self._NUM_UNIFORMS, dtype=torch.float64)[: self._CROP_UNIFORMS].tolist()
        top, left, h, w = self.crop_box(height, width, u)
        size, out = self.image_size, self.loader_size
        region_h, region_w = round(out * h / size), round(out * w / size)
        region = _cut(video, round(top + (h - region_h) / 2), round(left + (w - region_w) / 2), region_h, region_w)
        if (region_h, region_w) != (out, out):
            region = F.resize(region, [out, out], antialias=True)
        return region

    # -- per-clip parameters and the part after the geometry (shared with BatchAugment) -------

    def clip_params(self, u: torch.Tensor) -> ClipParams:
        """Parameters of ``B`` clips from uniforms ``u`` ``(B, NUM_CLIP_UNIFORMS)`` (any device)."""
        k = _constants(u.device, u.dtype)
        log_low, log_high = math.log(self.gamma_range[0]), math.log(self.gamma_range[1])
        return ClipParams(
            flip=u[:, _U_FLIP] < self.flip_p,
            angle=_uniform(u[:, _U_ANGLE], -self.rotation_degrees, self.rotation_degrees),
            jitter=u[:, _U_JITTER_ON] < self.jitter_p,
            factors=k["jitter_low"] + u[:, _U_B : _U_S + 1] * k["jitter_span"],
            hue=2 * math.pi * _uniform(u[:, _U_HUE], -_HUE, _HUE),
            gray=u[:, _U_GRAY] < self.grayscale_p,
            gamma_on=u[:, _U_GAMMA_ON] < self.gamma_p,
            gamma=torch.exp(_uniform(u[:, _U_GAMMA], log_low, log_high)),
            blur=u[:, _U_BLUR_ON] < self.blur_p,
            sigma=_uniform(u[:, _U_SIGMA], *self.blur_sigma),
            solarize=u[:, _U_SOLARIZE] < self.solarize_p,
        )

    @property
    def padding_mode(self) -> str:
        """Rotation: black outside the frame (torchvision's fill); plain crops replicate the edge."""
        return "zeros" if self.rotation_degrees else "border"

    def finish(self, clips: torch.Tensor, params: ClipParams) -> torch.Tensor:
        """Colour and CVRL extras of float ``(B, T, 3, S, S)`` clips (values 0-255, geometry done)
        -> normalised float32, one parameter row per clip.

        One colour map per clip (jitter + grayscale, folded with ``/255`` and, for the clips
        without a non-linear step, with the normalisation), one ``baddbmm`` for the batch; a
        clamp where the jitter fired; gamma, blur and solarize on the clips that drew them.
        """
        k = _constants(params.factors.device, params.factors.dtype)
        pivot = clips.mean(dim=(1, 3, 4)) / 255  # contrast's pivot: each clip's mean colour, once
        matrix, offset = colour_affine(pivot, params)  # on values in [0, 1]
        nonlinear = params.gamma_on | params.solarize  # needs values in [0, 1]: normalise after
        std = k["std"].view(1, 3, 1)
        folded = (matrix / (255 * std), (offset - k["mean"]) / k["std"])
        keep = nonlinear.view(-1, 1, 1)
        matrix = torch.where(keep, matrix / 255, folded[0])
        offset = torch.where(keep.view(-1, 1), offset, folded[1])
        clips = apply_colour(clips, matrix, offset)
        clips = _per_clip(clips, params.jitter & ~nonlinear, params, _clamp_normalised)
        clips = _per_clip(clips, nonlinear, params, self._nonlinear)
        # The blur's weights sum to 1: it commutes with the per-channel normalisation.
        return _per_clip(clips, params.blur & ~nonlinear, params, self._blur)

    def _blur(self, clips: torch.Tensor, params: ClipParams) -> torch.Tensor:
        return _blur_clips(clips, self.blur_kernel, params.sigma)

    def _nonlinear(self, clips: torch.Tensor, params: ClipParams) -> torch.Tensor:
        """Clamp to [0, 1], gamma, blur, solarize (each where drawn), normalise."""
        clips = clips.clamp(0.0, 1.0)
        # x ** gamma as exp(gamma log x): 3x faster than pow on CPU, 0 stays 0.
        clips = _per_clip(clips, params.gamma_on, params,
                          lambda x, p: x.log().mul_(p.gamma.to(x.dtype).view(-1, 1, 1, 1, 1)).exp_())
        clips = _per_clip(clips, params.blur, params, self._blur)
        clips = _per_clip(clips, params.solarize, params, lambda x, p: solarize(x, self.solarize_threshold))
        k = _constants(clips.device, clips.dtype)
        matrix = torch.diag(1 / k["std"]).expand(clips.shape[0], 3, 3)
        return apply_colour(clips, matrix, (-k["mean"] / k["std"]).expand(clips.shape[0], 3))

    def apply(self, video: torch.Tensor, box: Sequence[float], params: ClipParams) -> torch.Tensor:
        """One uint8 ``(T, 3, H, W)`` clip, its crop ``box`` ``(top, left, h, w)`` and its
        :class:`ClipParams` (one row) -> the normalised float32 ``(T, 3, S, S)`` clip."""
        boxes = torch.tensor([list(box)], dtype=params.factors.dtype)
        theta = crop_thetas(boxes, params.flip, params.angle)[0].tolist()
        clip = resample(video, theta, self.image_size, self.padding_mode)
        return self.finish(clip.unsqueeze(0), params)[0]

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        u = torch.rand(self._NUM_UNIFORMS, dtype=torch.float64)
        box = self.crop_box(video.shape[-2], video.shape[-1], u[: self._CROP_UNIFORMS].tolist())
        start = self._CROP_UNIFORMS
        return self.apply(video, box, self.clip_params(u[start : start + NUM_CLIP_UNIFORMS].view(1, -1)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, crop={self.crop!r}, "
            f"rotation_degrees={self.rotation_degrees})"
        )


def _clamp_normalised(clips: torch.Tensor, params: ClipParams | None = None) -> torch.Tensor:
    """Normalised values clamped to the image of [0, 1] (a new tensor)."""
    if len(set(_LOW)) == 1 and len(set(_HIGH)) == 1:
        return clips.clamp(_LOW[0], _HIGH[0])
    k = _constants(clips.device, clips.dtype)
    shape = (-1, 1, 1)
    return clips.clamp(k["low"].view(shape), k["high"].view(shape))


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
        scale = [[(i == j) / (255 * s) for j in range(3)] for i, s in enumerate(_STD)]
        return apply_colour(clip.float(), scale, [-m / s for m, s in zip(_MEAN, _STD)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size})"


def _basic(image_size: int) -> FusedClipTransform:
    """Resize + random crop, flip, +-10 deg rotation, colour jitter (p=0.8)."""
    return FusedClipTransform(image_size, crop="short_side", rotation_degrees=_ROTATION_DEGREES)


def _cvrl(image_size: int) -> FusedClipTransform:
    return FusedClipTransform(
        image_size,
        crop="random_resized",
        crop_scale=(0.3, 1.0),
        crop_ratio=(0.5, 2.0),
        grayscale_p=0.2,
        gamma_p=0.5,
        blur_p=0.5,
        solarize_p=0.2,
    )


#: Preset name -> builder ``image_size -> clip transform``; the one place presets are defined.
TRANSFORM_PRESETS: dict[str, Callable[[int], Callable[[torch.Tensor], torch.Tensor]]] = {
    "rotnet": _basic,
    "vcop": _basic,
    "prp": _basic,
    "rspnet": _basic,
    "tdl": _basic,
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
        return self.augment(video.as_subclass(torch.Tensor))

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


def _train_spec(preset: str, image_size: int) -> FusedClipTransform:
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
    spec = _train_spec(preset, image_size)
    transform = VideoTransform(preset, image_size, True, spec.loader_crop)
    transform.output_size = spec.loader_size
    return transform
