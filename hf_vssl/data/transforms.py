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

Presets (:data:`TRANSFORM_PRESETS`, REFERENCE.md section 2):

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

import itertools
import math
from collections.abc import Callable, Sequence

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

_ORDERS = list(itertools.permutations(("brightness", "contrast", "saturation")))

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


# The per-clip parameter algebra is on 3x3 / 2x3 matrices: plain floats, no tensor overhead.
def _matmul(a: Rows, b: Rows) -> list[list[float]]:
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def _matvec(a: Rows, v: Sequence[float]) -> list[float]:
    return [sum(a_ik * v_k for a_ik, v_k in zip(row, v)) for row in a]


# ----------------------------------------------------------------------------------- colour


def _hue_rows(angle: float) -> list[list[float]]:
    cos, sin = math.cos(angle), math.sin(angle)
    return _matmul(_matmul(_YIQ_TO_RGB, ((1.0, 0.0, 0.0), (0.0, cos, -sin), (0.0, sin, cos))), _RGB_TO_YIQ)


def _saturation_rows(factor: float) -> list[list[float]]:
    return [[factor * (i == j) + (1 - factor) * GRAY_WEIGHTS[j] for j in range(3)] for i in range(3)]


_GRAY_ROWS = (GRAY_WEIGHTS,) * 3


def hue_matrix(angle: float) -> torch.Tensor:
    """3x3 RGB matrix (float64) rotating the YIQ chroma plane by ``angle`` radians.

    A linear approximation of torchvision's HSV hue shift: keeps greys and luma.
    """
    return torch.tensor(_hue_rows(angle), dtype=torch.float64)


def grayscale_matrix() -> torch.Tensor:
    """3x3 RGB matrix (float64) writing the grey level (torchvision's weights) into every channel."""
    return torch.tensor(_GRAY_ROWS, dtype=torch.float64)


def saturation_matrix(factor: float) -> torch.Tensor:
    """``factor * x + (1 - factor) * grey(x)`` as a 3x3 RGB matrix (float64)."""
    return torch.tensor(_saturation_rows(factor), dtype=torch.float64)


def _jitter_rows(
    mean_rgb: Sequence[float], brightness: float, contrast: float, saturation: float, hue_angle: float,
    order: Sequence[str],
) -> tuple[list[list[float]], list[float]]:
    matrix: Rows = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    offset, mean = [0.0, 0.0, 0.0], [float(m) for m in mean_rgb]
    for name in order:
        if name == "brightness":
            matrix = [[brightness * a for a in row] for row in matrix]
            offset, mean = [brightness * o for o in offset], [brightness * m for m in mean]
        elif name == "contrast":  # pivot: the mean grey of the clip as adjusted so far
            shift = (1 - contrast) * sum(w * m for w, m in zip(GRAY_WEIGHTS, mean))
            matrix = [[contrast * a for a in row] for row in matrix]
            offset = [contrast * o + shift for o in offset]
            mean = [contrast * m + shift for m in mean]
        elif name == "saturation":
            step = _saturation_rows(saturation)
            matrix, offset, mean = _matmul(step, matrix), _matvec(step, offset), _matvec(step, mean)
        else:
            raise ValueError(f"unknown jitter step {name!r}")
    if hue_angle:
        hue = _hue_rows(hue_angle)
        matrix, offset = _matmul(hue, matrix), _matvec(hue, offset)
    return [list(row) for row in matrix], offset


def jitter_affine(
    mean_rgb: Sequence[float] | torch.Tensor,
    brightness: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    hue_angle: float = 0.0,
    order: Sequence[str] = ("brightness", "contrast", "saturation"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour jitter as one affine RGB map ``x -> M @ x + b`` (float64 ``M``, ``b``; values in [0, 1]).

    Applies, in ``order``, ``adjust_brightness`` (``f x``), ``adjust_contrast``
    (``f x + (1 - f) m`` with ``m`` the mean grey of the clip as adjusted so far, tracked from
    the clip's mean colour ``mean_rgb``) and ``adjust_saturation``, then the hue rotation
    (``hue_angle`` radians), *without* the clamps between steps.
    """
    if isinstance(mean_rgb, torch.Tensor):
        mean_rgb = mean_rgb.tolist()
    matrix, offset = _jitter_rows(mean_rgb, brightness, contrast, saturation, hue_angle, order)
    return torch.tensor(matrix, dtype=torch.float64), torch.tensor(offset, dtype=torch.float64)


def apply_colour(
    clip: torch.Tensor, matrix: Rows | torch.Tensor, offset: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """``matrix @ pixel + offset`` for every pixel of a float ``(T, 3, H, W)`` clip: one batched
    matmul (one pass over the clip, a new tensor)."""
    t, c, h, w = clip.shape
    matrix = torch.as_tensor(matrix, dtype=clip.dtype).expand(t, c, c)
    offset = torch.as_tensor(offset, dtype=clip.dtype).view(1, c, 1).expand(t, c, 1)
    return torch.baddbmm(offset, matrix, clip.reshape(t, c, h * w)).view(t, c, h, w)


def _blur_matrix(length: int, kernel_size: int, sigma: float) -> torch.Tensor:
    """``(length, length)`` M with ``(x @ M)[j] = sum_k w[k] x[reflect(j + k)]``."""
    half = min(kernel_size // 2, length - 1)  # reflect padding needs half < length
    offsets = torch.arange(-half, half + 1)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    # Drop taps below float32 resolution: tiny taps (small sigma) are denormal floats, which
    # slow the matmuls down 10x or more on x86.
    taps = torch.where(taps < 1e-7, 0.0, taps)
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


def gaussian_blur(clip: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of a float ``(..., H, W)`` tensor, reflect borders (= torchvision's result).

    Rows then columns, as two matmuls with banded matrices that fold the reflect padding in:
    several times faster on CPU than torchvision's 2-D depthwise convolution at kernel 11. Its
    weights sum to 1, so it commutes with per-channel affine maps (the normalisation).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
    height, width = clip.shape[-2:]
    rows = _blur_matrix(width, kernel_size, sigma).to(clip.dtype)
    cols = _blur_matrix(height, kernel_size, sigma).to(clip.dtype)
    return torch.matmul(cols.T, torch.matmul(clip, rows))


def solarize(clip: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert values ``>= threshold`` of a float clip in [0, 1] (torchvision's ``solarize``).

    At the usual threshold 0.5 this is ``min(x, 1 - x)``, several times faster on CPU than
    ``torch.where``.
    """
    if threshold == 0.5:
        return torch.minimum(clip, 1.0 - clip)
    return torch.where(clip >= threshold, 1.0 - clip, clip)


# --------------------------------------------------------------------------------- geometry


def _crop_rows(
    top: float, left: float, height: float, width: float, flip: bool, angle: float
) -> list[list[float]]:
    rad = math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    sx, sy = (-width if flip else width) / 2, height / 2
    # source = scale @ unflip @ unrotate @ output (+ the crop centre); unrotate = R(-angle) with
    # y pointing down, i.e. [[cos, -sin], [sin, cos]].
    return [[sx * cos, -sx * sin, left + width / 2], [sy * sin, sy * cos, top + height / 2]]


def crop_affine(
    top: float, left: float, height: float, width: float, flip: bool = False, angle: float = 0.0
) -> torch.Tensor:
    """2x3 map (float64) from output coordinates in [-1, 1] to source pixel-edge coordinates.

    The output is the ``(top, left, height, width)`` region of the source, resized to the output
    size, flipped horizontally if ``flip``, then rotated by ``angle`` degrees counter-clockwise
    about its centre (torchvision's ``rotate`` convention), in that order.
    """
    return torch.tensor(_crop_rows(top, left, height, width, flip, angle), dtype=torch.float64)


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
    # Source pixel-edge coordinates -> the box's normalised coordinates, composed with theta.
    grid_theta = torch.tensor(
        [[[2 * a / box_w, 2 * b / box_w, 2 * (tx - x0) / box_w - 1],
          [2 * d / box_h, 2 * e / box_h, 2 * (ty - y0) / box_h - 1]]],
        dtype=torch.float32,
    )
    grid = NF.affine_grid(grid_theta, [1, t * c, size, size], align_corners=False)
    out = NF.grid_sample(box, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.view(t, c, size, size)


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
            ``[0.6, 1.4]`` in a random order, then a hue shift in ``[-0.1, 0.1]`` of a turn).
        grayscale_p / gamma_p / blur_p / solarize_p: CVRL's extra steps (0: never).
    """

    # One torch.rand draw per call; the uniforms by position (RandomResizedCrop uses 0-39).
    _NUM_UNIFORMS = 56
    _FLIP, _ANGLE, _JITTER_ON, _B, _C, _S, _ORDER, _HUE_U = range(40, 48)
    _GRAY, _GAMMA_ON, _GAMMA, _BLUR_ON, _SIGMA, _SOLARIZE = range(48, 54)

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

    def geometry(self, height: int, width: int, u: Sequence[float]) -> list[list[float]]:
        """The clip's 2x3 output -> source map (see :func:`crop_affine`) from the uniforms ``u``."""
        size = self.image_size
        if self.crop == "short_side":
            side = short_side_crop_box(height, width, size, resize_size(size))
            top, left, h, w = _pick(u[0], height - side + 1), _pick(u[1], width - side + 1), side, side
        else:
            top, left, h, w = random_resized_crop_box(height, width, self.crop_scale, self.crop_ratio, u[:40])
        angle = _uniform(u[self._ANGLE], -self.rotation_degrees, self.rotation_degrees)
        return _crop_rows(top, left, h, w, u[self._FLIP] < self.flip_p, angle)

    def colour(self, clip: torch.Tensor, u: Sequence[float]) -> tuple[list[list[float]], list[float], bool]:
        """The clip's colour map on values in [0, 1] (jitter, grayscale) and whether it can leave [0, 1]."""
        matrix: Rows = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
        offset = [0.0, 0.0, 0.0]
        jitter = u[self._JITTER_ON] < self.jitter_p
        if jitter:
            slots = {"brightness": self._B, "contrast": self._C, "saturation": self._S}
            factors = [_uniform(u[k], 1 - _JITTER[name], 1 + _JITTER[name]) for name, k in slots.items()]
            mean_rgb = [m / 255 for m in clip.mean(dim=(0, 2, 3)).tolist()]  # contrast's pivot, once per clip
            hue = 2 * math.pi * _uniform(u[self._HUE_U], -_HUE, _HUE)
            order = _ORDERS[_pick(u[self._ORDER], len(_ORDERS))]
            matrix, offset = _jitter_rows(mean_rgb, *factors, hue, order)
        if u[self._GRAY] < self.grayscale_p:
            matrix, offset = _matmul(_GRAY_ROWS, matrix), _matvec(_GRAY_ROWS, offset)
        return [list(row) for row in matrix], offset, jitter

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        u = torch.rand(self._NUM_UNIFORMS, dtype=torch.float64).tolist()
        theta = self.geometry(video.shape[-2], video.shape[-1], u)
        # Rotation: black outside the frame (torchvision's fill); plain crops: replicate the edge.
        clip = resample(video, theta, self.image_size, "zeros" if self.rotation_degrees else "border")
        matrix, offset, may_leave_range = self.colour(clip, u)  # on values in [0, 1]
        do_gamma = u[self._GAMMA_ON] < self.gamma_p
        do_blur = u[self._BLUR_ON] < self.blur_p
        do_solarize = u[self._SOLARIZE] < self.solarize_p
        sigma = _uniform(u[self._SIGMA], *self.blur_sigma)

        if do_gamma or do_solarize:  # non-linear steps need values in [0, 1]: normalise at the end
            clip = apply_colour(clip, [[m / 255 for m in row] for row in matrix], offset)
            clip = clip.clamp_(0.0, 1.0)
            if do_gamma:  # x ** gamma as exp(gamma log x): 3x faster than pow on CPU, 0 stays 0
                log_low, log_high = math.log(self.gamma_range[0]), math.log(self.gamma_range[1])
                clip = clip.log_().mul_(math.exp(_uniform(u[self._GAMMA], log_low, log_high))).exp_()
            if do_blur:
                clip = gaussian_blur(clip, self.blur_kernel, sigma)
            if do_solarize:
                clip = solarize(clip, self.solarize_threshold)
            scale = [[(i == j) / s for j in range(3)] for i, s in enumerate(_STD)]
            return apply_colour(clip, scale, [-m / s for m, s in zip(_MEAN, _STD)])

        # Linear steps only: one map from 0-255 to normalised values, one clamp if needed.
        matrix = [[m / (255 * s) for m in row] for row, s in zip(matrix, _STD)]
        offset = [(o - m) / s for o, m, s in zip(offset, _MEAN, _STD)]
        clip = apply_colour(clip, matrix, offset)
        if may_leave_range:
            clip = _clamp_normalised_(clip)
        if do_blur:  # its weights sum to 1: the blur commutes with the per-channel normalisation
            clip = gaussian_blur(clip, self.blur_kernel, sigma)
        return clip

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, crop={self.crop!r}, "
            f"rotation_degrees={self.rotation_degrees})"
        )


def _clamp_normalised_(clip: torch.Tensor) -> torch.Tensor:
    """Clamp normalised values to the image of [0, 1], in place (scalar bounds when the channels
    share them, as with VIDEO_MEAN / VIDEO_STD)."""
    if len(set(_LOW)) == 1 and len(set(_HIGH)) == 1:
        return clip.clamp_(_LOW[0], _HIGH[0])
    shape = (1, -1, 1, 1)
    low, high = (torch.tensor(bound, dtype=clip.dtype).view(shape) for bound in (_LOW, _HIGH))
    return clip.clamp_(low, high)


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
