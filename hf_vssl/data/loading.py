"""Records of a dataset split (optionally a class-balanced subset) and the start-up probe of video lengths."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .decoding import VideoDecodeError, open_video
from .records import VideoRecord
from .sources import load_source
from .subsets import balanced_subset

logger = logging.getLogger(__name__)


def load_records(
    dataset: str,
    dataset_root: str | None,
    split: str = "train",
    fold: int = 1,
    *,
    subset_size: int | None = None,
    subset_seed: int = 0,
    label_set: str | None = None,
) -> list[VideoRecord]:
    """The records of ``split`` of ``dataset``, optionally a class-balanced nested subset.

    ``dataset="synthetic"`` with no root uses the built-in corpus (generated on first use).
    An empty result raises ``ValueError`` before any training starts.
    """
    kwargs = {"label_set": label_set} if (dataset == "synthetic" and label_set) else {}
    records = load_source(dataset, dataset_root, split=split, fold=fold, **kwargs)
    if not records:
        where = dataset_root or "the built-in synthetic corpus"
        raise ValueError(f"split {split!r} (fold {fold}) of dataset {dataset!r} at {where} has no videos")
    if subset_size is not None and subset_size < len(records):
        records = balanced_subset(records, subset_size, seed=subset_seed)
    return records


def shortest_video(records: Sequence[VideoRecord], probe: int = 32) -> tuple[int, str]:
    """``(num_frames, path)`` of the shortest video among the first ``probe`` readable records.

    Records may carry their length in ``extra["num_frames"]`` (the synthetic corpus does), which
    avoids opening files. Used to refuse clip settings the videos cannot provide, at start.
    """
    lengths: list[tuple[int, str]] = []
    for record in list(records)[:probe]:
        frames = record.extra.get("num_frames") if record.extra else None
        if frames is None:
            try:
                frames = open_video(record.path).metadata.num_frames
            except VideoDecodeError as error:
                logger.warning("skipping %s while probing video lengths: %s", record.path, error.reason)
                continue
        if record.start is not None or record.end is not None:
            end = record.end if record.end is not None else frames
            frames = max(0, min(end, frames) - (record.start or 0))
        lengths.append((int(frames), record.path))
    if not lengths:
        raise ValueError(f"none of the first {probe} videos could be opened; first: {records[0].path}")
    return min(lengths)
