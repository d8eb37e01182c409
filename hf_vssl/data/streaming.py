"""Streaming video shards with HF Datasets, and a torch IterableDataset of clip samples over them.

:func:`load_video_dataset` opens shards written by :func:`hf_vssl.data.shards.build_shards`
from a local directory or a Hub dataset repo through one code path:
``load_dataset("webdataset", data_files=[<base>/<shard>.tar, ...])`` where ``<base>`` is the
directory or ``hf://datasets/<repo_id>[@<revision>]``. The shard list, the video field and the
metadata schema come from ``manifest.json`` (explicit features: a json column inferred from the
first samples would get a null type for ``start``/``end`` when those are None there).

Sharding rule of :class:`StreamingClipDataset` (every video read EXACTLY once per epoch across
all processes and DataLoader workers):

1. the HF dataset is shuffled with a fixed seed (same shard order on every rank; the epoch,
   set with :meth:`StreamingClipDataset.set_epoch`, reshuffles shards deterministically);
2. ``datasets.distributed.split_dataset_by_node(ds, rank, world_size)`` is applied once. When
   the shard count is divisible by ``world_size`` each rank gets whole shards; otherwise
   ``datasets`` falls back to splitting by example: every rank streams all shards and keeps
   one example in ``world_size`` (still exactly once, but each rank reads every tar's bytes;
   write ``world_size x workers`` shards or a multiple to avoid it);
3. inside a rank, ``datasets`` hands each DataLoader worker its own subset of the shards (a
   worker with no shard stops: use at most ``num_shards / world_size`` workers).

The DataLoader built on this dataset must NOT go through ``accelerator.prepare``: for an
IterableDataset, Accelerate either dispatches batches from rank 0 (``dispatch_batches``,
default) or wraps it in ``IterableDatasetShard``; both shard a second time, so every rank
would only see a fraction of its own share. No Accelerate setting turns that off for a torch
IterableDataset (only a bare ``datasets.IterableDataset`` is special-cased), so recipes keep
the loader out of ``prepare`` and move batches with ``batch[k].to(accelerator.device)``. Ranks
may get different numbers of samples; recipes must not assume equal step counts (use a fixed
``max_steps`` per epoch or ``accelerator.join_uneven_inputs``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
import torch

from .clips import SHORT_VIDEO_ACTIONS, ClipSampler
from .datasets import (
    BAD_VIDEO_ERRORS,
    BadVideoTracker,
    Noise,
    Transform,
    _EpochMixin,
    build_sample,
    stable_key_seed,
)
from .shards import MANIFEST_FORMAT, MANIFEST_NAME, META_FIELDS
from .shards.variants import subset_shards

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

#: DataLoader workers per process whose resume positions :class:`StreamingClipDataset` can hold.
MAX_STREAM_WORKERS = 64


def dataset_base(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> str:
    """Where the shards live: a local directory, or ``hf://datasets/<repo_id>[@revision]``."""
    text = os.fspath(path_or_repo_id)
    if os.path.isdir(text):
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} only applies to Hub repos, but {text} is a local directory"
            )
        return os.path.abspath(text)
    if text.startswith("hf://"):
        return text.rstrip("/")
    if _REPO_ID.match(text):
        return f"hf://datasets/{text}" + (f"@{revision}" if revision else "")
    raise FileNotFoundError(
        f"{text!r} is neither a local shard directory nor a Hub dataset id ('owner/name')"
    )


def _read_json(url: str) -> dict[str, Any] | None:
    if url.startswith("hf://"):
        from huggingface_hub import HfFileSystem  # heavy import, only for Hub-hosted shards

        filesystem = HfFileSystem()
        if not filesystem.exists(url):
            return None
        with filesystem.open(url, "r") as handle:
            return json.load(handle)
    if not os.path.isfile(url):
        return None
    with open(url) as handle:
        return json.load(handle)


def load_manifest(base: str, required: bool = True) -> dict[str, Any] | None:
    """The checked ``manifest.json`` at ``base`` (a local folder or ``hf://datasets/...``, see
    :func:`dataset_base`); ``None`` when it has none and not ``required``."""
    manifest = _read_json(f"{base}/{MANIFEST_NAME}")
    if manifest is None:
        if required:
            raise FileNotFoundError(f"{base} has no {MANIFEST_NAME}: not a shard dataset written by hf_vssl")
        return None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{base}/{MANIFEST_NAME}: unknown manifest format {manifest.get('format')!r}")
    return manifest


def manifest_label_space(manifest: dict[str, Any]) -> dict[int, str]:
    """``id2label`` of a shard dataset: the label names its manifest lists."""
    return {
        int(index): name
        for index, name in sorted(manifest.get("label_names", {}).items(), key=lambda kv: int(kv[0]))
    }


def _features(video_field: str):
    from datasets import Features, Value, Video  # heavy import (seconds): only streaming needs it

    types = {"label": "int64", "start": "int64", "end": "int64", "num_frames": "int64"}
    return Features(
        {
            video_field: Video(),
            "json": {name: Value(types.get(name, "string")) for name in META_FIELDS},
            "__key__": Value("string"),
            "__url__": Value("string"),
        }
    )


def load_video_dataset(
    path_or_repo_id: str | os.PathLike,
    split: str = "train",
    streaming: bool = True,
    revision: str | None = None,
    subset_size: int | None = None,
):
    """Load video shards as a ``datasets.IterableDataset`` (or ``Dataset`` with ``streaming=False``).

    ``path_or_repo_id`` is a local directory written by ``build_shards`` or a Hub dataset repo id
    holding the same files. ``subset_size`` picks the published nested subset of that many videos
    (a shard prefix of ``split``, see :mod:`hf_vssl.data.shards.variants`); a size the manifest
    does not publish is refused. Columns: ``video`` (``datasets.Video``: a torchcodec decoder when
    accessed), ``json`` (label, label_name, video_id, split, source, start, end, num_frames,
    container, filename), ``__key__``, ``__url__``. Without a manifest, shards matching
    ``*-{split}-*.tar`` are loaded and their schema inferred.
    """
    from datasets import Video, load_dataset  # heavy import (seconds): only streaming needs it

    base = dataset_base(path_or_repo_id, revision)
    manifest = load_manifest(base, required=False)
    if manifest is not None:
        files = [f"{base}/{shard['file']}" for shard in subset_shards(manifest, split, subset_size, base)]
        video_field, features = manifest["video_field"], _features(manifest["video_field"])
    elif subset_size is not None:
        raise ValueError(
            f"{base} has no {MANIFEST_NAME}: it publishes no subsets (subset_size={subset_size})"
        )
    else:
        files, video_field, features = [f"{base}/*-{split}-*.tar"], None, None
    dataset = load_dataset(
        "webdataset", data_files={split: files}, split=split, streaming=streaming, features=features
    )
    if video_field is None:
        found = [name for name, feature in dataset.features.items() if isinstance(feature, Video)]
        if not found:
            raise ValueError(
                f"{base}: the shards of split {split!r} have no video column (fields: {list(dataset.features)})"
            )
        video_field = found[0]
    if video_field != "video":
        # A rename is a map over the rows: with the decoding feature it would open every video
        # once more only to rename it. Rows are renamed undecoded; the decoding feature comes back after.
        dataset = dataset.cast_column(video_field, Video(decode=False)).rename_column(video_field, "video")
        dataset = dataset.cast_column("video", Video())
    return dataset


def _distributed_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class StreamingClipDataset(_EpochMixin, torch.utils.data.IterableDataset):
    """Clip samples streamed from an HF dataset of videos; same sample dicts as ``VideoClipDataset``.

    Args:
        dataset: from :func:`load_video_dataset` (``IterableDataset``, or ``Dataset``, which is
            converted with ``to_iterable_dataset``); needs ``video`` and ``json`` columns.
        sampler / transform / noise: as in :class:`hf_vssl.data.datasets.VideoClipDataset`.
        seed: seeds shard shuffling and the per-sample generators
            ``np.random.default_rng([seed, epoch, crc32(key)])`` (independent of worker count).
        rank / world_size: this process in the job (default: ``torch.distributed`` if
            initialised, else ``RANK``/``WORLD_SIZE``, else 0/1).
        shuffle / shuffle_buffer: shuffle shard order per epoch and examples in a buffer.
        max_bad_fraction / min_seen: tolerated fraction of corrupt videos among those read (by
            every worker of this process), checked once ``min_seen`` were read; bad videos are
            skipped.
        short_video: ``"skip"``, ``"loop"``, ``"pad"`` or ``"refuse"`` for each video the sampler
            finds too short (see :class:`hf_vssl.data.datasets.VideoClipDataset`).

    ``index`` in the samples is -1 (a stream has no global index; use ``video_id``). Each sample
    also carries ``stream_position = (worker, n)``: the DataLoader worker that read it (0 without
    workers) and how many examples that worker had read from its share of the stream, this one
    included (bad videos count), which is where :meth:`resume_at` restarts it. See the module
    docstring for the sharding rule and why the DataLoader stays out of ``accelerator.prepare``.
    """

    def __init__(
        self,
        dataset,
        sampler: ClipSampler,
        transform: Transform | None = None,
        noise: Noise | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        max_bad_fraction: float = 0.01,
        min_seen: int = 100,
        shuffle: bool = True,
        shuffle_buffer: int = 16,
        short_video: str = "skip",
    ):
        # heavy imports (seconds): only streaming needs them
        import datasets
        from datasets.distributed import split_dataset_by_node

        if isinstance(dataset, datasets.Dataset):
            dataset = dataset.to_iterable_dataset(num_shards=max(1, min(len(dataset), 64)))
        if not isinstance(dataset, datasets.IterableDataset):
            raise TypeError(
                f"dataset must be a datasets.IterableDataset or Dataset, got {type(dataset).__name__}"
            )
        missing = {"video", "json"} - set(dataset.column_names or [])
        if missing:
            raise ValueError(
                f"dataset lacks columns {sorted(missing)} (use load_video_dataset); has {dataset.column_names}"
            )
        # Raw bytes instead of datasets' own decoder: open_video turns broken files into
        # VideoDecodeError (counted and skipped) and picks the faster seek mode.
        dataset = dataset.cast_column("video", datasets.Video(decode=False))
        if shuffle:
            dataset = dataset.shuffle(seed=int(seed), buffer_size=max(1, int(shuffle_buffer)))
        self.rank, self.world_size = _distributed_defaults(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}")
        if self.world_size > 1:
            dataset = split_dataset_by_node(dataset, rank=self.rank, world_size=self.world_size)
        self.dataset = dataset
        self.sampler, self.transform, self.noise, self.seed = sampler, transform, noise, int(seed)
        if short_video not in SHORT_VIDEO_ACTIONS:
            raise ValueError(f"short_video must be one of {SHORT_VIDEO_ACTIONS}, got {short_video!r}")
        self.short_video = short_video
        self.tracker = BadVideoTracker(max_bad_fraction, min_seen)
        self._init_epoch()
        # [epoch + 1 (0: none), examples to skip per worker...], shared with the workers like the epoch
        self._resume = torch.zeros(1 + MAX_STREAM_WORKERS, dtype=torch.int64).share_memory_()

    @property
    def bad_videos(self) -> list[tuple[str, str]]:
        """``(name, reason)`` of the bad videos met by this process / worker."""
        return self.tracker.bad_videos

    @property
    def num_shards(self) -> int:
        return self.dataset.num_shards

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(int(epoch))

    def resume_at(self, epoch: int, positions: list[int]) -> None:
        """In ``epoch``, worker ``w`` (the process itself without workers) passes over the first
        ``positions[w]`` examples of its share without decoding them (see ``stream_position``)."""
        if len(positions) > MAX_STREAM_WORKERS:
            raise ValueError(
                f"at most {MAX_STREAM_WORKERS} DataLoader workers can resume, got {len(positions)}"
            )
        self._resume.zero_()
        self._resume[1 : 1 + len(positions)] = torch.as_tensor(positions, dtype=torch.int64)
        self._resume[0] = int(epoch) + 1

    def clear_resume(self) -> None:
        """Read every share from its start again (undo :meth:`resume_at`)."""
        self._resume.zero_()

    def example_sample(
        self, example: dict[str, Any], name: str, epoch: int, key: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        """``(sample, None)``: the clip sample of one streamed example, its randomness keyed by
        ``(seed, epoch, key)``; ``(None, reason)`` for a video that cannot give one (counted and
        reported by the tracker under ``name``; ``--short_video refuse`` stops on a short one)."""
        meta, video = example["json"], example["video"]
        source = video.get("bytes") or video.get("path")
        try:
            if source is None:
                raise BAD_VIDEO_ERRORS[0](name, "sample has no video bytes or path")
            sample = build_sample(
                source,
                name,
                self.sampler,
                np.random.default_rng([self.seed, epoch, stable_key_seed(key)]),
                label=int(meta["label"]),
                video_id=meta["video_id"],
                index=-1,
                start=meta.get("start"),
                end=meta.get("end"),
                transform=self.transform,
                noise=self.noise,
                short_video=self.short_video,
            )
        except BAD_VIDEO_ERRORS as error:
            return None, self.tracker.unusable(name, name, error, self.short_video)
        self.tracker.ok()
        return sample, None

    def __iter__(self):
        epoch = self.epoch
        self.dataset.set_epoch(epoch)  # persistent workers: sync the copy with the shared epoch
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        skip = int(self._resume[1 + worker]) if int(self._resume[0]) == epoch + 1 else 0
        for position, example in enumerate(self.dataset, start=1):
            if position <= skip:  # consumed before the checkpoint: not decoded again
                continue
            key = example.get("__key__") or example["json"]["video_id"]
            name = f"{example.get('__url__') or 'stream'}:{key}"
            if self.tracker.is_known_bad(name):
                continue
            sample, _ = self.example_sample(example, name, epoch, key)
            if sample is None:
                continue
            sample["stream_position"] = (worker, position)
            yield sample


__all__ = [
    "MAX_STREAM_WORKERS",
    "StreamingClipDataset",
    "dataset_base",
    "load_manifest",
    "load_video_dataset",
    "manifest_label_space",
]
