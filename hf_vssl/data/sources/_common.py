"""What every source parser shares: problem reports, split checks, annotation readers."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord

logger = logging.getLogger("hf_vssl.data.sources")

#: extensions recognised as video files when a source has to look for them.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")


@dataclass(frozen=True)
class AnnotationProblem:
    """One annotation entry that was skipped: where it is and why."""

    file: str
    line: int | None  # 1-based line (text files) or entry index (JSON lists); None: the file itself
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class SourceReport:
    """The result of parsing one split of a source: the records and every skipped entry.

    ``load_source(..., return_report=True)`` returns it; by default only ``records`` is returned
    and the problems are summarised in one ``UserWarning`` (each one is also logged at DEBUG on
    the ``hf_vssl.data.sources`` logger).
    """

    source: str
    split: str
    fold: int
    records: list[VideoRecord] = field(default_factory=list)
    problems: list[AnnotationProblem] = field(default_factory=list)
    #: the whole label space in index order, as the annotation lists it (classes without a
    #: video in this split or copy included).
    class_names: list[str] = field(default_factory=list)

    def id2label(self) -> dict[int, str]:
        """Index -> class name over the whole label space (:attr:`class_names`); a source that
        lists no classes falls back to the labels its records carry."""
        if self.class_names:
            return dict(enumerate(self.class_names))
        names = {r.label: r.label_name for r in self.records if r.label >= 0}
        return {i: names[i] for i in sorted(names)}

    def set_classes(self, index: dict[str, int]) -> None:
        """Record the label space from a ``{class name: index}`` map covering ``0..N-1``."""
        names = sorted(index, key=index.__getitem__)
        if [index[name] for name in names] != list(range(len(names))):
            raise ValueError(
                f"{self.source}: class indices must be 0..{len(names) - 1}, got {sorted(index.values())}"
            )
        self.class_names = names

    def skip(self, file: str | os.PathLike, line: int | None, reason: str) -> None:
        """Record that the entry at ``file:line`` was skipped because of ``reason``."""
        problem = AnnotationProblem(os.fspath(file), line, reason)
        self.problems.append(problem)
        logger.debug("skipped %s", problem)

    def summary(self) -> str:
        shown = "; ".join(str(p) for p in self.problems[:3])
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return (
            f"{self.source} split={self.split!r} fold={self.fold}: skipped {len(self.problems)} annotation "
            f"entries, kept {len(self.records)}: {shown}{more}"
        )


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a ``FileNotFoundError`` naming what was expected there."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {what}: expected {path}")
    return path


def first_existing(candidates: list[Path], what: str) -> Path:
    """The first existing path of ``candidates``, else a ``FileNotFoundError`` listing them all."""
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"missing {what}: expected one of " + ", ".join(str(c) for c in candidates))


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-blank line (any line ending, BOM-safe)."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if text:
                yield number, text


def json_file(path: Path, expected: type, what: str) -> Any:
    """Parse ``path`` as JSON of type ``expected``; a clear ``ValueError`` otherwise."""
    require_file(path, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({what}): {error}") from error
    if not isinstance(data, expected):
        # a malformed file, not a caller's type error: ValueError like the JSON error above
        raise ValueError(f"{path} ({what}) must hold a JSON {expected.__name__}, got {type(data).__name__}")  # noqa: TRY004
    return data


def index_videos(folder: Path) -> dict[str, Path]:
    """Map the stem of every video file under ``folder`` (recursively) to its path.

    Used where mirrors disagree on the folder structure (Kinetics): one walk, then lookups.
    """
    index: dict[str, Path] = {}
    for directory, _, files in os.walk(folder):
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS:
                index.setdefault(stem, Path(directory) / name)
    return index


class UnlabelledSplitError(ValueError):
    """A split without labels was asked for where labels are needed (evaluation, finetuning)."""


@dataclass(frozen=True)
class SourceSpec:
    """A registered dataset source.

    ``parse(root, split, fold, report, **kwargs)`` appends to ``report.records`` and reports
    skipped entries with ``report.skip``; ``load_source`` has already checked ``split`` (one of
    ``splits`` after ``aliases``; any name when ``splits`` is None) and ``fold`` (in ``folds``).

    ``eval_split`` names the labelled held-out split evaluation uses by default;
    ``unlabelled_splits`` the splits whose official lists carry no labels (Kinetics' and SSv2's
    ``test``): :func:`~hf_vssl.data.sources.load_source` refuses them with ``require_labels=True``.

    ``write_annotations(root, classes, videos)`` is the other direction: it writes the layout's
    annotation files for videos already in place under ``root`` (the synthetic corpus uses it).
    ``classes``: the class names as the layout spells them (SSv2: the templates), in label order; ``videos``: one
    mapping per video with ``path`` (relative to ``root``), ``video_id``, ``layout_label`` (its
    class, spelled as in ``classes``), ``splits`` (fold number as a string -> "train" or
    "test"), ``num_frames`` and ``placeholders`` (the objects a caption names, SSv2).
    """

    name: str
    parse: Any
    splits: tuple[str, ...] | None
    folds: tuple[int, ...] = (1,)
    aliases: dict[str, str] = field(default_factory=dict)
    description: str = ""
    write_annotations: Any = None
    #: the split evaluation reads unless told otherwise (the labelled held-out one).
    eval_split: str = "test"
    #: splits whose official annotations carry no labels (their records get label -1).
    unlabelled_splits: tuple[str, ...] = ()

    def canonical_split(self, split: str) -> str:
        split = self.aliases.get(split, split)
        if self.splits is not None and split not in self.splits:
            accepted = sorted(set(self.splits) | set(self.aliases))
            raise ValueError(f"source {self.name!r} has no split {split!r}; expected one of {accepted}")
        return split

    def check_labelled(self, split: str, records: list[VideoRecord], root: Any = None) -> None:
        """Raise :class:`UnlabelledSplitError` if a record of ``split`` has no label (-1).

        A copy whose list of an officially unlabelled split does carry labels passes.
        """
        unlabelled = sum(1 for record in records if record.label < 0)
        if unlabelled:
            where = f" at {root}" if root is not None else ""
            official = " (the official list carries none)" if split in self.unlabelled_splits else ""
            raise UnlabelledSplitError(
                f"split {split!r} of {self.name}{where} has no labels for {unlabelled} of its {len(records)} "
                f"videos{official}; evaluate on the labelled split {self.eval_split!r}"
            )

    def check_fold(self, fold: int) -> int:
        if fold not in self.folds:
            if self.folds == (1,):
                raise ValueError(
                    f"source {self.name!r} has one official partition: fold must be 1, got {fold!r}"
                )
            raise ValueError(f"source {self.name!r} has folds {list(self.folds)}, got {fold!r}")
        return fold
