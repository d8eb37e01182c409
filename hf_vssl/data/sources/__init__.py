"""Dataset sources: official annotation layouts parsed into :class:`~hf_vssl.data.records.VideoRecord`.

``SOURCES`` is the one registry (name -> :class:`SourceSpec`); :func:`load_source` is the
entry point. Each source lives in its own small module; shared parsing lives in ``_common``.

Bad annotations never abort a load: an entry naming a missing file, an unknown label or a
malformed line is skipped and reported as an :class:`AnnotationProblem` (file, line, reason).
``load_source`` emits one ``UserWarning`` summarising them (each is also logged at DEBUG on
``hf_vssl.data.sources``); ``return_report=True`` returns the full :class:`SourceReport`.
Errors in what was asked for -- an unknown source, split or fold, a missing annotation file --
raise ``ValueError`` / ``FileNotFoundError`` naming the expected path.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources import diving48, hmdb51, kinetics400, ssv2, synthetic, ucf101, videofolder
from hf_vssl.data.sources._common import AnnotationProblem, SourceReport, SourceSpec, UnlabelledSplitError

SOURCES: dict[str, SourceSpec] = {
    module.SOURCE.name: module.SOURCE
    for module in (ucf101, hmdb51, kinetics400, ssv2, diving48, videofolder, synthetic)
}

__all__ = [
    "SOURCES",
    "AnnotationProblem",
    "SourceReport",
    "SourceSpec",
    "UnlabelledSplitError",
    "default_eval_split",
    "list_sources",
    "load_source",
]


def list_sources() -> list[str]:
    """Names accepted by :func:`load_source`."""
    return sorted(SOURCES)


def default_eval_split(name: str) -> str:
    """The labelled held-out split that evaluating on source ``name`` reads by default
    (``val`` for Kinetics-400 and SSv2, whose official ``test`` lists carry no labels)."""
    return _spec(name).eval_split


def _spec(name: str) -> SourceSpec:
    key = name.lower()
    if key not in SOURCES:
        raise ValueError(f"unknown source {name!r}; expected one of {list_sources()}")
    return SOURCES[key]


def load_source(
    name: str,
    root: str | os.PathLike | None,
    split: str = "train",
    fold: int = 1,
    *,
    return_report: bool = False,
    require_labels: bool = False,
    **kwargs: Any,
) -> list[VideoRecord] | SourceReport:
    """Parse ``split`` (in ``fold``) of dataset ``name`` stored at ``root``.

    Args:
        name: one of :func:`list_sources`.
        root: the dataset folder in its official layout (see each source module); for
            ``"synthetic"``, ``None`` means the default corpus (generated on first use).
        split: "train", "test", "val" (aliases such as "validate"/"validation" are accepted;
            UCF101/HMDB51/Diving48/synthetic map "val" to their held-out "test").
        fold: official fold (UCF101/HMDB51/synthetic-in-those-layouts: 1-3; otherwise 1).
        return_report: return the :class:`SourceReport` (records, skipped entries and the
            whole label space: ``report.id2label()`` names every class the annotation lists,
            e.g. UCF101's 101 from ``classInd.txt``) instead of the list of records.
        require_labels: for anything that scores against labels (evaluation, finetuning):
            raise :class:`UnlabelledSplitError` (one line naming the split and the labelled one
            to use) for a split without labels, instead of returning records labelled -1.
        **kwargs: source options, e.g. ``label_set="appearance"`` (synthetic),
            ``videos_dir=`` / ``annotations_dir=`` (where a layout differs from the official one).
    """
    spec = _spec(name)
    key = spec.name
    if root is None:
        if key != "synthetic":
            raise ValueError(f"source {name!r} needs a root folder")
        # The generator sits above the sources (it writes layouts through their writers): load
        # it (renderer, encoder) only when the default corpus is asked for.
        from hf_vssl.data.synthetic import get_default_corpus

        root = get_default_corpus()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name} root folder not found: {root}")
    split = spec.canonical_split(split)
    fold = spec.check_fold(fold)
    report = SourceReport(key, split, fold)
    spec.parse(root, split, fold, report, **kwargs)
    if require_labels:
        spec.check_labelled(split, report.records, root)
    if report.problems:
        warnings.warn(report.summary(), UserWarning, stacklevel=2)
    return report if return_report else report.records
