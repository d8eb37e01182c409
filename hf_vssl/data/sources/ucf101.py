"""UCF101: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` and ``ucfTrainTestlist/`` (3 folds).

``classInd.txt`` holds ``"<1-based index> <Class>"``; ``trainlist0N.txt`` holds
``"<Class>/<file>.avi <index>"``; ``testlist0N.txt`` holds ``"<Class>/<file>.avi"``. Labels are
the official index minus one. ``extra`` carries the ``group`` and ``clip`` numbers of the name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources._common import SourceReport, SourceSpec, require_file, text_lines

_GROUP_CLIP = re.compile(r"_g(\d+)_c(\d+)$")


def read_class_index(path: Path, report: SourceReport) -> dict[str, int]:
    """``classInd.txt`` -> {class name: 0-based label}; malformed lines are reported."""
    classes: dict[str, int] = {}
    for number, text in text_lines(require_file(path, "UCF101 class index")):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            report.skip(path, number, f"expected '<index> <ClassName>', got {text!r}")
        elif parts[1] in classes:
            report.skip(path, number, f"class {parts[1]!r} listed twice")
        else:
            classes[parts[1]] = int(parts[0]) - 1
    return classes


def parse(
    root: Path,
    split: str,
    fold: int,
    report: SourceReport,
    *,
    videos_dir: str | Path | None = None,
    lists_dir: str | Path | None = None,
) -> None:
    """Fill ``report`` with the UCF101 records of ``split`` in ``fold``.

    ``videos_dir`` defaults to ``root/UCF-101``; ``lists_dir`` to ``root/ucfTrainTestlist``.
    """
    videos = Path(videos_dir) if videos_dir is not None else root / "UCF-101"
    lists = Path(lists_dir) if lists_dir is not None else root / "ucfTrainTestlist"
    classes = read_class_index(lists / "classInd.txt", report)
    report.set_classes(classes)  # the label space is classInd.txt's, whatever videos are present
    names = {label: name for name, label in classes.items()}
    split_file = require_file(lists / f"{split}list0{fold}.txt", f"UCF101 {split} list of fold {fold}")
    for number, text in text_lines(split_file):
        parts = text.split()
        if len(parts) not in (1, 2) or (len(parts) == 2 and not parts[1].isdigit()):
            report.skip(split_file, number, f"expected '<Class>/<file>.avi [index]', got {text!r}")
            continue
        rel = parts[0].replace("\\", "/")
        class_name = rel.split("/", 1)[0] if "/" in rel else None
        if class_name not in classes:
            report.skip(split_file, number, f"unknown class {class_name!r} in {rel!r} (not in classInd.txt)")
            continue
        label = classes[class_name]
        if len(parts) == 2 and int(parts[1]) - 1 != label:
            report.skip(
                split_file,
                number,
                f"index {parts[1]} disagrees with class {class_name!r} (index {label + 1} in classInd.txt)",
            )
            continue
        path = videos / rel
        if not path.is_file():
            report.skip(split_file, number, f"video file not found: {path}")
            continue
        match = _GROUP_CLIP.search(path.stem)
        extra = {"group": int(match.group(1)), "clip": int(match.group(2))} if match else {}
        report.records.append(
            VideoRecord(str(path), label, names[label], path.stem, split, "ucf101", extra=extra)
        )


def write_annotations(root: Path, classes: Sequence[str], videos: Sequence[Mapping[str, Any]]) -> None:
    """Write ``ucfTrainTestlist/`` (class index, train and test list of every fold) for ``videos``
    stored under ``root/UCF-101`` (see :class:`~hf_vssl.data.sources._common.SourceSpec`)."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(classes)))
    index = {name: i + 1 for i, name in enumerate(classes)}
    for fold in SOURCE.folds:
        train = [v for v in videos if v["splits"][str(fold)] == "train"]
        test = [v for v in videos if v["splits"][str(fold)] == "test"]
        # "Class/v_..avi <1-based index>" and path-only test lines, with the official CRLF endings.
        (lists / f"trainlist0{fold}.txt").write_bytes(
            "".join(f"{_in_videos_dir(v['path'])} {index[v['layout_label']]}\r\n" for v in train).encode()
        )
        (lists / f"testlist0{fold}.txt").write_bytes(
            "".join(f"{_in_videos_dir(v['path'])}\r\n" for v in test).encode()
        )


def _in_videos_dir(path: str) -> str:
    """A path under ``root`` as the lists give it: relative to ``UCF-101/``."""
    return path.split("/", 1)[1]


SOURCE = SourceSpec(
    "ucf101",
    parse,
    splits=("train", "test"),
    folds=(1, 2, 3),
    aliases={"val": "test", "validation": "test"},
    description="UCF101, 101 classes, official 3 train/test folds",
    write_annotations=write_annotations,
)
