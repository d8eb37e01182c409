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

Bad videos: a :class:`~hf_vssl.data.decoding.VideoDecodeError` marks a video *corrupt*; a
:class:`~hf_vssl.data.clips.ClipTooLongError` (the sampler needs more frames than the video has)
marks it *short*, and the dataset's ``short_video`` policy decides, per video: ``"skip"`` it,
``"loop"`` or ``"pad"`` its frames up to the length the sampler needs, or ``"refuse"`` (stop with
a one-line error naming the file). Each corrupt or skipped video is logged once with its path
and reason. Training (``substitute=True``) replaces it deterministically by the next index;
evaluation (``substitute=False``) never substitutes: the sample comes back marked ``skipped``,
:func:`collate_clips` leaves it out of the batch and lists it, so no video is scored twice.

The :class:`BadVideoTracker` keeps its counts in shared memory, so every DataLoader worker and
the main process see the same ones: a map-style dataset stops as soon as more than
``max_bad_fraction`` of *all* its videos are known corrupt, which does not depend on the number
of workers or the order of reads. Counts are per process group member (rank); a loop that runs
on several ranks sums :meth:`BadVideoTracker.totals` over them (see its docstring).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from .clips import SHORT_VIDEO_ACTIONS, ClipSampler, ClipTooLongError, sample_clips
from .decoding import VideoDecodeError
from .records import VideoRecord
from .transforms import transform_sample_clips

logger = logging.getLogger(__name__)

#: Errors that mark a video as unusable (counted and replaced), not a bug in the pipeline.
BAD_VIDEO_ERRORS = (VideoDecodeError, ClipTooLongError)

Transform = Callable[[torch.Tensor], torch.Tensor]
Noise = Callable[[torch.Tensor, str], torch.Tensor]


#: Per-video status codes in :attr:`BadVideoTracker.status`.
UNREAD_OR_OK, CORRUPT, SHORT = 0, 1, 2
_MAX_WORKER_ROWS = 64  # one counter row per DataLoader worker (+ the main process): no shared writes


class BadVideoTracker:
    """Corrupt and skipped-short videos of one dataset, counted across DataLoader workers.

    Args:
        num_videos: size of a map-style dataset (per-video status in shared memory; the
            tolerance is ``max_bad_fraction x num_videos`` corrupt videos, checked at every new
            one); None for a stream (the tolerance is a fraction of the videos read, checked
            once ``min_seen`` were read).
        max_bad_fraction: tolerated fraction of corrupt videos (short videos skipped by policy
            are reported but do not count).
        min_seen: streams only (see ``num_videos``).

    :attr:`bad_videos` lists ``(path, reason)`` of the videos *this process* met (their reasons
    are also logged); :meth:`bad_indices` and :meth:`totals` read the shared state, so the main
    process sees what its workers found. Several ranks: sum :meth:`totals` over them (e.g.
    ``accelerator.reduce``) and pass the sums to :meth:`check_totals` at the end of an epoch.
    """

    def __init__(self, max_bad_fraction: float = 0.01, min_seen: int = 100, num_videos: int | None = None):
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction!r}")
        self.max_bad_fraction = float(max_bad_fraction)
        self.min_seen = max(1, int(min_seen))
        self.num_videos = None if num_videos is None else int(num_videos)
        self.status = torch.zeros(self.num_videos or 0, dtype=torch.int8).share_memory_()
        # Rows: worker id + 1 (0: the main process); columns: read, corrupt, short.
        self._counts = torch.zeros(_MAX_WORKER_ROWS + 1, 3, dtype=torch.int64).share_memory_()
        self.bad_videos: list[tuple[str, str]] = []
        self._bad_keys: set[Any] = set()

    def _row(self) -> torch.Tensor:
        info = torch.utils.data.get_worker_info()
        return self._counts[0 if info is None else 1 + info.id % _MAX_WORKER_ROWS]

    def _indexed(self, key: Any) -> bool:
        return self.num_videos is not None and isinstance(key, int)

    def is_known_bad(self, key: Any) -> bool:
        """Whether ``key`` (a map-style index: found by any worker) was already found unusable."""
        if self._indexed(key):
            return bool(self.status[key] != UNREAD_OR_OK)
        return key in self._bad_keys

    def ok(self) -> None:
        self._row()[0] += 1

    def bad(self, key: Any, path: str, reason: str, *, short: bool = False) -> None:
        """Record that ``key`` (``path``) is corrupt (or short, skipped by policy); raise past the tolerance."""
        row = self._row()
        row[0] += 1
        if self.is_known_bad(key):
            return
        if self._indexed(key):
            self.status[key] = SHORT if short else CORRUPT
        self._bad_keys.add(key)
        row[2 if short else 1] += 1
        self.bad_videos.append((path, reason))
        logger.warning("skipping %s video %s: %s", "short" if short else "bad", path, reason)
        self.check()

    def unusable(self, key: Any, path: str, error: Exception, short_video: str) -> str:
        """A video that failed to give a sample: raise for a short one under ``--short_video
        refuse``, else record it (:meth:`bad`) and return the reason."""
        short = isinstance(error, ClipTooLongError)
        if short and short_video == "refuse":
            raise ClipTooLongError(error.needed, error.available, path) from None
        reason = _reason(error)
        self.bad(key, path, reason, short=short)
        return reason

    def bad_indices(self, kind: int = CORRUPT) -> list[int]:
        """Indices of a map-style dataset found ``kind`` (:data:`CORRUPT` or :data:`SHORT`) so far, by any worker."""
        return (self.status == kind).nonzero().flatten().tolist()

    def totals(self) -> dict[str, int]:
        """``{"read", "corrupt", "short"}`` over every worker of this process."""
        read, corrupt, short = self._counts.sum(0).tolist()
        if self.num_videos is not None:  # distinct videos, not reads
            corrupt, short = len(self.bad_indices(CORRUPT)), len(self.bad_indices(SHORT))
        return {"read": int(read), "corrupt": int(corrupt), "short": int(short)}

    def check(self) -> None:
        """Raise ``RuntimeError`` once the corrupt videos exceed the tolerance."""
        totals = self.totals()
        self.check_totals(
            totals["corrupt"], self.num_videos if self.num_videos is not None else totals["read"]
        )

    def check_totals(self, corrupt: int, total: int) -> None:
        """The tolerance rule on counts (summed over ranks by the caller for a distributed run):
        ``corrupt > max_bad_fraction x total`` raises, for streams only once ``total >= min_seen``."""
        if self.num_videos is None and total < self.min_seen:
            return
        if total and corrupt > self.max_bad_fraction * total:
            listed = "; ".join(f"{path}: {reason}" for path, reason in self.bad_videos[:5])
            more = f" (and {len(self.bad_videos) - 5} more here)" if len(self.bad_videos) > 5 else ""
            raise RuntimeError(
                f"{corrupt} of {total} videos could not be used ({corrupt / total:.1%} > "
                f"max_bad_fraction={self.max_bad_fraction:.1%}): {listed}{more}. Fix or drop them "
                "(build_shards validates and reports bad inputs) or raise max_bad_fraction."
            )


def _reason(error: Exception) -> str:
    """The problem without the file name (the log line and the lists name the file)."""
    if isinstance(error, VideoDecodeError):
        return error.reason
    source = getattr(error, "source", None)
    return str(error).removeprefix(f"{source}: ") if source else str(error)


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
    short_video: str = "skip",
) -> dict[str, Any]:
    """Decode, perturb and transform the clips of one video into a sample dict (shared by the
    map-style and the streaming dataset). Raises the errors of :data:`BAD_VIDEO_ERRORS`
    (``short_video``: see :func:`~hf_vssl.data.clips.fit_plan`)."""
    clips, plan = sample_clips(source, sampler, rng, start=start, end=end, name=name, short_video=short_video)
    on_clips = getattr(noise, "on_clips", None)
    if on_clips is not None:  # e.g. NoiseTransform: noise keyed by the frames' places in the file
        begin = int(start or 0)
        clips = on_clips(clips, video_id, [np.asarray(ix) + begin for ix in plan.indices])
    elif noise is not None:
        # Clip 0 uses the bare video id so a one-clip sample matches noise(video, id).
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
            :class:`hf_vssl.data.noise.NoiseTransform`, whose ``on_clips`` also gets each clip's
            frame positions in the file); ``key`` is the video id.
        seed: base seed of the per-sample generators.
        max_bad_fraction: tolerated fraction of corrupt videos among all records (module
            docstring); ``min_seen`` is kept for streams and unused here.
        short_video: ``"skip"``, ``"loop"``, ``"pad"`` or ``"refuse"``, applied to each video
            its sampler finds too short (module docstring).
        substitute: replace an unusable video by the next usable index (training); False
            returns a ``skipped`` sample instead (evaluation: no video is scored twice).

    ``__getitem__(i)`` returns the sample dict; ``index`` is the record actually read (``i``, or
    its replacement when ``i`` is bad). A skipped sample is ``{"skipped": True, "index": i,
    "video_id", "label", "reason"}``.
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
        short_video: str = "skip",
        substitute: bool = True,
    ):
        if len(records) == 0:
            raise ValueError("VideoClipDataset needs at least one record")
        if short_video not in SHORT_VIDEO_ACTIONS:
            raise ValueError(f"short_video must be one of {SHORT_VIDEO_ACTIONS}, got {short_video!r}")
        self.records = list(records)
        self.sampler, self.transform, self.noise, self.seed = sampler, transform, noise, int(seed)
        self.short_video, self.substitute = short_video, bool(substitute)
        self.tracker = BadVideoTracker(max_bad_fraction, min_seen, num_videos=len(self.records))
        self._init_epoch()

    @property
    def bad_videos(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of the unusable videos met in this process (reasons are logged)."""
        return self.tracker.bad_videos

    def skipped_videos(self) -> dict[str, list[dict[str, Any]]]:
        """``{"corrupt": [...], "short": [...]}``: every video found unusable so far by any
        DataLoader worker, as ``{"index", "video_id", "path"}`` (for ``metrics.json`` and cards)."""

        def listed(kind: int) -> list[dict[str, Any]]:
            return [
                {"index": i, "video_id": self.records[i].video_id, "path": self.records[i].path}
                for i in self.tracker.bad_indices(kind)
            ]

        return {"corrupt": listed(CORRUPT), "short": listed(SHORT)}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self.records)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} videos")
        i %= n
        epoch = self.epoch
        for attempt in range(n if self.substitute else 1):
            idx = (i + attempt) % n
            if self.tracker.is_known_bad(idx):
                if not self.substitute:
                    return self._skipped(idx, "found unusable before")
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
                    short_video=self.short_video,
                )
            except BAD_VIDEO_ERRORS as error:
                reason = self.tracker.unusable(idx, record.path, error, self.short_video)
                if not self.substitute:
                    return self._skipped(idx, reason)
                continue
            self.tracker.ok()
            return sample
        raise RuntimeError(f"none of the {n} videos could be read; first problems: {self.bad_videos[:3]}")

    def _skipped(self, index: int, reason: str) -> dict[str, Any]:
        record = self.records[index]
        return {
            "skipped": True,
            "index": index,
            "video_id": record.video_id,
            "label": int(record.label),
            "reason": reason,
        }


def stable_key_seed(key: str) -> int:
    """A 32-bit integer from a string, the same in every process (unlike ``hash``)."""
    return zlib.crc32(str(key).encode("utf-8"))


def collate_clips(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch.

    Returns ``pixel_values`` ``(B, T, C, H, W)`` for one clip per sample or ``(B, N, T, C, H, W)``
    for ``N`` clips, ``labels`` (int64), ``index`` (int64), ``video_ids`` (list of str) and every
    ``info`` field as a tensor of shape ``(B, ...)`` at the top level (e.g. ``batch["rate"]``).

    Samples marked ``skipped`` (evaluation datasets, ``substitute=False``) are left out; the
    batch then also carries ``skipped_video_ids``, ``skipped_reasons`` and ``skipped_index``. A batch of skipped
    samples only has ``pixel_values=None`` and empty ``labels`` / ``index``.
    """
    if not samples:
        raise ValueError("collate_clips got an empty batch")
    skipped = [s for s in samples if s.get("skipped")]
    if skipped:
        batch = (
            collate_clips([s for s in samples if not s.get("skipped")])
            if len(skipped) < len(samples)
            else {
                "pixel_values": None,
                "labels": torch.zeros(0, dtype=torch.int64),
                "index": torch.zeros(0, dtype=torch.int64),
                "video_ids": [],
            }
        )
        batch["skipped_video_ids"] = [s["video_id"] for s in skipped]
        batch["skipped_reasons"] = [s.get("reason") for s in skipped]
        batch["skipped_index"] = torch.tensor([s["index"] for s in skipped], dtype=torch.int64)
        return batch
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
    "CORRUPT",
    "SHORT",
    "BadVideoTracker",
    "VideoClipDataset",
    "build_sample",
    "collate_clips",
    "stable_key_seed",
]
