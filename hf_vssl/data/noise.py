"""Input perturbations for the robustness study: pixel noises and temporal perturbations.

The four pixel noises follow the video robustness benchmark (docs/study_settings.md#noise): frames are
scaled to [0, 1], every frame (indeed every value) gets fresh noise, the result is clipped to
[0, 1] and rounded back to uint8. Severity 1..5 picks the constant ``c`` from the preset's table;
severity 0 means "clean" and returns an unchanged copy.

The temporal perturbations act on the frame axis and keep the clip length ``T``:

- ``sampling_rate``: rate ``r = 2 ** severity`` (2, 4, 8, 16, 32). Only every r-th frame is kept
  and each kept frame is repeated r times (the clip plays at 1/r of its frame rate, same duration).
  When ``r >= T`` the clip shows its first frame throughout.
- ``reversal``: the clip plays backwards. The benchmark has a single level, so every severity
  1..5 reverses the whole clip.
- ``jumbled``: the clip is split into ``min(2 ** severity, T)`` contiguous segments (2, 4, 8, 16,
  32) that are shuffled; the order is never the identity.
- ``frozen``: a run of ``round(T * fraction)`` frames, ``fraction`` = 0.1, 0.2, 0.3, 0.4, 0.5 for
  severity 1..5 (at least one frame, at most ``T - 1``), starting at a random frame, shows that
  frame only.

Randomness comes from ``generator`` (a ``torch.Generator``) or the global torch RNG when it is
None, so a fixed generator gives identical output. :class:`NoiseTransform` keys the noise by
video id, so noisy datasets look the same in every run and worker: a pixel noise draws each
frame's noise from a generator of its own, keyed by the frame's position in the video as decoded,
so frame ``f`` gets the same noise whichever clip reads it, and a stored noisy copy of the whole
video (``hf_vssl.data.shards.write_noisy_split``) equals noise added to sampled clips on the fly.
A temporal perturbation acts on the sampled clip (one draw per clip), so it has no stored form.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Iterable, Sequence

import torch

PIXEL_NOISES = ("gaussian", "shot", "impulse", "speckle")
TEMPORAL_PERTURBATIONS = ("sampling_rate", "reversal", "jumbled", "frozen")
NOISE_KINDS = PIXEL_NOISES + TEMPORAL_PERTURBATIONS

#: Constant ``c`` per severity 1..5 for each preset (docs/study_settings.md#noise).
NOISE_PRESETS: dict[str, dict[str, tuple[float, ...]]] = {
    "video-p": {
        "gaussian": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot": (250, 100, 50, 30, 15),
        "impulse": (0.03, 0.06, 0.09, 0.17, 0.27),
        "speckle": (0.15, 0.20, 0.25, 0.30, 0.35),
    },
    "imagenet-c": {
        "gaussian": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot": (60, 25, 12, 5, 3),
        "impulse": (0.03, 0.06, 0.09, 0.17, 0.27),
        "speckle": (0.15, 0.20, 0.35, 0.45, 0.60),
    },
}
MAX_SEVERITY = 5
_FROZEN_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_args(video: torch.Tensor, kind: str, severity: int, preset: str) -> None:
    if not isinstance(video, torch.Tensor) or video.dtype != torch.uint8 or video.ndim != 4:
        got = (
            f"{video.dtype} tensor of shape {tuple(video.shape)}"
            if isinstance(video, torch.Tensor)
            else type(video).__name__
        )
        raise ValueError(f"apply_noise expects a uint8 video tensor (T, C, H, W), got {got}")
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; valid kinds: {', '.join(NOISE_KINDS)}")
    if preset not in NOISE_PRESETS:
        raise ValueError(f"unknown noise preset {preset!r}; valid presets: {', '.join(NOISE_PRESETS)}")
    if not _is_int(severity) or not 0 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity must be an int in 0..{MAX_SEVERITY}, got {severity!r}")


def noise_constant(kind: str, severity: int, preset: str = "video-p") -> float:
    """The constant ``c`` that ``kind`` uses at ``severity`` (1..5) in ``preset``."""
    if kind not in PIXEL_NOISES:
        raise ValueError(f"{kind!r} has no noise constant; pixel noises: {', '.join(PIXEL_NOISES)}")
    if preset not in NOISE_PRESETS:
        raise ValueError(f"unknown noise preset {preset!r}; valid presets: {', '.join(NOISE_PRESETS)}")
    if not _is_int(severity) or not 1 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity must be an int in 1..{MAX_SEVERITY}, got {severity!r}")
    return float(NOISE_PRESETS[preset][kind][severity - 1])


def _pixel_noise(video: torch.Tensor, kind: str, c: float, generator: torch.Generator | None) -> torch.Tensor:
    if kind == "impulse":
        # Per value, like skimage's random_noise(mode="s&p", amount=c): one uniform draw u decides
        # salt (u < c/2) or pepper (c/2 <= u < c). Untouched values round-trip [0,1] exactly, so
        # this is done in uint8 directly.
        u = torch.rand(video.shape, generator=generator)
        out = video.masked_fill(u < c, 0)
        return out.masked_fill_(u < c / 2, 255)
    x = video.to(torch.float32).div_(255.0)
    if kind == "gaussian":
        x.add_(torch.randn(x.shape, generator=generator).mul_(c))
    elif kind == "speckle":
        x.addcmul_(x, torch.randn(x.shape, generator=generator).mul_(c))
    else:  # shot; torch.poisson is the slow one (~50 ns a value on one core)
        x = torch.poisson(x.mul_(c), generator=generator).div_(c)
    return x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def _temporal(
    video: torch.Tensor, kind: str, severity: int, generator: torch.Generator | None
) -> torch.Tensor:
    t = video.shape[0]
    if kind == "reversal":
        index = torch.arange(t - 1, -1, -1)
    elif kind == "sampling_rate":
        rate = 2**severity
        index = torch.arange(t) // rate * rate
    elif kind == "jumbled":
        segments = torch.arange(t).tensor_split(min(2**severity, t))
        order = torch.randperm(len(segments), generator=generator)
        if len(segments) > 1 and torch.equal(order, torch.arange(len(segments))):
            order = order.roll(1)  # the identity would leave the clip unperturbed
        index = torch.cat([segments[i] for i in order.tolist()])
    else:  # frozen
        index = torch.arange(t)
        if t > 1:
            length = min(max(1, round(t * _FROZEN_FRACTIONS[severity - 1])), t - 1)
            start = int(torch.randint(0, t - length, (1,), generator=generator))
            index[start + 1 : start + 1 + length] = start
    return video.index_select(0, index)


def apply_noise(
    video_uint8_TCHW: torch.Tensor,
    kind: str,
    severity: int,
    preset: str = "video-p",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Perturb a uint8 clip ``(T, C, H, W)``; returns a new uint8 tensor of the same shape.

    ``kind`` is one of :data:`NOISE_KINDS`, ``severity`` an int in 0..5 (0 returns a copy),
    ``preset`` a key of :data:`NOISE_PRESETS` (it only matters for shot and speckle noise).
    Noise is drawn from ``generator``, or from the global torch RNG when it is None.
    """
    _check_args(video_uint8_TCHW, kind, severity, preset)
    severity = int(severity)  # numpy ints are accepted too
    if severity == 0:
        return video_uint8_TCHW.clone()
    if kind in TEMPORAL_PERTURBATIONS:
        return _temporal(video_uint8_TCHW, kind, severity, generator)
    return _pixel_noise(video_uint8_TCHW, kind, noise_constant(kind, severity, preset), generator)


def relative_decrease(clean: float, noisy: float) -> float:
    """``(A_clean - A_noisy) / A_clean``: the fraction of clean accuracy lost to the noise."""
    clean, noisy = float(clean), float(noisy)
    if clean == 0 or not math.isfinite(clean):
        raise ValueError(f"relative decrease needs a finite, non-zero clean score, got {clean}")
    return (clean - noisy) / clean


def relative_robustness(clean: float, noisy: float) -> float:
    """``1 - relative_decrease(clean, noisy)``, i.e. ``A_noisy / A_clean``."""
    return 1.0 - relative_decrease(clean, noisy)


def video_seed(seed: int, key: str | int) -> int:
    """A generator seed from a run seed and a video id, stable across runs and processes.

    ``zlib.crc32`` of ``"{seed}/{key}"`` (Python's ``hash`` of a str changes with every
    process). 32 bits on purpose: torch's CPU generator keeps only the low 32 bits of a seed.
    """
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return zlib.crc32(f"{seed}/{key}".encode())


class NoiseTransform:
    """Picklable ``(clip, key[, frame_indices]) -> noisy clip`` for building noisy datasets on the fly.

    The noise is seeded from ``(seed, key)`` where ``key`` is the video id, so one video gets the
    same noise in every run, epoch and DataLoader worker, whatever the order. Pixel noises go
    further: frame ``f`` of the video (``frame_indices``: each row's position in the video as
    decoded; default ``0..T-1``, i.e. ``clip`` is the whole video) draws from its own generator
    keyed by ``(seed, key, f)``. Temporal perturbations draw once per clip from ``(seed, key)``.
    """

    def __init__(self, kind: str, severity: int, preset: str = "video-p", seed: int = 0):
        # Validate eagerly (on a dummy clip) so a bad config fails at build time, not in a worker.
        _check_args(torch.zeros(1, 1, 1, 1, dtype=torch.uint8), kind, severity, preset)
        video_seed(seed, "")
        self.kind, self.severity, self.preset, self.seed = kind, int(severity), preset, int(seed)

    @property
    def per_frame(self) -> bool:
        """Whether the noise is a function of each frame of the video (pixel noises), not of a clip."""
        return self.kind in PIXEL_NOISES and self.severity > 0

    def __call__(
        self, clip: torch.Tensor, key: str | int, frame_indices: Iterable[int] | None = None
    ) -> torch.Tensor:
        if not self.per_frame:
            generator = torch.Generator().manual_seed(video_seed(self.seed, key))
            return apply_noise(clip, self.kind, self.severity, self.preset, generator)
        _check_args(clip, self.kind, self.severity, self.preset)
        positions = range(clip.shape[0]) if frame_indices is None else [int(f) for f in frame_indices]
        if len(positions) != clip.shape[0]:
            raise ValueError(f"{len(positions)} frame indices for a clip of {clip.shape[0]} frames")
        c = noise_constant(self.kind, self.severity, self.preset)
        out = torch.empty_like(clip)
        # One generator per frame (each iteration a whole-frame vectorised draw): the noise of a
        # frame must not depend on which clip, or which stored copy of the video, reads it.
        for row, position in enumerate(positions):
            generator = torch.Generator().manual_seed(video_seed(self.seed, f"{key}#{position}"))
            out[row : row + 1] = _pixel_noise(clip[row : row + 1], self.kind, c, generator)
        return out

    def on_clips(
        self, clips: Sequence[torch.Tensor], video_id: str, frame_indices: Sequence[Iterable[int]]
    ) -> list[torch.Tensor]:
        """The noisy clips of one sample; ``frame_indices[k]``: clip ``k``'s frames in the video.

        Pixel noises: per frame of the video (as :meth:`__call__`). Temporal perturbations: clip 0
        keyed by the bare video id (a one-clip sample matches ``self(clip, video_id)``), clip ``k``
        by ``"{video_id}/clip{k}"``.
        """
        if self.per_frame:
            return [self(clip, video_id, ix) for clip, ix in zip(clips, frame_indices, strict=True)]
        return [self(clip, video_id if k == 0 else f"{video_id}/clip{k}") for k, clip in enumerate(clips)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, severity={self.severity}, "
            f"preset={self.preset!r}, seed={self.seed})"
        )
