"""Torch datasets that turn video records into training samples, and their collate function.

A sample is ``{"clips": [tensor (T, C, H, W), ...], "info": {...}, "label": int,
"video_id": str, "index": int}``: the clips of one video as planned by a
:class:`~hf_vssl.data.clips.ClipSampler`, optionally perturbed by ``noise`` (uint8, before the
transform) and transformed clip by clip.

Determinism: every random choice for sample ``i`` (clip positions, augmentation) comes from
``np.random.default_rng([seed, epoch, i])``, never from a worker's global state, so a sample
is the same whatever the number of DataLoader workers or the order of reads. That is what makes
exactly-resumable training possible. Transforms draw from torch's global RNG, which is seeded
from the sample's generator inside a forked RNG state, so they are covered as long as they use
torch's RNG (``torch.rand``, ``torch.randint``, ...).

Bad videos (:class:`~hf_vssl.data.decoding.VideoDecodeError`,
:class:`~hf_vssl.data.clips.ClipTooLongError`) are logged once with path and reason, counted in
``bad_videos`` and replaced deterministically by the next index. Once at least ``min_seen``
videos were read (or the whole dataset, if smaller), more than ``max_bad_fraction`` bad ones
raise a ``RuntimeError``: a corpus that is mostly broken should stop the run, not train on the
few survivors. Counts are per process (each DataLoader worker keeps its own).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from .clips import ClipSampler, ClipTooLongError, sample_clips
from .decoding import VideoDecodeError
from .records import VideoRecord
from .transforms import transform_sample_clips

logger = logging.getLogger(__name__)

#: Errors that mark a video as unusable (counted and replaced), not a bug in the pipeline.
BAD_VIDEO_ERRORS = (VideoDecodeError, ClipTooLongError)

Transform = Callable[[torch.Tensor], torch.Tensor]
Noise = Callable[[torch.Tensor, str], torch.Tensor]


class BadVideoTracker:
    """Counts videos read and bad ones; warns once per bad video; raises past the tolerance."""

    def __init__(self, max_bad_fraction: float = 0.01, min_seen: int = 100):
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction!r}")
        self.max_bad_fraction = float(max_bad_fraction)
        self.min_seen = max(1, int(min_seen))
        self.seen = 0
        self.bad_videos: list[tuple[str, str]] = []
        self._bad_keys: set[Any] = set()

    def is_known_bad(self, key: Any) -> bool:
        return key in self._bad_keys

    def ok(self) -> None:
        self.seen += 1

    def bad(self, key: Any, path: str, reason: str) -> None:
        self.seen += 1
        if key not in self._bad_keys:
            self._bad_keys.add(key)
            self.bad_videos.append((path, reason))
            logger.warning("skipping bad video %s: %s", path, reason)
        self.check()

    def check(self) -> None:
        if self.seen < self.min_seen:
            return
        fraction = len(self.bad_videos) / self.seen
        if fraction > self.max_bad_fraction:
            listed = "; ".join(f"{path}: {reason}" for path, reason in self.bad_videos[:5])
            more = f" (and {len(self.bad_videos) - 5} more)" if len(self.bad_videos) > 5 else ""
            raise RuntimeError(
                f"{len(self.bad_videos)} of {self.seen} videos read could not be used ({fraction:.1%} > "
                f"max_bad_fraction={self.max_bad_fraction:.1%}): {listed}{more}. Fix or drop them "
                "(build_shards validates and reports bad inputs) or raise max_bad_fraction."
            )


def _reason(error: Exception) -> str:
    return error.reason if isinstance(error, VideoDecodeError) else str(error)


def build_sample(
    source: Any,
    name: str,
    sampler: ClipSampler,
    rng: np.random.Generator,
    *,
    label: int,
    video_id: str,
    index: int,
    start: int | None = None,
    end: int | None = None,
    transform: Transform | None = None,
    noise: Noise | None = None,
) -> dict[str, Any]:
    """Decode, perturb and transform the clips of one video into a sample dict (shared by the
    map-style and the streaming dataset). Raises the errors of :data:`BAD_VIDEO_ERRORS`."""
    clips, plan = sample_clips(source, sampler, rng, start=start, end=end, name=name)
    if noise is not None:
        # Clip 0 uses the bare video id so a one-clip sample matches NoiseTransform(video, id).
        clips = [noise(clip, video_id if k == 0 else f"{video_id}/clip{k}") for k, clip in enumerate(clips)]
    if transform is not None:
        # Seed torch's RNG from the sample's generator, inside a forked state so the worker's
        # global RNG is left as it was: augmentation becomes a function of (seed, epoch, index).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(rng.integers(0, 2**63 - 1)))  # CPU only: 100x cheaper
            clips = transform_sample_clips(transform, clips)
    return {
        "clips": clips,
        "info": dict(plan.info),
        "label": int(label),
        "video_id": str(video_id),
        "index": int(index),
    }


class _EpochMixin:
    """An epoch counter in shared memory, so persistent DataLoader workers see ``set_epoch``."""

    def _init_epoch(self) -> None:
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: samples are a function of ``(seed, epoch, index)``."""
        self._epoch.fill_(int(epoch))


class VideoClipDataset(_EpochMixin, torch.utils.data.Dataset):
    """Map-style dataset over :class:`~hf_vssl.data.records.VideoRecord` s (local video files).

    Args:
        records: the videos; ``record.start``/``record.end`` restrict sampling to a segment.
        sampler: plans the clips of each video (e.g. :class:`~hf_vssl.data.clips.UniformClipSampler`
            or a pretext task's sampler).
        transform: applied to each uint8 ``(T, C, H, W)`` clip (e.g. ``build_transform(...)``).
        noise: ``(clip, key) -> clip`` applied to uint8 clips before ``transform`` (e.g.
            :class:`hf_vssl.data.noise.NoiseTransform`); ``key`` is the video id.
        seed: base seed of the per-sample generators.
        max_bad_fraction / min_seen: tolerance for bad videos (module docstring).

    ``__getitem__(i)`` returns the sample dict; ``index`` is the record actually read (``i``, or
    its replacement when ``i`` is bad).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampler: ClipSampler,
        transform: Transform | None = None,
        noise: Noise | None = None,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        min_seen: int = 100,
    ):
        if len(records) == 0:
            raise ValueError("VideoClipDataset needs at least one record")
        self.records = list(records)
        self.sampler, self.transform, self.noise, self.seed = sampler, transform, noise, int(seed)
        self.tracker = BadVideoTracker(max_bad_fraction, min(min_seen, len(self.records)))
        self._init_epoch()

    @property
    def bad_videos(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of the bad videos met in this process."""
        return self.tracker.bad_videos

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self.records)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} videos")
        i %= n
        epoch = self.epoch
        for attempt in range(n):
            idx = (i + attempt) % n
            if self.tracker.is_known_bad(idx):
                continue
            record = self.records[idx]
            key = [self.seed, epoch, i] if attempt == 0 else [self.seed, epoch, i, attempt]
            try:
                sample = build_sample(
                    record.path,
                    record.path,
                    self.sampler,
                    np.random.default_rng(key),
                    label=record.label,
                    video_id=record.video_id,
                    index=idx,
                    start=record.start,
                    end=record.end,
                    transform=self.transform,
                    noise=self.noise,
                )
            except BAD_VIDEO_ERRORS as error:
                self.tracker.bad(idx, record.path, _reason(error))
                continue
            self.tracker.ok()
            return sample
        raise RuntimeError(f"none of the {n} videos could be read; first problems: {self.bad_videos[:3]}")


def stable_key_seed(key: str) -> int:
    """A 32-bit integer from a string, the same in every process (unlike ``hash``)."""
    return zlib.crc32(str(key).encode("utf-8"))


def collate_clips(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch.

    Returns ``pixel_values`` ``(B, T, C, H, W)`` for one clip per sample or ``(B, N, T, C, H, W)``
    for ``N`` clips, ``labels`` (int64), ``index`` (int64), ``video_ids`` (list of str) and every
    ``info`` field as a tensor of shape ``(B, ...)`` at the top level (e.g. ``batch["rate"]``).
    """
    if not samples:
        raise ValueError("collate_clips got an empty batch")
    num_clips = {len(s["clips"]) for s in samples}
    if len(num_clips) != 1:
        raise ValueError(f"samples in a batch must have the same number of clips, got {sorted(num_clips)}")
    shapes = {tuple(clip.shape) for s in samples for clip in s["clips"]}
    if len(shapes) != 1:
        raise ValueError(
            f"clips in a batch must share one shape, got {sorted(shapes)}; use a transform that resizes/crops "
            "to a fixed size"
        )
    n = num_clips.pop()
    # default_collate stacks straight into shared memory inside DataLoader workers (no extra
    # copy on the way to the main process); one flat stack, then a free view to (B, N, ...).
    pixel_values = default_collate([clip for s in samples for clip in s["clips"]])
    if n > 1:
        pixel_values = pixel_values.view(len(samples), n, *pixel_values.shape[1:])
    batch: dict[str, Any] = {
        "pixel_values": pixel_values,
        "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.int64),
        "video_ids": [s["video_id"] for s in samples],
    }
    keys = list(samples[0]["info"])
    for name in keys:
        if name in batch:
            raise ValueError(f"clip plan info field {name!r} collides with a batch key")
        try:
            values = [s["info"][name] for s in samples]
        except KeyError:
            raise ValueError(f"info field {name!r} is missing from some samples of the batch") from None
        batch[name] = torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.as_tensor(values)
    return batch


__all__ = [
    "BAD_VIDEO_ERRORS",
    "BadVideoTracker",
    "VideoClipDataset",
    "build_sample",
    "collate_clips",
    "stable_key_seed",
]
