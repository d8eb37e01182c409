"""Diving48 (V2): ``rgb/<vid_name>.mp4`` and ``Diving48_V2_{train,test}.json`` + ``Diving48_vocab.json``.

Entries are ``{"vid_name", "label", "start_frame", "end_frame"}``; the vocabulary lists each
class as its parts (take-off, somersaults, twists, flight position), joined with ``_`` into the
label name. The ``rgb/`` files are already cut to the dive, so the frame bounds (which refer
to the source video) go to ``extra`` rather than ``start``/``end``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources._common import SourceReport, SourceSpec, first_existing, json_file

_SPLIT_FILES = {"train": "Diving48_V2_train.json", "test": "Diving48_V2_test.json"}


def parse(
    root: Path,
    split: str,
    fold: int,
    report: SourceReport,
    *,
    annotations_dir: str | Path | None = None,
    videos_dir: str | Path | None = None,
) -> None:
    """Fill ``report`` with the Diving48 records of ``split`` ("train" or "test").

    ``annotations_dir`` defaults to ``root/annotations`` if present, else ``root``;
    ``videos_dir`` to ``root/rgb`` (or ``root/videos``).
    """
    annotations = (
        Path(annotations_dir)
        if annotations_dir is not None
        else (root / "annotations" if (root / "annotations").is_dir() else root)
    )
    videos = (
        Path(videos_dir)
        if videos_dir is not None
        else first_existing([root / "rgb", root / "videos"], "Diving48 video folder")
    )
    vocab = json_file(annotations / "Diving48_vocab.json", list, "Diving48 vocabulary")
    names = ["_".join(map(str, item)) if isinstance(item, (list, tuple)) else str(item) for item in vocab]
    report.class_names = names
    split_path = annotations / _SPLIT_FILES[split]
    for number, entry in enumerate(json_file(split_path, list, f"Diving48 {split} list"), start=1):
        if not isinstance(entry, dict) or not entry.get("vid_name"):
            report.skip(split_path, number, f"entry without a vid_name: {entry!r}")
            continue
        label = entry.get("label")
        if not isinstance(label, int) or not 0 <= label < len(names):
            report.skip(
                split_path, number, f"label {label!r} is not an index into the {len(names)}-class vocabulary"
            )
            continue
        path = videos / f"{entry['vid_name']}.mp4"
        if not path.is_file():
            report.skip(split_path, number, f"video file not found: {path}")
            continue
        extra = {k: entry[k] for k in ("start_frame", "end_frame") if k in entry}
        report.records.append(
            VideoRecord(
                str(path), label, names[label], str(entry["vid_name"]), split, "diving48", extra=extra
            )
        )


def write_annotations(root: Path, classes: Sequence[str], videos: Sequence[Mapping[str, Any]]) -> None:
    """Write ``Diving48_vocab.json`` (each class as its ``_``-separated parts) and the train/test
    JSONs of fold 1's partition (see :class:`~hf_vssl.data.sources._common.SourceSpec`)."""
    (root / "Diving48_vocab.json").write_text(json.dumps([c.split("_") for c in classes]))
    index = {name: i for i, name in enumerate(classes)}
    for split, name in _SPLIT_FILES.items():
        entries = [
            {
                "vid_name": v["video_id"],
                "label": index[v["layout_label"]],
                "start_frame": 0,
                "end_frame": v["num_frames"] - 1,
            }
            for v in videos
            if v["splits"]["1"] == split
        ]
        (root / name).write_text(json.dumps(entries, indent=1))


SOURCE = SourceSpec(
    "diving48",
    parse,
    splits=("train", "test"),
    aliases={"val": "test", "validation": "test"},
    description="Diving48 V2, 48 dive classes, train/test JSONs",
    write_annotations=write_annotations,
)
