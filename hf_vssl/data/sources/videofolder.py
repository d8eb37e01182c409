"""A plain folder of videos: ``root/<split>/<class>/*.<ext>`` or ``root/<class>/*.<ext>``.

With split folders, the classes are the union of the class folders of every split (sorted), so
all splits share label ids; without them (no ``root/<split>`` and no folder named like a
split), every video of ``root/<class>/`` is returned under the requested split name. Files
with other extensions are ignored; a video lying outside any class folder is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources._common import VIDEO_EXTENSIONS, SourceReport, SourceSpec

#: folder names taken as split folders rather than classes.
SPLIT_NAMES = ("train", "val", "validation", "valid", "test")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def parse(root: Path, split: str, fold: int, report: SourceReport) -> None:
    """Fill ``report`` with the videos of ``split`` (a folder name, or everything if flat)."""
    split_dirs = [d for d in _subdirs(root) if d.name in SPLIT_NAMES]
    if (root / split).is_dir():
        folder = root / split
        classes = sorted(
            {c.name for d in (split_dirs or [folder]) for c in _subdirs(d)}
            | {c.name for c in _subdirs(folder)}
        )
    elif split_dirs:
        raise ValueError(f"no split folder {root / split}; found splits {[d.name for d in split_dirs]}")
    else:
        folder = root
        classes = [c.name for c in _subdirs(root)]
    if not classes:
        raise FileNotFoundError(f"no class folders in {folder}; expected {folder}/<class>/<video>")
    report.class_names = list(classes)
    for stray in sorted(p for p in folder.iterdir() if _is_video(p)):
        report.skip(stray, None, "video outside any class folder")
    for label, class_name in enumerate(classes):
        class_dir = folder / class_name
        if not class_dir.is_dir():
            continue  # a class present in another split only
        for path in sorted(p for p in class_dir.iterdir() if _is_video(p)):
            report.records.append(
                VideoRecord(str(path), label, class_name, f"{class_name}/{path.stem}", split, "videofolder")
            )


def write_annotations(root: Path, classes: Sequence[str], videos: Sequence[Mapping[str, Any]]) -> None:
    """The folders are the annotation: nothing else to write."""


SOURCE = SourceSpec(
    "videofolder",
    parse,
    splits=None,
    write_annotations=write_annotations,
    description="root/<split>/<class>/<video> or root/<class>/<video>",
)
