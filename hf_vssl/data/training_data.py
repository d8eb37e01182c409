"""The training videos a recipe's ``--dataset`` names, as one object whatever their kind.

:func:`open_training_videos` resolves a :class:`~hf_vssl.data.dataset_argument.DatasetArgument`
into :class:`TrainingVideos`: the records of a built-in source (map-style
:class:`~hf_vssl.data.datasets.VideoClipDataset`), or the manifest of a shard dataset, local or
on the Hub (streamed :class:`~hf_vssl.data.streaming.StreamingClipDataset`). Recipes build their
model from ``num_videos`` / ``id2label`` first, then the clip dataset with
:meth:`TrainingVideos.clip_dataset`. See ``docs/streaming.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .clips import ClipSampler
from .dataset_argument import DatasetArgument
from .datasets import Noise, Transform, VideoClipDataset
from .loading import load_labelled_records, load_records
from .records import VideoRecord
from .shards.variants import published_subsets, subset_shards
from .streaming import StreamingClipDataset, load_manifest, load_video_dataset, manifest_label_space


@dataclass
class TrainingVideos:
    """One split of a training dataset, before any clip is read.

    Attributes:
        argument: the parsed ``--dataset``.
        split: the split trained on.
        num_videos: videos in the split (shards: in the chosen nested subset, from the manifest).
        id2label: the dataset's label space (sources: when labels were required; shards: the
            manifest's label names).
        records: a source's videos (``None`` for shards, which are streamed).
        subset_size: the ``--subset_size`` asked for (``None``: the whole split).
    """

    argument: DatasetArgument
    split: str
    num_videos: int
    id2label: dict[int, str] | None
    records: Sequence[VideoRecord] | None = None
    subset_size: int | None = None

    @property
    def is_stream(self) -> bool:
        return self.records is None

    def clip_dataset(
        self,
        sampler: ClipSampler,
        *,
        transform: Transform | None = None,
        noise: Noise | None = None,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        short_video: str = "skip",
        rank: int | None = None,
        world_size: int | None = None,
    ) -> VideoClipDataset | StreamingClipDataset:
        """The clip dataset of these videos: map-style over records, or the stream of the shards
        (split over ``rank`` / ``world_size``, see :mod:`hf_vssl.data.streaming`)."""
        options = {
            "transform": transform,
            "noise": noise,
            "seed": seed,
            "max_bad_fraction": max_bad_fraction,
            "short_video": short_video,
        }
        if not self.is_stream:
            return VideoClipDataset(self.records, sampler, **options)
        stream = load_video_dataset(self.argument.base, split=self.split, subset_size=self.subset_size)
        return StreamingClipDataset(stream, sampler, rank=rank, world_size=world_size, **options)


def dataset_name(argument: DatasetArgument) -> str:
    """A short name of the dataset for run folders and Hub repos: the source's name, or the last
    part of a shard folder or Hub repo id (without its revision)."""
    if not argument.is_shards:
        return argument.dataset
    return argument.base.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def open_training_videos(
    argument: DatasetArgument,
    split: str = "train",
    *,
    fold: int = 1,
    subset_size: int | None = None,
    subset_seed: int = 0,
    label_set: str | None = None,
    labelled: bool = False,
) -> TrainingVideos:
    """The videos of ``split`` of ``argument``; refuses (in one line) what cannot be read.

    Sources: the records (with ``subset_size``: the class-balanced nested subset drawn with
    ``subset_seed``; ``labelled``: labels required and the source's label space). Shards: the
    manifest's count and labels; ``subset_size`` picks the published nested subset (a size the
    manifest does not publish, or one drawn with another seed than ``subset_seed``, is refused: a
    stream cannot draw a new balanced one).
    """
    if not argument.is_shards:
        options = {"subset_size": subset_size, "subset_seed": subset_seed, "label_set": label_set}
        if labelled:
            records, id2label = load_labelled_records(argument.dataset, argument.root, split, fold, **options)
        else:
            records, id2label = load_records(argument.dataset, argument.root, split, fold, **options), None
        return TrainingVideos(
            argument, split, len(records), id2label, records=records, subset_size=subset_size
        )
    if label_set is not None:
        raise ValueError(
            f"--label_set applies to the synthetic corpus, not to the shards of {argument.dataset}"
        )
    manifest = load_manifest(argument.base)
    shards = subset_shards(manifest, split, subset_size, argument.dataset)
    published = published_subsets(manifest, split).get(subset_size) if subset_size is not None else None
    if published is not None and int(published.get("seed", subset_seed)) != subset_seed:
        raise ValueError(
            f"--dataset {argument.dataset}: its {subset_size}-video subset was drawn with seed "
            f"{published['seed']}, not --subset_seed {subset_seed} (pass --subset_seed {published['seed']})"
        )
    num_videos = sum(int(shard["num_videos"]) for shard in shards)
    return TrainingVideos(
        argument, split, num_videos, manifest_label_space(manifest), subset_size=subset_size
    )


__all__ = ["TrainingVideos", "dataset_name", "open_training_videos"]
