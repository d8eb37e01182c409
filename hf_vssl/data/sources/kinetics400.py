"""Kinetics-400: ``train.csv`` / ``validate.csv`` / ``test.csv`` and the clips they name.

CSV columns ``label,youtube_id,time_start,time_end,split`` (the unlabelled test CSV of the
original release has no ``label``: its records get ``label=-1``, ``label_name=""``). A clip is
the file ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under ``videos_dir``: the
crawler's ``<split>/<label>/`` folders, flat mirrors and ``label_with_underscores`` folders all
resolve, as the folder is indexed once by file name. Label ids: the sorted labels of
``train.csv`` (the customary order), so every split shares them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources._common import SourceReport, SourceSpec, first_existing, index_videos

_CSV_NAMES = {"train": ["train.csv"], "val": ["validate.csv", "val.csv"], "test": ["test.csv"]}
_REQUIRED = ("youtube_id", "time_start", "time_end")


def _csv_path(annotations: Path, split: str) -> Path:
    return first_existing([annotations / name for name in _CSV_NAMES[split]], f"Kinetics-400 {split} CSV")


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path} lacks the column(s) {missing}; expected label,youtube_id,time_start,time_end,split"
            )
        return [(reader.line_num, row) for row in reader]


def parse(
    root: Path,
    split: str,
    fold: int,
    report: SourceReport,
    *,
    annotations_dir: str | Path | None = None,
    videos_dir: str | Path | None = None,
) -> None:
    """Fill ``report`` with the Kinetics-400 records of ``split`` ("train", "val", "test").

    ``annotations_dir`` defaults to ``root/annotations`` if present, else ``root``;
    ``videos_dir`` to ``root``.
    """
    annotations = (
        Path(annotations_dir)
        if annotations_dir is not None
        else (root / "annotations" if (root / "annotations").is_dir() else root)
    )
    videos = Path(videos_dir) if videos_dir is not None else root
    split_csv = _csv_path(annotations, split)
    rows = _read_rows(split_csv)
    label_source = (
        rows
        if split == "train" or not (annotations / "train.csv").is_file()
        else _read_rows(annotations / "train.csv")
    )
    labels = sorted({row["label"] for _, row in label_source if row.get("label")})
    label_ids = {name: i for i, name in enumerate(labels)}
    report.class_names = labels
    files = index_videos(videos)
    for number, row in rows:
        youtube_id = (row.get("youtube_id") or "").strip()
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except (TypeError, ValueError):
            report.skip(
                split_csv,
                number,
                f"time_start/time_end are not numbers: {row.get('time_start')!r}, {row.get('time_end')!r}",
            )
            continue
        if not youtube_id:
            report.skip(split_csv, number, "empty youtube_id")
            continue
        name = row.get("label")
        if name is None:
            label, name = -1, ""
        elif name not in label_ids:
            report.skip(split_csv, number, f"unknown label {name!r} (not in the train CSV)")
            continue
        else:
            label = label_ids[name]
        stem = f"{youtube_id}_{start:06d}_{end:06d}"
        path = files.get(stem)
        if path is None:
            report.skip(split_csv, number, f"video file not found: {stem}.* under {videos}")
            continue
        extra = {"youtube_id": youtube_id, "time_start": start, "time_end": end}
        report.records.append(VideoRecord(str(path), label, name, stem, split, "kinetics400", extra=extra))


def write_annotations(root: Path, classes: Sequence[str], videos: Sequence[Mapping[str, Any]]) -> None:
    """Write ``train.csv``, ``validate.csv`` (fold 1's train and held-out videos) and the
    unlabelled ``test.csv`` for ``videos`` named ``<youtube_id>_<start>_<end>`` (see
    :class:`~hf_vssl.data.sources._common.SourceSpec`)."""

    def rows(split: str) -> list[list[str]]:
        out = []
        for v in videos:
            if v["splits"]["1"] == ("train" if split == "train" else "test"):
                youtube_id, start, end = v["video_id"].rsplit("_", 2)
                out.append([v["layout_label"], youtube_id, str(int(start)), str(int(end)), split])
        return out

    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    for name, split in (("train.csv", "train"), ("validate.csv", "val")):
        with open(root / name, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows(split)])
    # Like the original release, the test CSV carries no labels (its videos are the held-out ones).
    with open(root / "test.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header[1:], *[[*r[1:4], "test"] for r in rows("val")]])


SOURCE = SourceSpec(
    "kinetics400",
    parse,
    splits=("train", "val", "test"),
    aliases={"validate": "val", "validation": "val"},
    description="Kinetics-400, 400 classes, train/val/test CSVs",
    write_annotations=write_annotations,
    eval_split="val",
    unlabelled_splits=("test",),
)
