"""The fused training augmentation: one resampling pass for the geometry, one linear map for the
colour, CVRL's extras only when their coin flip fires.

3-5x cheaper per clip on CPU than the equivalent chain of torchvision v2 steps: the crop, flip
and rotation compose into one affine map (:mod:`~hf_vssl.data.transforms.geometry`); the jitter,
hue and grayscale fold with ``/255`` and the normalisation into one 3x3 matrix + offset per clip
(:mod:`~hf_vssl.data.transforms.colour`); gamma, blur and solarize stay separate ops.

Randomness comes from the **global torch RNG** (one ``torch.rand`` draw per call): seed with
``torch.manual_seed`` for reproducibility; the datasets seed it per sample inside
``torch.random.fork_rng``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torchvision.transforms.v2 import functional as F

from .blur import blur_clips
from .colour import (
    HUE,
    JITTER_P,
    JITTER_STRENGTH,
    apply_colour,
    clamp_normalised,
    colour_affine,
    colour_constants,
    solarize,
)
from .geometry import (
    crop_thetas,
    cut_region,
    random_resized_crop_box,
    resample,
    resize_size,
    short_side_crop_box,
)
from .params import (
    NUM_CLIP_UNIFORMS,
    U_ANGLE,
    U_B,
    U_BLUR_ON,
    U_FLIP,
    U_GAMMA,
    U_GAMMA_ON,
    U_GRAY,
    U_HUE,
    U_JITTER_ON,
    U_S,
    U_SIGMA,
    U_SOLARIZE,
    ClipParams,
    per_clip,
    pick,
    uniform,
)

#: The per-clip probabilities a view of :class:`FusedClipTransform` may set.
VIEW_PROBABILITIES = ("flip_p", "jitter_p", "grayscale_p", "gamma_p", "blur_p", "solarize_p")


class FusedClipTransform:
    """One training augmentation: fused geometry, fused colour, optional CVRL extras.

    Args:
        image_size: output side ``S``.
        crop: ``"short_side"`` (shortest side to ``resize_size(S)``, random ``S`` crop) or
            ``"random_resized"`` (``RandomResizedCrop`` with ``crop_scale`` / ``crop_ratio``).
        flip_p: probability of the horizontal flip.
        rotation_degrees: rotation angle uniform in ``[-d, d]`` (0: none).
        jitter_p: probability of the colour jitter (brightness, contrast, saturation factors in
            ``[max(1 - s, 0), 1 + s]`` for ``jitter_strength`` ``s`` (one value, or one each for
            brightness, contrast, saturation; default 0.4: ``[0.6, 1.4]``), then a hue shift in
            ``[-hue, hue]`` of a turn (default 0.1).
        grayscale_p / gamma_p / blur_p / solarize_p: CVRL's extra steps (0: never).
        views: per-view probabilities for the clips of one sample: clip ``k`` of a sample uses
            ``views[k]`` (a mapping of some of :data:`VIEW_PROBABILITIES` to values) over the
            arguments above; clips past the last view, and single clips, use the arguments.
            CVRL's asymmetric pair: blur always on its first view, with p=0.1 on the second,
            solarize only on the second (:meth:`transform_clips`, and
            :class:`~hf_vssl.data.batch_augment.BatchAugment` on ``(B, N, ...)`` batches).
        per_sample_params: draw the flip, rotation and colour once per *sample* and share them
            among its clips (:meth:`transform_clips`, and :class:`~hf_vssl.data.batch_augment.BatchAugment`
            on ``(B, N, ...)`` batches); crops stay per clip. VCOP's tuples: the original crops
            each clip on its own, and the study's flip, rotation and jitter must not differ between
            the clips of a tuple, or left/right and colour continuity would give away nothing of
            the order but scramble it.

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
        jitter_p: float = JITTER_P,
        grayscale_p: float = 0.0,
        gamma_p: float = 0.0,
        gamma_range: tuple[float, float] = (2 / 3, 3 / 2),
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize_p: float = 0.0,
        solarize_threshold: float = 0.5,
        per_sample_params: bool = False,
        jitter_strength: float | tuple[float, float, float] = JITTER_STRENGTH,
        hue: float = HUE,
        views: Sequence[Mapping[str, float]] = (),
    ):
        if crop not in ("short_side", "random_resized"):
            raise ValueError(f"crop must be 'short_side' or 'random_resized', got {crop!r}")
        unknown = sorted({key for view in views for key in view} - set(VIEW_PROBABILITIES))
        if unknown:
            raise ValueError(f"views may set {', '.join(VIEW_PROBABILITIES)}; got {', '.join(unknown)}")
        self.image_size, self.crop = image_size, crop
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.flip_p, self.rotation_degrees, self.jitter_p = flip_p, float(rotation_degrees), jitter_p
        self.grayscale_p, self.gamma_p, self.blur_p = grayscale_p, gamma_p, blur_p
        self.solarize_p, self.solarize_threshold = solarize_p, solarize_threshold
        self.gamma_range, self.blur_sigma = gamma_range, blur_sigma
        self.blur_kernel = max(3, image_size // 10) | 1  # ~10% of the image, odd
        self.per_sample_params = bool(per_sample_params)
        strength = (
            (jitter_strength,) * 3 if isinstance(jitter_strength, (int, float)) else tuple(jitter_strength)
        )
        if len(strength) != 3 or min(strength) < 0:
            raise ValueError(f"jitter_strength must be >= 0 or 3 such values, got {jitter_strength!r}")
        self.jitter_strength, self.hue = tuple(float(v) for v in strength), float(hue)
        self.views = tuple(dict(view) for view in views)

    # -- the crop (drawn where the frames are: per clip, on the CPU) --------------------------

    def crop_box(self, height: int, width: int, u: Sequence[float]) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of the clip's crop in ``height x width`` frames, from uniforms ``u``
        (``short_side``: 2, ``random_resized``: 40)."""
        if self.crop == "short_side":
            side = short_side_crop_box(height, width, self.image_size, resize_size(self.image_size))
            return pick(u[0], height - side + 1), pick(u[1], width - side + 1), side, side
        return random_resized_crop_box(
            height, width, self.crop_scale, self.crop_ratio, u[: self._CROP_UNIFORMS]
        )

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
        region_top, region_left = round(top + (h - region_h) / 2), round(left + (w - region_w) / 2)
        region = cut_region(video, region_top, region_left, region_h, region_w)
        if (region_h, region_w) != (out, out):
            region = F.resize(region, [out, out], antialias=True)
        return region

    # -- per-clip parameters and the part after the geometry (shared with BatchAugment) -------

    def _probability(self, name: str, view: torch.Tensor | None, like: torch.Tensor) -> float | torch.Tensor:
        """``name``'s probability: the argument, or per clip from :attr:`views` (``view``: each
        clip's position in its sample, ``(B,)``)."""
        base = getattr(self, name)
        if view is None or not self.views:
            return base
        table = like.new_tensor([v.get(name, base) for v in self.views] + [base])
        return table[view.clamp(max=len(self.views))]

    def clip_params(self, u: torch.Tensor, view: torch.Tensor | None = None) -> ClipParams:
        """Parameters of ``B`` clips from uniforms ``u`` ``(B, NUM_CLIP_UNIFORMS)`` (any device);
        ``view`` ``(B,)`` gives each clip's position in its sample where :attr:`views` differ."""
        log_low, log_high = math.log(self.gamma_range[0]), math.log(self.gamma_range[1])
        low = u.new_tensor([max(1 - v, 0.0) for v in self.jitter_strength])
        high = u.new_tensor([1 + v for v in self.jitter_strength])

        def p(name: str) -> float | torch.Tensor:
            return self._probability(name, view, u)

        return ClipParams(
            flip=u[:, U_FLIP] < p("flip_p"),
            angle=uniform(u[:, U_ANGLE], -self.rotation_degrees, self.rotation_degrees),
            jitter=u[:, U_JITTER_ON] < p("jitter_p"),
            factors=uniform(u[:, U_B : U_S + 1], low, high),
            hue=2 * math.pi * uniform(u[:, U_HUE], -self.hue, self.hue),
            gray=u[:, U_GRAY] < p("grayscale_p"),
            gamma_on=u[:, U_GAMMA_ON] < p("gamma_p"),
            gamma=torch.exp(uniform(u[:, U_GAMMA], log_low, log_high)),
            blur=u[:, U_BLUR_ON] < p("blur_p"),
            sigma=uniform(u[:, U_SIGMA], *self.blur_sigma),
            solarize=u[:, U_SOLARIZE] < p("solarize_p"),
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
        k = colour_constants(params.factors.device, params.factors.dtype)
        pivot = clips.mean(dim=(1, 3, 4)) / 255  # contrast's pivot: each clip's mean colour, once
        matrix, offset = colour_affine(pivot, params)  # on values in [0, 1]
        nonlinear = params.gamma_on | params.solarize  # needs values in [0, 1]: normalise after
        std = k["std"].view(1, 3, 1)
        folded = (matrix / (255 * std), (offset - k["mean"]) / k["std"])
        keep = nonlinear.view(-1, 1, 1)
        matrix = torch.where(keep, matrix / 255, folded[0])
        offset = torch.where(keep.view(-1, 1), offset, folded[1])
        clips = apply_colour(clips, matrix, offset)
        clips = per_clip(clips, params.jitter & ~nonlinear, params, clamp_normalised)
        clips = per_clip(clips, nonlinear, params, self._nonlinear)
        # The blur's weights sum to 1: it commutes with the per-channel normalisation.
        return per_clip(clips, params.blur & ~nonlinear, params, self._blur)

    def _blur(self, clips: torch.Tensor, params: ClipParams) -> torch.Tensor:
        return blur_clips(clips, self.blur_kernel, params.sigma)

    def _nonlinear(self, clips: torch.Tensor, params: ClipParams) -> torch.Tensor:
        """Clamp to [0, 1], gamma, blur, solarize (each where drawn), normalise."""
        clips = clips.clamp(0.0, 1.0)
        # x ** gamma as exp(gamma log x): 3x faster than pow on CPU, 0 stays 0.
        clips = per_clip(
            clips,
            params.gamma_on,
            params,
            lambda x, p: x.log().mul_(p.gamma.to(x.dtype).view(-1, 1, 1, 1, 1)).exp_(),
        )
        clips = per_clip(clips, params.blur, params, self._blur)
        clips = per_clip(clips, params.solarize, params, lambda x, p: solarize(x, self.solarize_threshold))
        k = colour_constants(clips.device, clips.dtype)
        matrix = torch.diag(1 / k["std"]).expand(clips.shape[0], 3, 3)
        return apply_colour(clips, matrix, (-k["mean"] / k["std"]).expand(clips.shape[0], 3))

    def apply(self, video: torch.Tensor, box: Sequence[float], params: ClipParams) -> torch.Tensor:
        """One uint8 ``(T, 3, H, W)`` clip, its crop ``box`` ``(top, left, h, w)`` and its
        :class:`ClipParams` (one row) -> the normalised float32 ``(T, 3, S, S)`` clip."""
        boxes = torch.tensor([list(box)], dtype=params.factors.dtype)
        theta = crop_thetas(boxes, params.flip, params.angle)[0].tolist()
        clip = resample(video, theta, self.image_size, self.padding_mode)
        return self.finish(clip.unsqueeze(0), params)[0]

    def _draw(
        self, video: torch.Tensor, view: int | None = None
    ) -> tuple[tuple[int, int, int, int], ClipParams]:
        """One call's draw: the crop box and the clip's parameters (one ``torch.rand``); ``view``:
        the clip's position in its sample (:attr:`views`)."""
        u = torch.rand(self._NUM_UNIFORMS, dtype=torch.float64)
        box = self.crop_box(video.shape[-2], video.shape[-1], u[: self._CROP_UNIFORMS].tolist())
        start = self._CROP_UNIFORMS
        views = None if view is None else torch.tensor([view])
        return box, self.clip_params(u[start : start + NUM_CLIP_UNIFORMS].view(1, -1), views)

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        return self.apply(video, *self._draw(video))

    @property
    def per_sample(self) -> bool:
        """Whether the clips of a sample are not independent calls (shared or per-view parameters)."""
        return self.per_sample_params or bool(self.views)

    def transform_clips(self, videos: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The clips of one sample: as many calls, except that with ``per_sample_params`` every clip
        takes the first clip's flip, rotation and colour (each still draws, and uses, its own crop),
        and that clip ``k`` draws with the probabilities of ``views[k]``."""
        shared = None
        out = []
        for k, video in enumerate(videos):
            box, params = self._draw(video, k)
            if self.per_sample_params:
                shared = params if shared is None else shared
                params = shared
            out.append(self.apply(video, box, params))
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, crop={self.crop!r}, "
            f"rotation_degrees={self.rotation_degrees})"
        )
