"""Clip plans: which frames of one video a sample needs, and decoding them in one pass.

A :class:`ClipSampler` turns a video length into a :class:`ClipPlan` (frame indices per clip
plus whatever the loss needs to know, e.g. a sampled playback rate). Pretext tasks provide
their own samplers; :class:`UniformClipSampler` covers the common cases (random training clips,
VCOP-style consecutive clips, test-time multi-clip). :func:`decode_plan` decodes the union of
a plan's frames once, so a two-clip plan costs about one clip's decode when the clips are close.

Short videos follow an explicit policy. Inside :class:`UniformClipSampler` (``short_video``):

- ``"loop"``: indices past the end wrap around to the start (``i % video_len``);
- ``"pad"``: indices past the end repeat the last frame;
- ``"error"``: raise :class:`ClipTooLongError` naming the needed and available frame counts.

For any sampler (a pretext task's raises :class:`ClipTooLongError` for a video it cannot
plan), :func:`sample_clips` applies a per-video policy (:data:`SHORT_VIDEO_ACTIONS`):
``"loop"`` / ``"pad"`` plan the clips for the length the sampler needs and fold the indices
back into the video as above; ``"skip"`` and ``"refuse"`` raise, and the datasets skip the
video or stop the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torchcodec.decoders import VideoDecoder

from .decoding import VideoDecodeError, decode_frames, num_frames, open_video

SHORT_VIDEO_POLICIES = ("loop", "pad", "error")
#: What a dataset does with a video its sampler finds too short, decided per video.
SHORT_VIDEO_ACTIONS = ("skip", "loop", "pad", "refuse")
SAMPLING_MODES = ("random", "center", "uniform")


class ClipTooLongError(ValueError):
    """A clip needs more frames than the video (segment) has, under ``short_video="error"``."""

    def __init__(self, needed: int, available: int, source: str | None = None):
        self.needed, self.available, self.source = int(needed), int(available), source
        where = f"{source}: " if source else ""
        super().__init__(
            f"{where}the clip needs {self.needed} frames but the video has only {self.available} "
            "(use short_video='loop' or 'pad' to accept short videos)"
        )

    def __reduce__(self):
        return (type(self), (self.needed, self.available, self.source))


@dataclass
class ClipPlan:
    """What to read from ONE video.

    Attributes:
        indices: one int64 array of frame indices per clip, in the frame order the model sees.
        info: what the sampler decided that the loss needs (e.g. ``{"rate": 2}``); JSON-able
            scalars, stacked into tensors by :func:`hf_vssl.data.datasets.collate_clips`.
    """

    indices: list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_clips(self) -> int:
        return len(self.indices)

    def union(self) -> np.ndarray:
        """Sorted distinct frame indices over all clips."""
        return np.unique(np.concatenate(self.indices)) if self.indices else np.empty(0, np.int64)


@runtime_checkable
class ClipSampler(Protocol):
    """Anything that plans clips for a video of ``num_video_frames`` frames."""

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan: ...


def clip_indices(
    start: int, num_frames: int, stride: int, video_len: int, short_video: str = "loop"
) -> np.ndarray:
    """Indices ``start, start + stride, ...`` (``num_frames`` of them) inside a video of ``video_len``.

    Frames past the end follow ``short_video`` (see the module docstring). ``start`` must be
    inside the video.
    """
    if short_video not in SHORT_VIDEO_POLICIES:
        raise ValueError(f"short_video must be one of {SHORT_VIDEO_POLICIES}, got {short_video!r}")
    if video_len < 1:
        raise ClipTooLongError((num_frames - 1) * stride + 1, video_len)
    if not 0 <= start < video_len:
        raise ValueError(f"clip start {start} is outside the video [0, {video_len})")
    raw = start + np.arange(num_frames, dtype=np.int64) * stride
    if raw[-1] < video_len:
        return raw
    if short_video == "error":
        raise ClipTooLongError(int(raw[-1]) + 1, video_len)
    if short_video == "loop":
        return raw % video_len
    return np.minimum(raw, video_len - 1)


class UniformClipSampler:
    """``num_clips`` clips of ``num_frames`` frames taken every ``stride`` frames.

    Args:
        num_frames: frames per clip.
        stride: step between frames of a clip (a 16-frame clip at stride 2 spans 31 frames).
        num_clips: clips per video.
        interval: frames skipped between the end of one clip and the start of the next, which
            makes the clips one consecutive block (VCOP: 3 clips of 16 with interval 8); None
            places the clips independently.
        jitter: each clip start moves by a random offset in ``[-jitter, jitter]`` (kept inside
            the video).
        mode: ``"random"`` (training), ``"center"`` (the middle of the video), or ``"uniform"``
            (clips centred on ``num_clips`` equal segments: test-time multi-clip; independent
            clips only).
        short_video: ``"loop"``, ``"pad"`` or ``"error"`` for videos shorter than
            :meth:`min_frames_needed`.
    """

    def __init__(
        self,
        num_frames: int = 16,
        stride: int = 1,
        num_clips: int = 1,
        interval: int | None = None,
        jitter: int = 0,
        mode: str = "random",
        short_video: str = "loop",
    ):
        for label, value, low in (
            ("num_frames", num_frames, 1),
            ("stride", stride, 1),
            ("num_clips", num_clips, 1),
            ("jitter", jitter, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{label} must be an int >= {low}, got {value!r}")
        if interval is not None and (not isinstance(interval, (int, np.integer)) or interval < 0):
            raise ValueError(f"interval must be None or an int >= 0, got {interval!r}")
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}")
        if mode == "uniform" and interval is not None:
            raise ValueError("mode='uniform' spreads independent clips; it cannot be combined with interval")
        if short_video not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"short_video must be one of {SHORT_VIDEO_POLICIES}, got {short_video!r}")
        self.num_frames, self.stride, self.num_clips = int(num_frames), int(stride), int(num_clips)
        self.interval = None if interval is None else int(interval)
        self.jitter, self.mode, self.short_video = int(jitter), mode, short_video

    @property
    def clip_span(self) -> int:
        """Frames covered by one clip, first to last inclusive."""
        return (self.num_frames - 1) * self.stride + 1

    def min_frames_needed(self) -> int:
        """Shortest video that needs no short-video policy (a whole consecutive block, or one clip)."""
        if self.interval is None:
            return self.clip_span
        return self.num_clips * self.clip_span + (self.num_clips - 1) * self.interval

    def _place(self, room: int, rng: np.random.Generator) -> int:
        """A block start in ``[0, room]`` according to ``mode`` (room < 0 means it does not fit)."""
        if room <= 0:
            return 0
        if self.mode == "random":
            return int(rng.integers(0, room + 1))
        return room // 2

    def _starts(self, video_len: int, rng: np.random.Generator) -> np.ndarray:
        span = self.clip_span
        if self.interval is not None:
            first = self._place(video_len - self.min_frames_needed(), rng)
            starts = first + np.arange(self.num_clips, dtype=np.int64) * (span + self.interval)
        elif self.mode == "uniform":
            # Centre clip k on the middle of segment k of num_clips equal segments.
            centers = (np.arange(self.num_clips) + 0.5) * video_len / self.num_clips
            starts = np.clip(np.round(centers - span / 2), 0, max(video_len - span, 0)).astype(np.int64)
        else:
            starts = np.array(
                [self._place(video_len - span, rng) for _ in range(self.num_clips)], dtype=np.int64
            )
        if self.jitter:
            shift = rng.integers(-self.jitter, self.jitter + 1, size=self.num_clips)
            starts = np.clip(starts + shift, 0, max(video_len - span, 0))
        # A consecutive block longer than a short video starts clips past its end: wrap (loop)
        # or clamp (pad) the starts too; clip_indices handles the frames inside each clip.
        if self.short_video == "loop":
            return starts % video_len
        return np.minimum(starts, video_len - 1)

    def plan(self, num_video_frames: int, rng: np.random.Generator) -> ClipPlan:
        video_len = int(num_video_frames)
        if self.short_video == "error" and video_len < self.min_frames_needed():
            raise ClipTooLongError(self.min_frames_needed(), video_len)
        if video_len < 1:
            raise ClipTooLongError(self.min_frames_needed(), video_len)
        starts = self._starts(video_len, rng)
        return ClipPlan(
            indices=[
                clip_indices(int(s), self.num_frames, self.stride, video_len, self.short_video)
                for s in starts
            ]
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_frames={self.num_frames}, stride={self.stride}, num_clips={self.num_clips}, "
            f"interval={self.interval}, jitter={self.jitter}, mode={self.mode!r}, short_video={self.short_video!r})"
        )


def segment_bounds(
    total_frames: int, start: int | None = 0, end: int | None = None, source: str | None = None
) -> tuple[int, int]:
    """``(start, end)`` of a record's segment clamped to the file; ``end`` is exclusive.

    Annotated ends past the last frame are clamped (annotations are often off by one). A segment
    that is empty or starts past the end raises :class:`~hf_vssl.data.decoding.VideoDecodeError`
    naming the file, so datasets count it as a bad video.
    """
    begin = int(start or 0)
    stop = total_frames if end is None else min(int(end), total_frames)
    if begin < 0 or begin >= stop:
        raise VideoDecodeError(
            source or "<video>",
            f"annotated segment [{start}, {end}) is empty or outside the video's {total_frames} frames",
        )
    return begin, stop


def decode_plan(
    source: Any,
    plan: ClipPlan,
    start: int | None = 0,
    end: int | None = None,
    name: str | None = None,
) -> list[torch.Tensor]:
    """Decode the clips of ``plan`` -> one uint8 ``(T, C, H, W)`` tensor per clip.

    ``source`` is a path, the bytes of a video file, or an open ``VideoDecoder``. Plan indices
    are relative to the segment ``[start, end)`` of the file (a record's annotated segment;
    ``end`` exclusive, clamped to the file). The union of all clips' frames is decoded once.
    """
    decoder = source if isinstance(source, VideoDecoder) else open_video(source, name=name)
    label = name if name is not None else getattr(decoder, "_hf_vssl_name", None)
    begin, stop = segment_bounds(num_frames(decoder), start, end, label)
    if not plan.indices:
        raise ValueError(f"{label or '<video>'}: the clip plan has no clips")
    flat = np.concatenate([np.asarray(ix, dtype=np.int64).reshape(-1) for ix in plan.indices])
    if flat.size and (flat.min() < 0 or flat.max() >= stop - begin):
        raise IndexError(
            f"{label or '<video>'}: plan frame indices must lie in the segment's [0, {stop - begin}), "
            f"got {flat.min()}..{flat.max()}"
        )
    frames = decode_frames(decoder, flat + begin, name=label)
    sizes = [len(ix) for ix in plan.indices]
    return list(torch.split(frames, sizes)) if len(sizes) > 1 else [frames]


def fit_plan(
    sampler: ClipSampler, video_len: int, rng: np.random.Generator, short_video: str = "skip"
) -> ClipPlan:
    """``sampler.plan(video_len, rng)``, with a too-short video handled by ``short_video``.

    ``"loop"`` / ``"pad"``: the sampler plans for the length it needs and every index past the
    video's end wraps around (loop) or repeats the last frame (pad); ``"skip"`` / ``"refuse"``:
    the :class:`ClipTooLongError` propagates (the dataset skips the video or stops).
    """
    if short_video not in SHORT_VIDEO_ACTIONS:
        raise ValueError(f"short_video must be one of {SHORT_VIDEO_ACTIONS}, got {short_video!r}")
    try:
        return sampler.plan(video_len, rng)
    except ClipTooLongError as error:
        if short_video not in ("loop", "pad") or video_len < 1:
            raise
        plan = sampler.plan(max(int(error.needed), video_len), rng)
    fold = (
        (lambda ix: ix % video_len) if short_video == "loop" else (lambda ix: np.minimum(ix, video_len - 1))
    )
    return ClipPlan([fold(np.asarray(ix, dtype=np.int64)) for ix in plan.indices], dict(plan.info))


def sample_clips(
    source: Any,
    sampler: ClipSampler,
    rng: np.random.Generator,
    start: int | None = 0,
    end: int | None = None,
    name: str | None = None,
    short_video: str = "skip",
) -> tuple[list[torch.Tensor], ClipPlan]:
    """Open ``source``, plan clips for its segment with ``sampler`` (:func:`fit_plan` with
    ``short_video``) and decode them.

    The whole per-video read path in one call: returns ``(clips, plan)``.
    """
    decoder = open_video(source, name=name)
    label = name if name is not None else getattr(decoder, "_hf_vssl_name", None)
    begin, stop = segment_bounds(num_frames(decoder), start, end, label)
    try:
        plan = fit_plan(sampler, stop - begin, rng, short_video)
    except ClipTooLongError as error:
        raise ClipTooLongError(error.needed, error.available, label) from None
    return decode_plan(decoder, plan, begin, stop, name=label), plan


__all__ = [
    "SAMPLING_MODES",
    "SHORT_VIDEO_ACTIONS",
    "SHORT_VIDEO_POLICIES",
    "ClipPlan",
    "ClipSampler",
    "ClipTooLongError",
    "UniformClipSampler",
    "clip_indices",
    "decode_plan",
    "fit_plan",
    "sample_clips",
    "segment_bounds",
]
