"""Something-Something V2: ``<id>.webm`` and ``labels.json`` / ``train.json`` / ``validation.json``.

``labels.json`` maps each class (the template with its brackets removed) to its index as a
string; the split files list ``{"id", "label", "template", "placeholders"}`` (``test.json``:
``{"id"}`` only, giving ``label=-1``). The official archives unpack to
``20bn-something-something-v2/`` (videos) and ``labels/`` (annotations); both are found under
``root`` or can be given. ``extra`` keeps the filled-in caption and the placeholders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_vssl.data.records import VideoRecord
from hf_vssl.data.sources._common import (
    VIDEO_EXTENSIONS,
    SourceReport,
    SourceSpec,
    first_existing,
    json_file,
)

_SPLIT_FILES = {"train": "train.json", "val": "validation.json", "test": "test.json"}
_BRACKETS = re.compile(r"\[([^\]]*)\]")


def template_to_class(template: str) -> str:
    """``"Putting [something] into [something]"`` -> ``"Putting something into something"``."""
    return _BRACKETS.sub(r"\1", template)


def parse(
    root: Path,
    split: str,
    fold: int,
    report: SourceReport,
    *,
    annotations_dir: str | Path | None = None,
    videos_dir: str | Path | None = None,
) -> None:
    """Fill ``report`` with the SSv2 records of ``split`` ("train", "val", "test").

    ``annotations_dir`` defaults to ``root/labels`` if present, else ``root``; ``videos_dir`` to
    ``root/20bn-something-something-v2`` or ``root/videos`` if present, else ``root``.
    """
    annotations = (
        Path(annotations_dir)
        if annotations_dir is not None
        else (root / "labels" if (root / "labels").is_dir() else root)
    )
    videos = (
        Path(videos_dir)
        if videos_dir is not None
        else first_existing(
            [root / "20bn-something-something-v2", root / "videos", root], "SSv2 video folder"
        )
    )
    label_path = annotations / "labels.json"
    raw_labels = json_file(label_path, dict, "SSv2 label map")
    try:
        label_ids = {name: int(index) for name, index in raw_labels.items()}
    except (TypeError, ValueError) as error:
        raise ValueError(f"{label_path}: every value must be an integer index: {error}") from error
    report.set_classes(label_ids)
    split_path = annotations / _SPLIT_FILES[split]
    entries = json_file(split_path, list, f"SSv2 {split} list")
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not str(entry.get("id", "")).strip():
            report.skip(split_path, number, f"entry without an id: {entry!r}")
            continue
        video_id = str(entry["id"]).strip()
        if "template" in entry:
            name = template_to_class(str(entry["template"]))
            if name not in label_ids:
                report.skip(split_path, number, f"unknown label {name!r} (not in {label_path.name})")
                continue
            label = label_ids[name]
        elif split == "test":
            label, name = -1, ""
        else:
            report.skip(split_path, number, f"entry {video_id} has no template")
            continue
        path = next(
            (
                videos / f"{video_id}{ext}"
                for ext in VIDEO_EXTENSIONS
                if (videos / f"{video_id}{ext}").is_file()
            ),
            None,
        )
        if path is None:
            report.skip(split_path, number, f"video file not found: {videos / (video_id + '.webm')}")
            continue
        extra = {k: entry[k] for k in ("label", "placeholders") if k in entry}
        report.records.append(VideoRecord(str(path), label, name, video_id, split, "ssv2", extra=extra))


def write_annotations(root: Path, classes: Sequence[str], videos: Sequence[Mapping[str, Any]]) -> None:
    """Write ``labels/labels.json`` and the train/validation/test JSONs of fold 1's partition.

    ``classes`` are the *templates* (``"Moving [something] up"``), in label order; each video's
    caption fills the template's slots with its ``placeholders`` (see
    :class:`~hf_vssl.data.sources._common.SourceSpec`). The test list carries ids only, as the
    official one does.
    """
    labels_dir = root / "labels"
    labels_dir.mkdir(exist_ok=True)
    (labels_dir / "labels.json").write_text(
        json.dumps({template_to_class(t): str(i) for i, t in enumerate(classes)}, indent=1)
    )
    by_class = {template_to_class(t): t for t in classes}
    train, val, test = [], [], []
    for v in videos:
        template = by_class[v["layout_label"]]
        things = list(v["placeholders"])[: template.count("[something]")]
        filled = template
        for thing in things:
            filled = filled.replace("[something]", thing, 1)
        entry = {"id": v["video_id"], "label": filled, "template": template, "placeholders": things}
        (train if v["splits"]["1"] == "train" else val).append(entry)
        if v["splits"]["1"] == "test":
            test.append({"id": v["video_id"]})
    for split, entries in (("train", train), ("val", val), ("test", test)):
        (labels_dir / _SPLIT_FILES[split]).write_text(json.dumps(entries, indent=1))


SOURCE = SourceSpec(
    "ssv2",
    parse,
    splits=("train", "val", "test"),
    aliases={"validation": "val", "validate": "val"},
    description="Something-Something V2, 174 classes, train/validation/test JSONs",
    write_annotations=write_annotations,
    eval_split="val",
    unlabelled_splits=("test",),
)
