"""HMDB51: ``<class>/<name>.avi`` and ``testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt``.

That is the layout of the official archives unpacked side by side: ``hmdb51_org.rar`` (one
``<class>.rar`` each, giving ``<class>/``) into ``root`` and ``test_train_splits.rar`` (giving
``testTrainMulti_7030_splits/``). Split lines are ``"<name>.avi <N>"`` with 1 = train,
2 = test, 0 = unused. Labels: the class names sorted, as is customary (the archive has no index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources._common import SourceReport, SourceSpec, first_existing, text_lines

_SPLIT_CODES = {"train": 1, "test": 2}


def parse(
    root: Path,
    split: str,
    fold: int,
    report: SourceReport,
    *,
    videos_dir: str | Path | None = None,
    splits_dir: str | Path | None = None,
) -> None:
    """Fill ``report`` with the HMDB51 records of ``split`` in ``fold``.

    ``videos_dir`` (the folder of class folders) defaults to ``root``; ``splits_dir`` to
    ``root/testTrainMulti_7030_splits`` (or ``root/test_train_splits``, ``root/splits``).
    """
    videos = Path(videos_dir) if videos_dir is not None else root
    splits = (
        Path(splits_dir)
        if splits_dir is not None
        else first_existing(
            [root / "testTrainMulti_7030_splits", root / "test_train_splits", root / "splits"],
            "HMDB51 split folder",
        )
    )
    suffix = f"_test_split{fold}.txt"
    files = sorted(splits.glob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"missing HMDB51 split files: expected {splits}/<class>{suffix}")
    classes = sorted(f.name[: -len(suffix)] for f in files)
    report.class_names = classes
    wanted = _SPLIT_CODES[split]
    for label, class_name in enumerate(classes):
        split_file = splits / f"{class_name}{suffix}"
        for number, text in text_lines(split_file):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                report.skip(split_file, number, f"expected '<name>.avi <0|1|2>', got {text!r}")
                continue
            if int(parts[1]) != wanted:
                continue
            path = videos / class_name / parts[0]
            if not path.is_file():
                report.skip(split_file, number, f"video file not found: {path}")
                continue
            report.records.append(VideoRecord(str(path), label, class_name, path.stem, split, "hmdb51"))


def write_annotations(root: Path, classes: Sequence[str], videos: Sequence[Mapping[str, Any]]) -> None:
    """Write ``testTrainMulti_7030_splits/<class>_test_split<fold>.txt`` for ``videos`` stored
    as ``root/<class>/<name>`` (see :class:`~hf_vssl.data.sources._common.SourceSpec`)."""
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(exist_ok=True)
    for name in classes:
        mine = [v for v in videos if v["layout_label"] == name]
        for fold in SOURCE.folds:
            lines = "".join(f"{Path(v['path']).name} {_SPLIT_CODES[v['splits'][str(fold)]]} \n" for v in mine)
            (splits / f"{name}_test_split{fold}.txt").write_text(lines)


SOURCE = SourceSpec(
    "hmdb51",
    parse,
    splits=("train", "test"),
    folds=(1, 2, 3),
    aliases={"val": "test", "validation": "test"},
    description="HMDB51, 51 classes, official 3 train/test folds (70/30)",
    write_annotations=write_annotations,
)
