"""Records of a dataset split (optionally a class-balanced subset), its label space, the default
evaluation split, and the start-up probe of video lengths."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .decoding import VideoDecodeError, open_video
from .records import VideoRecord
from .sources import default_eval_split, load_source
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
    require_labels: bool = False,
) -> list[VideoRecord]:
    """The records of ``split`` of ``dataset``, optionally a class-balanced nested subset.

    ``dataset="synthetic"`` with no root uses the built-in corpus (generated on first use).
    An empty result raises ``ValueError`` before any training starts; with ``require_labels``
    (anything scored against labels) a split without labels raises
    :class:`~hf_vssl.data.sources.UnlabelledSplitError` in one line.
    """
    return _load(dataset, dataset_root, split, fold, subset_size, subset_seed, label_set, require_labels)[0]


def load_labelled_records(
    dataset: str, dataset_root: str | None, split: str = "train", fold: int = 1, **options: Any
) -> tuple[list[VideoRecord], dict[int, str]]:
    """``(records, id2label)``: :func:`load_records` (same ``options``, labels required unless
    ``require_labels=False``) plus the source's whole label space (e.g. UCF101's 101 classes named
    from ``classInd.txt``, even when a partial copy lacks some)."""
    options.setdefault("require_labels", True)
    return _load(
        dataset,
        dataset_root,
        split,
        fold,
        options.get("subset_size"),
        options.get("subset_seed", 0),
        options.get("label_set"),
        options["require_labels"],
    )


def _load(dataset, dataset_root, split, fold, subset_size, subset_seed, label_set, require_labels):
    kwargs = {"label_set": label_set} if (dataset == "synthetic" and label_set) else {}
    report = load_source(
        dataset,
        dataset_root,
        split=split,
        fold=fold,
        return_report=True,
        require_labels=require_labels,
        **kwargs,
    )
    records = report.records
    if not records:
        where = dataset_root or "the built-in synthetic corpus"
        raise ValueError(f"split {split!r} (fold {fold}) of dataset {dataset!r} at {where} has no videos")
    if subset_size is not None and subset_size < len(records):
        records = balanced_subset(records, subset_size, seed=subset_seed)
    return records, report.id2label()


def merge_label_spaces(*spaces: dict[int, str]) -> dict[int, str]:
    """One ``id2label`` over several splits' label spaces; an index no split names (a source
    listing no classes, whose splits miss some) is named ``class_<i>``."""
    names: dict[int, str] = {}
    for space in spaces:
        for index, name in space.items():
            names.setdefault(int(index), name)
    return {i: names.get(i, f"class_{i}") for i in range(max(names) + 1)} if names else {}


def resolve_eval_split(dataset: str, split: str | None) -> str:
    """``split``, or the source's labelled held-out split when None (``val`` for Kinetics-400 and
    SSv2, whose official ``test`` lists carry no labels; ``test`` elsewhere)."""
    return split if split is not None else default_eval_split(dataset)


def probe_lengths(records: Sequence[VideoRecord], probe: int = 32) -> list[tuple[int, str]]:
    """``(num_frames, path)`` of each of the first ``probe`` readable records (segments: their length).

    Records may carry their length in ``extra["num_frames"]`` (the synthetic corpus does), which
    avoids opening files. Only a start-up hint: recipes apply ``--short_video`` per video, and
    probe at start only when a task needs a minimum length and the policy is ``refuse``.
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
    return lengths
