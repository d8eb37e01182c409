"""Evaluation videos from any ``--dataset``: a built-in source's records or a streamed shard split.

Every evaluation path (finetuning's test and retrieval, the robustness and CKA recipes) reads
its videos through :func:`load_eval_videos`, which gives either a list of
:class:`~hf_vssl.data.records.VideoRecord` (a built-in source) or a :class:`ShardSplit` (a local
shard folder or a Hub dataset repo, see :mod:`hf_vssl.data.dataset_argument`), and turns them
into clip samples with :func:`eval_clip_dataset`:

- records: a map-style :class:`~hf_vssl.data.datasets.VideoClipDataset`;
- a shard split: a :class:`EvalStream`, streamed in manifest order (no shuffling), split across
  ranks and DataLoader workers by the rule of :mod:`hf_vssl.data.streaming` (every video read
  once); samples carry ``index=-1``, so evaluation gathers them by ``video_id``. A video that
  cannot be used comes back as a ``skipped`` sample, as from a map-style evaluation dataset.

Noisy variants: :func:`noisy_eval_videos` picks the published noisy split of a shard dataset
(``hf_vssl.data.shards.variants.published_noisy_split``) when one was made with the same kind,
severity, preset and seed, and otherwise returns the clean videos with the
:class:`~hf_vssl.data.noise.NoiseTransform` to apply on the fly; both give the same clips
(docs/streaming_evaluation.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .clips import ClipSampler
from .dataset_argument import parse_dataset_argument
from .datasets import (
    Noise,
    Transform,
    VideoClipDataset,
)
from .loading import load_labelled_records, resolve_eval_split
from .noise import NoiseTransform
from .records import VideoRecord
from .shards.variants import published_noisy_split, subset_shards
from .streaming import StreamingClipDataset, load_manifest, load_video_dataset, manifest_label_space

__all__ = [
    "EvalStream",
    "ShardSplit",
    "eval_clip_dataset",
    "expected_videos",
    "load_eval_videos",
    "noisy_eval_videos",
]

#: Held-out splits a shard dataset is evaluated on by default, in order of preference.
SHARD_EVAL_SPLITS = ("test", "val", "validation")


@dataclasses.dataclass(frozen=True)
class ShardSplit:
    """One split of a shard dataset, read as a stream for evaluation.

    Attributes:
        base: a local folder or ``hf://datasets/<repo_id>[@revision]``.
        split: the split's name (a noisy variant's too, e.g. ``test.gaussian.s3``).
        num_videos: the videos an evaluation reads (``limit`` when set, else the split's count).
        limit: read only the first ``limit`` videos in manifest order (a published nested subset
            is a shard prefix, so its first videos are the subset); None: all of them.
        manifest: the dataset's manifest.
    """

    base: str
    split: str
    num_videos: int
    limit: int | None = None
    manifest: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def where(self) -> str:
        return f"{self.base} split {self.split!r}"


EvalVideos = Sequence[VideoRecord] | ShardSplit


def _shard_eval_split(manifest: dict[str, Any], base: str) -> str:
    for split in SHARD_EVAL_SPLITS:
        if split in manifest.get("splits", {}):
            return split
    raise ValueError(
        f"{base} has none of the held-out splits {', '.join(SHARD_EVAL_SPLITS)}; pass the split to "
        f"evaluate on (available: {', '.join(manifest.get('splits', {}))})"
    )


def load_eval_videos(
    dataset: str,
    dataset_root: str | None = None,
    split: str | None = None,
    fold: int = 1,
    *,
    revision: str | None = None,
    label_set: str | None = None,
    subset_size: int | None = None,
    subset_seed: int = 0,
    limit: int | None = None,
) -> tuple[EvalVideos, dict[int, str], str]:
    """``(videos, id2label, split)`` of the labelled split ``split`` of ``--dataset``.

    ``split`` None: the held-out split (a source's :func:`~hf_vssl.data.loading.resolve_eval_split`;
    shards: the first of :data:`SHARD_EVAL_SPLITS` the manifest has). ``subset_size``: a source's
    class-balanced subset (seeded by ``subset_seed``), or a shard dataset's published nested
    subset. ``limit`` (shards only): the first ``limit`` videos in manifest order, for callers
    that only need a sample of the split (a stream cannot draw a balanced one without reading
    every shard).
    """
    data = parse_dataset_argument(dataset, dataset_root, revision)
    if not data.is_shards:
        split = resolve_eval_split(dataset, split)
        records, id2label = load_labelled_records(
            dataset,
            dataset_root,
            split,
            fold,
            subset_size=subset_size,
            subset_seed=subset_seed,
            label_set=label_set,
        )
        return records, id2label, split
    manifest = load_manifest(data.base)
    split = split or _shard_eval_split(manifest, data.base)
    shards = subset_shards(manifest, split, subset_size, f"--dataset {dataset}")
    count = sum(int(shard["num_videos"]) for shard in shards)
    if limit is not None:
        count = min(count, int(limit))
    total = int(manifest["splits"][split]["num_videos"])
    if count < 1:
        raise ValueError(f"--dataset {dataset}: split {split!r} has no videos")
    videos = ShardSplit(data.base, split, count, count if count < total else None, manifest)
    return videos, manifest_label_space(manifest), split


def noisy_eval_videos(
    videos: EvalVideos, kind: str, severity: int, preset: str = "video-p", seed: int = 0
) -> tuple[EvalVideos, NoiseTransform | None]:
    """The videos of a noisy evaluation and the noise still to apply.

    A shard split whose dataset publishes its noisy copy with exactly these settings gives
    ``(that split, None)``; anything else gives ``(videos, NoiseTransform(...))`` (noise on the
    fly, the same clips for the same seed).
    """
    noise = NoiseTransform(kind, severity, preset, seed)
    if isinstance(videos, ShardSplit):
        name = published_noisy_split(videos.manifest, videos.split, kind, severity, preset, seed)
        if name is not None:
            entry = videos.manifest["splits"][name]
            count = min(int(entry["num_videos"]), videos.num_videos)
            limit = count if videos.limit is not None else None
            return dataclasses.replace(videos, split=name, num_videos=count, limit=limit), None
    return videos, noise


def expected_videos(dataset) -> int | None:
    """How many videos an evaluation of ``dataset`` must account for (scored or skipped), if known."""
    videos = getattr(dataset, "videos", None)
    if isinstance(videos, ShardSplit):
        return videos.num_videos
    return len(dataset) if hasattr(dataset, "__len__") else None


class _FirstVideos:
    """Filter of the first ``limit`` videos of a split in manifest order, by ``(__url__, __key__)``.

    ``IterableDataset.take`` is no use here: DataLoader workers each take from their own shards.
    A shard is read whole, in order, by one worker, so a video's place in its shard is the order
    in which its key first appears (remembered, so a second pass over the data keeps the same
    ones); the filter runs before the split across ranks, so it sees every example of its shards.
    """

    def __init__(self, shards: list[dict[str, Any]], limit: int):
        self.keep: dict[str, int] = {}
        left = int(limit)
        for shard in shards:
            self.keep[shard["file"].rsplit("/", 1)[-1]] = min(left, int(shard["num_videos"]))
            left -= self.keep[shard["file"].rsplit("/", 1)[-1]]
        self.order: dict[str, dict[str, int]] = {}

    def __call__(self, url: str, key: str) -> bool:
        name = url.rsplit("/", 1)[-1]
        seen = self.order.setdefault(name, {})
        return seen.setdefault(key, len(seen)) < self.keep.get(name, 0)


def _stream(videos: ShardSplit):
    """The HF stream of ``videos``: its split, cut to its first ``limit`` videos."""
    stream = load_video_dataset(videos.base, videos.split)
    if videos.limit is None:
        return stream
    from datasets import Video  # heavy import (seconds): only streaming needs it

    first = _FirstVideos(videos.manifest["splits"][videos.split]["shards"], videos.limit)
    # Raw bytes first, as StreamingClipDataset reads them: a filter would hand on decoded videos.
    stream = stream.cast_column("video", Video(decode=False))
    return stream.filter(first, input_columns=["__url__", "__key__"])


class EvalStream(StreamingClipDataset):
    """A shard split streamed for evaluation: manifest order, every video once across ranks and
    DataLoader workers, never substituted; an unusable video yields ``{"skipped": True, "index":
    -1, "video_id", "label", "reason"}`` (left out of the batch by ``collate_clips``)."""

    def __init__(
        self,
        videos: ShardSplit,
        sampler: ClipSampler,
        transform: Transform | None = None,
        noise: Noise | None = None,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        short_video: str = "loop",
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__(
            _stream(videos),
            sampler,
            transform=transform,
            noise=noise,
            seed=seed,
            rank=rank,
            world_size=world_size,
            max_bad_fraction=max_bad_fraction,
            shuffle=False,
            short_video=short_video,
        )
        self.videos = videos

    def __iter__(self):
        for example in self.dataset:
            meta = example["json"]
            video_id = meta["video_id"]
            name = f"{example.get('__url__') or self.videos.base}:{example.get('__key__') or video_id}"
            sample, reason = self.example_sample(example, name, 0, video_id)
            if sample is None:  # reported, with the reason, in the evaluation's skipped videos
                yield {
                    "skipped": True,
                    "index": -1,
                    "video_id": video_id,
                    "label": int(meta["label"]),
                    "reason": reason,
                }
                continue
            yield sample


def eval_clip_dataset(
    videos: EvalVideos,
    sampler: ClipSampler,
    *,
    transform: Transform | None = None,
    noise: Noise | None = None,
    seed: int = 0,
    max_bad_fraction: float = 0.01,
    short_video: str = "loop",
    substitute: bool = False,
):
    """Clip samples of ``videos`` for an evaluation.

    Records give a :class:`~hf_vssl.data.datasets.VideoClipDataset` (``substitute`` as there);
    a :class:`ShardSplit` gives an :class:`EvalStream` (``substitute=False``: unusable videos come
    back as ``skipped`` samples) or, with ``substitute=True``, a plain
    :class:`~hf_vssl.data.streaming.StreamingClipDataset` in manifest order that leaves them out
    (a stream has no "next video" to substitute; the same ones are left out for every model).
    """
    options = {"transform": transform, "noise": noise, "seed": seed, "max_bad_fraction": max_bad_fraction}
    if not isinstance(videos, ShardSplit):
        return VideoClipDataset(videos, sampler, short_video=short_video, substitute=substitute, **options)
    if not substitute:
        return EvalStream(videos, sampler, short_video=short_video, **options)
    dataset = StreamingClipDataset(
        _stream(videos), sampler, shuffle=False, short_video=short_video, **options
    )
    dataset.videos = videos
    return dataset
