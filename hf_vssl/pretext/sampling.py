"""Clip plans: which frames of one video a pretext task reads, and the labels the sampler decided.

The contract shared with the data layer (``hf_vssl.data.clips``): a :class:`ClipSampler` turns
the frame count of one video and a numpy generator into a :class:`ClipPlan`, i.e. one int64
frame-index array per clip, in the order the model sees the clips, plus ``info`` (JSON-able
labels the loss needs, e.g. VCOP's permutation class). The dataset decodes the union of the
frames once, transforms every clip independently and ``collate_clips`` stacks ``info`` into
tensors of shape ``(B, ...)``.

The contract types come from ``hf_vssl.data.clips``; the per-task samplers live with their task
(``hf_vssl.pretext.<task>``); this module holds the index arithmetic they share. Every sampler
here also has ``min_frames_needed()``.
"""

from __future__ import annotations

import numpy as np

from hf_vssl.data.clips import ClipPlan, ClipSampler, ClipTooLongError

__all__ = [
    "ClipPlan",
    "ClipSampler",
    "VideoTooShortError",
    "check_length",
    "clip_span",
    "random_clip_indices",
    "strided_indices",
]


class VideoTooShortError(ClipTooLongError):
    """A video has fewer frames than a pretext sampler needs.

    A :class:`~hf_vssl.data.clips.ClipTooLongError`, so the data layer treats it like any clip
    that does not fit (``sample_clips`` names the file; datasets may skip the video).
    """

    def __init__(
        self, needed: int, available: int, source: str | None = None, what: str = "this pretext task"
    ):
        super().__init__(needed, available, source)
        self.what = what
        where = f"{source}: " if source else ""
        ValueError.__init__(
            self,
            f"{where}{what} needs videos of at least {self.needed} frames, this one has {self.available}.",
        )

    def __reduce__(self):
        return (type(self), (self.needed, self.available, self.source, self.what))


def clip_span(num_frames: int, stride: int) -> int:
    """Frames of the video covered by a clip of ``num_frames`` frames taken every ``stride`` frames."""
    return (num_frames - 1) * stride + 1


def strided_indices(start: int, num_frames: int, stride: int) -> np.ndarray:
    """``start, start + stride, ...`` as int64 (``num_frames`` values)."""
    return start + np.arange(num_frames, dtype=np.int64) * stride


def check_length(num_video_frames: int, needed: int, what: str) -> None:
    """Raise :class:`VideoTooShortError` when a video cannot hold ``needed`` frames."""
    if num_video_frames < needed:
        raise VideoTooShortError(needed, num_video_frames, what=what)


def random_clip_indices(
    num_video_frames: int, num_frames: int, stride: int, rng: np.random.Generator
) -> np.ndarray:
    """One clip at a uniformly random start; a video shorter than the clip repeats its last frame."""
    span = clip_span(num_frames, stride)
    start = int(rng.integers(0, max(num_video_frames - span, 0) + 1))
    return np.minimum(strided_indices(start, num_frames, stride), num_video_frames - 1)
